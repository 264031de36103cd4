"""The liver: right and left lobes, medial segment and caudate, smoothly deformed, with a drawn volume.

Its upper surface follows the right diaphragm dome; hepatic veins drain into the IVC near the dome,
portal-vein branches spread from the hilum; the gallbladder sits in its fossa on the under surface.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

from .appearance import T
from .body import dome
from .shapes import Grid, Wobble, ellipsoid_level, tube

ABDOMEN = (T["visceral_fat"],)


def _parts(rng: np.random.Generator, P: dict) -> List[Tuple]:
    """Lobes as ellipsoids: (centre, radii, extra level arguments), before the volume scaling."""
    A, B, H = P["Ac"], P["Bc"], P["H"]
    j = rng.uniform(-0.06, 0.06, (4, 3)) * (A, B, H)
    left = rng.uniform(0.6, 1.3)  # the left lobe varies most between people
    parts = [
        ((-0.42 * A, 0.0, -0.4 * H), (0.56 * A, 0.85 * B, 0.5 * H), {"shear": rng.uniform(0.0, 0.35)}),
        (
            (0.12 * A, -0.45 * B, -0.15 * H),
            (0.5 * A * left, 0.38 * B, 0.25 * H),
            {"taper": rng.uniform(0.3, 0.7)},
        ),
        ((-0.08 * A, -0.4 * B, -0.3 * H), (0.3 * A, 0.45 * B, 0.35 * H), {}),
        ((-0.02 * A, 0.12 * B, -0.3 * H), (0.12 * A, 0.18 * B, 0.2 * H), {}),
    ]
    return [(np.add(c, jj), np.asarray(r), kw) for (c, r, kw), jj in zip(parts, j)]


class LiverShape:
    """The liver's level set with a scale about the right dome, so that its volume can be set."""

    def __init__(self, rng: np.random.Generator, P: dict):
        self.parts = _parts(rng, P)
        s = P["s"]
        self.wobbles = (Wobble(rng, 0.14, 90 * s), Wobble(rng, 0.05, 35 * s, terms=6))
        self.anchor = np.array([-0.4 * P["Ac"], 0.0, 0.0], np.float32)
        self.P = P
        self.scale = 1.0

    def mask(self, g: Grid, box) -> np.ndarray:
        """Liver voxels in ``box``: the union of the lobes, swollen up to the diaphragm, inside the cavity."""
        u, v, w = g.coords(box)
        level = None
        k = self.scale
        for centre, radii, kw in self.parts:
            c = self.anchor + (centre - self.anchor) * k
            part = ellipsoid_level(u, v, w, c, radii * k, **kw)
            level = part if level is None else np.minimum(level, part)
        for wobble in self.wobbles:
            level = level + wobble(u, v, w)
        below = dome(g, self.P)[box[1:]][None] - 4 * self.P["s"] - w  # mm below the diaphragm
        grow = np.clip(1 - below / np.float32(0.3 * self.P["H"] * k), 0, 1) * np.float32(0.6)
        return (level < grow) & (below > 0)


def shape_liver(rng: np.random.Generator, P: dict) -> LiverShape:
    """Draw the liver's shape and scale it to the volume ``P['liver_volume'] * s**3`` (ml).

    The volume is set on a coarse 5 mm lattice of the whole (uncropped) liver; ``P['liver_scale']`` and
    ``P['liver_bottom']`` (lowest ``w``, mm) record the result, so that the field of view can be placed.
    """
    shape = LiverShape(rng, P)
    s = P["s"]
    span = np.array([1.3 * P["Ac"], 1.3 * P["Bc"], 1.4 * P["H"]])
    step = 5.0 * s
    offsets = (-0.1 * P["Ac"], 0, -0.5 * P["H"])
    lattice = Grid(*(np.arange(-a, a, step) + off for a, off in zip(span, offsets)))
    full = (slice(None),) * 3
    cavity = _cavity(lattice, P)
    for _ in range(3):
        volume = (shape.mask(lattice, full) & cavity).sum() * step**3 / 1000
        shape.scale *= float(np.clip((P["liver_volume"] * s**3 / max(volume, 1.0)) ** (1 / 3), 0.7, 1.4))
    inside = np.nonzero((shape.mask(lattice, full) & cavity).any((1, 2)))[0]
    P["liver_scale"] = shape.scale
    P["liver_bottom"] = float(lattice.w[inside[0]]) if inside.size else -P["H"]
    P["liver_shape"] = shape
    return shape


def draw_liver(g: Grid, rng: np.random.Generator, P: dict) -> None:
    """Paint the liver drawn by :func:`shape_liver`, then its vessels and the gallbladder."""
    shape = P["liver_shape"]
    s = P["s"]
    span = np.array([1.3 * P["Ac"], 1.3 * P["Bc"], 1.4 * P["H"]])
    box = g.box((-0.1 * P["Ac"], 0, -0.5 * P["H"]), span * max(shape.scale, 1.0))
    if box is None:
        return
    g.paint(box, shape.mask(g, box), T["liver"], ABDOMEN)
    _draw_vessels(g, rng, P, box)
    if rng.random() < 0.85:
        k = shape.scale
        centre = (-0.22 * P["Ac"] * k, -0.5 * P["Bc"] * k, -0.75 * P["H"] * k)
        radii = np.array([15, 17, 38]) * s * rng.uniform(0.7, 1.25, 3)
        g.blob(centre, radii, T["gallbladder"], (T["liver"], T["visceral_fat"]), angle=0.5, shear=0.3)


def _cavity(g: Grid, P: dict) -> np.ndarray:
    """Inside the abdominal cavity (an ellipse inside the muscle wall) on a grid, as (z, y, x)."""
    U, V = g.plane()
    inside = np.sqrt((U / P["Ac"]) ** 2 + (V / np.where(V < 0, P["Bc"], P["Bcp"])) ** 2) < 1
    return np.broadcast_to(inside[None], g.shape)


def _random_points(g: Grid, rng: np.random.Generator, box, n: int) -> List[np.ndarray]:
    zz, yy, xx = np.nonzero(g.tissue[box] == T["liver"])
    if not zz.size:
        return []
    k = rng.integers(zz.size, size=n)
    return [np.array([g.u[box[2]][xx[i]], g.v[box[1]][yy[i]], g.w[box[0]][zz[i]]]) for i in k]


def _draw_vessels(g: Grid, rng: np.random.Generator, P: dict, box) -> None:
    """Hepatic veins into the IVC, the portal vein from the hilum, small random branches of both."""
    s, A, B, H, k = P["s"], P["Ac"], P["Bc"], P["H"], P["liver_scale"]
    inside = (T["liver"],)
    ivc_top = np.array([P["ivc_u"], P["ivc_v"], -12 * s])
    ends = [(-0.85, 0.0, -0.45), (-0.3, -0.65, -0.4), (0.25, -0.65, -0.2)]
    hepatic = []
    for eu, ev, ew in ends:
        end = np.array([eu * A * k, ev * B * k, ew * H * k]) + rng.normal(0, 8 * s, 3)
        mid = (ivc_top + end) / 2 + rng.normal(0, 6 * s, 3)
        tube(
            g,
            [ivc_top, mid, end],
            np.array([6, 4, 1.5]) * s * rng.uniform(0.8, 1.2),
            T["hepatic_vein"],
            inside,
        )
        hepatic.append(mid)
    hilum = np.array([-0.15 * A * k, -0.05 * B * k, -0.55 * H * k])
    trunk = np.array([0.0, -0.2 * B, -0.85 * H * k])
    r0 = rng.uniform(6, 8) * s
    tube(g, [trunk, hilum], [r0, r0], T["portal_trunk"], ABDOMEN)
    tube(g, [trunk, hilum], [r0, r0], T["portal_vein"], inside)
    portal = []
    for eu, ev, ew in ((-0.65, 0.1, -0.5), (0.15, -0.5, -0.3), (-0.5, -0.3, -0.7)):
        end = np.array([eu * A * k, ev * B * k, ew * H * k]) + rng.normal(0, 8 * s, 3)
        tube(g, [hilum, end], np.array([0.8 * r0, 1.5 * s]), T["portal_vein"], inside)
        portal.append((hilum + end) / 2)
    for start, code in [(p, T["portal_vein"]) for p in portal] + [(p, T["hepatic_vein"]) for p in hepatic]:
        for end in _random_points(g, rng, box, int(rng.integers(1, 4))):
            tube(g, [start, end], np.array([rng.uniform(2, 3.5), 1.0]) * s, code, inside)
