"""Draw the extension and module icons (128x128 PNG): a liver with a tumour over a U-Net motif.

Run from the repository root: ``python Utilities/make_icon.py``. Writes ``MPUNetExtension.png`` and
``MPUNetSegmentation/Resources/Icons/MPUNetSegmentation.png``. Drawn at 4x and downsampled for smooth
edges; needs only Pillow.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Sequence, Tuple

from PIL import Image, ImageDraw, ImageFilter

SIZE = 128
SCALE = 4
S = SIZE * SCALE

BACKGROUND_TOP = (33, 47, 66)
BACKGROUND_BOTTOM = (16, 23, 34)
NETWORK = (110, 190, 230)
LIVER = (196, 104, 78)  # a shade of the segment colour (221, 130, 101), darker for contrast
LIVER_LIGHT = (232, 150, 120)
LIVER_EDGE = (120, 52, 38)
TUMOUR = (144, 238, 144)  # the "Liver tumor" segment colour
TUMOUR_EDGE = (60, 140, 70)

Point = Tuple[float, float]


def _catmull_rom(points: Sequence[Point], steps: int = 24) -> List[Point]:
    """A smooth closed curve through ``points`` (centripetal-free, uniform Catmull-Rom)."""
    curve = []
    n = len(points)
    for index in range(n):
        p0, p1, p2, p3 = (points[(index + offset) % n] for offset in (-1, 0, 1, 2))
        for step in range(steps):
            t = step / steps
            t2, t3 = t * t, t * t * t
            curve.append(
                tuple(
                    0.5
                    * (
                        2 * p1[axis]
                        + (-p0[axis] + p2[axis]) * t
                        + (2 * p0[axis] - 5 * p1[axis] + 4 * p2[axis] - p3[axis]) * t2
                        + (-p0[axis] + 3 * p1[axis] - 3 * p2[axis] + p3[axis]) * t3
                    )
                    for axis in (0, 1)
                )
            )
    return curve


def _scaled(points: Sequence[Point]) -> List[Point]:
    return [(x * SCALE, y * SCALE) for x, y in points]


def _rounded_background() -> Image.Image:
    gradient = Image.new("RGB", (S, S))
    pixels = gradient.load()
    for y in range(S):
        t = y / (S - 1)
        color = tuple(round(a + (b - a) * t) for a, b in zip(BACKGROUND_TOP, BACKGROUND_BOTTOM))
        for x in range(S):
            pixels[x, y] = color
    mask = Image.new("L", (S, S), 0)
    ImageDraw.Draw(mask).rounded_rectangle(
        (2 * SCALE, 2 * SCALE, S - 2 * SCALE, S - 2 * SCALE), 24 * SCALE, 255
    )
    image = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    image.paste(gradient, (0, 0), mask)
    return image


def _network(image: Image.Image) -> None:
    """A faint U-Net: encoder nodes down the left, decoder up the right, skip connections across."""
    layer = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    left = [(22, 24), (30, 50), (40, 74), (52, 96)]
    right = [(106, 24), (98, 50), (88, 74), (76, 96)]
    bottom = (64, 108)
    path = left + [bottom] + right[::-1]
    for a, b in zip(path, path[1:]):
        draw.line(_scaled([a, b]), fill=NETWORK + (120,), width=2 * SCALE)
    for a, b in zip(left, right):  # skip connections
        x0, y0 = a
        x1, _ = b
        dashes = 9
        for dash in range(dashes):
            s0, s1 = dash / dashes, (dash + 0.55) / dashes
            draw.line(
                _scaled([(x0 + (x1 - x0) * s0, y0), (x0 + (x1 - x0) * s1, y0)]),
                fill=NETWORK + (55,),
                width=SCALE + 1,
            )
    for x, y in path:
        r = 3.2 * SCALE
        draw.ellipse((x * SCALE - r, y * SCALE - r, x * SCALE + r, y * SCALE + r), fill=NETWORK + (150,))
    image.alpha_composite(layer)


def _liver(image: Image.Image) -> None:
    outline = _scaled(
        _catmull_rom(
            [
                (18, 56), (30, 38), (54, 33), (80, 36), (104, 38), (116, 46), (110, 56),
                (92, 66), (74, 80), (58, 96), (42, 100), (26, 90), (17, 74),
            ]
        )
    )  # fmt: skip
    shadow = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    ImageDraw.Draw(shadow).polygon([(x + 3 * SCALE, y + 4 * SCALE) for x, y in outline], fill=(0, 0, 0, 110))
    image.alpha_composite(shadow.filter(ImageFilter.GaussianBlur(4 * SCALE)))

    body = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    ImageDraw.Draw(body).polygon(outline, fill=LIVER + (255,))
    # soft highlight towards the upper left for volume
    highlight = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    ImageDraw.Draw(highlight).ellipse(
        (24 * SCALE, 36 * SCALE, 78 * SCALE, 66 * SCALE), fill=LIVER_LIGHT + (150,)
    )
    highlight = highlight.filter(ImageFilter.GaussianBlur(8 * SCALE))
    mask = body.getchannel("A")
    body.alpha_composite(Image.composite(highlight, Image.new("RGBA", (S, S), (0, 0, 0, 0)), mask))
    image.alpha_composite(body)
    ImageDraw.Draw(image).line(outline + outline[:1], fill=LIVER_EDGE + (255,), width=int(2.2 * SCALE))
    # the falciform notch between the lobes
    ImageDraw.Draw(image).line(
        _scaled([(74, 38), (70, 52), (62, 64)]),
        fill=LIVER_EDGE + (200,),
        width=int(1.6 * SCALE),
        joint="curve",
    )


def _tumour(image: Image.Image) -> None:
    cx, cy, r = 45 * SCALE, 67 * SCALE, 9.5 * SCALE
    glow = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    ImageDraw.Draw(glow).ellipse(
        (cx - 1.6 * r, cy - 1.6 * r, cx + 1.6 * r, cy + 1.6 * r), fill=TUMOUR + (90,)
    )
    image.alpha_composite(glow.filter(ImageFilter.GaussianBlur(5 * SCALE)))

    def radius(a: float) -> float:  # an irregular, slightly lobulated lesion
        return r * (1 + 0.07 * math.sin(2 * a + 0.6) + 0.05 * math.sin(5 * a + 1.3))

    blob = [
        (cx + radius(a) * math.cos(a), cy + 0.9 * radius(a) * math.sin(a))
        for a in (i * 2 * math.pi / 96 for i in range(96))
    ]
    draw = ImageDraw.Draw(image)
    draw.polygon(blob, fill=TUMOUR + (255,))
    draw.line(blob + blob[:1], fill=TUMOUR_EDGE + (255,), width=int(1.8 * SCALE))


def draw_icon() -> Image.Image:
    """Return the 128x128 RGBA icon."""
    image = _rounded_background()
    _network(image)
    _liver(image)
    _tumour(image)
    return image.resize((SIZE, SIZE), Image.LANCZOS)


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    icon = draw_icon()
    icon.save(root / "MPUNetExtension.png", optimize=True)
    module_icon = root / "MPUNetSegmentation" / "Resources" / "Icons" / "MPUNetSegmentation.png"
    module_icon.parent.mkdir(parents=True, exist_ok=True)
    icon.save(module_icon, optimize=True)


if __name__ == "__main__":
    main()
