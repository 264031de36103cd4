"""Synthetic abdominal CT phantoms with LiTS-style labels, for tests, demos and the demo model.

A phantom is seeded and deterministic: the same seed gives the same voxels. It shows a supine patient
in LPS space with an identity direction: array x grows towards the patient's LEFT, y towards POSTERIOR,
z towards SUPERIOR. So the liver (patient's right) lies at LOW x indices and appears on the left of an
axial slice displayed with x to the right (radiological convention). Anatomy: body with subcutaneous
fat and muscle wall, spine (vertebrae and discs) and ribs, aorta and IVC, lungs and heart above the
diaphragm, bowel loops, stomach, gallbladder, spleen and kidneys (liver-like density, as distractors),
the liver with hepatic vessels, and hypo-/hyperdense tumours. Organ sizes scale with the body, which
fills most of the field of view (a small grid shows a small patient). Labels: 0 background, 1 liver,
2 tumour (tumour voxels are 2, never 1), as in LiTS.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk

from .phantom_shapes import Canvas, Wobble, blur3, ellipsoid_level, segment_distance

#: Tissue codes of :attr:`PhantomCase.tissues`.
TISSUES = {
    "air": 0, "fat": 1, "muscle": 2, "visceral_fat": 3, "bowel": 4, "gas": 5, "lung": 6, "heart": 7,
    "bone": 8, "disc": 9, "csf": 10, "vessel": 11, "kidney": 12, "spleen": 13, "stomach": 14,
    "gallbladder": 15, "liver": 16, "liver_vessel": 17, "tumor": 18,
}  # fmt: skip
T = TISSUES
SLICE_SPACINGS = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
INPLANE_SPACING = (0.6, 0.9)


@dataclass
class PhantomCase:
    """A phantom: CT image (int16 HU), label map (uint8 0/1/2), tissue codes and what was drawn.

    Attributes:
        image: the CT, HU, int16, LPS identity direction.
        label: 0 background, 1 liver, 2 tumour; same geometry as ``image``.
        tissues: ``(z, y, x)`` uint8 array of :data:`TISSUES` codes (before blur and noise).
        n_tumors: number of tumours placed (some may merge or be clipped by the liver surface).
        body_centre: physical LPS position (mm) of the body's centre line at the middle slice.
    """

    image: sitk.Image
    label: sitk.Image
    tissues: np.ndarray
    n_tumors: int
    body_centre: Tuple[float, float, float]


def _draw_body(c: Canvas, rng: np.random.Generator, s: float, hu: dict) -> dict:
    """Body outline, fat, muscle wall; returns the body dimensions (mm)."""
    A, B = rng.uniform(150, 180) * s, rng.uniform(105, 130) * s
    Bp = B * rng.uniform(0.82, 0.95)  # flatter back
    tf, tm = rng.uniform(8, 35) * s, rng.uniform(8, 14) * s
    U, V = c.plane()
    wob = Wobble(rng, 0.03, 120 * s)(U, V, 0)
    growth = (1 + 0.04 * np.sin(c.w / (140 * s) + rng.uniform(0, 6.3))).astype(np.float32)[:, None, None]

    def ring(a, b_ant, b_post):
        return np.sqrt((U / a) ** 2 + (V / np.where(V < 0, b_ant, b_post)) ** 2) + wob

    for (a, b, bp), tissue in (
        ((A, B, Bp), "fat"),
        ((A - tf, B - tf, Bp - 0.6 * tf), "muscle"),
        ((A - tf - tm, B - tf - tm, Bp - 0.6 * tf - tm), "visceral_fat"),
    ):
        inside = ring(a, b, bp)[None] < growth
        c.hu[inside], c.tissue[inside] = hu[tissue], T[tissue]
    return dict(A=A, B=B, Bp=Bp, tf=tf, tm=tm, Ac=A - tf - tm, Bc=B - tf - tm, Bcp=Bp - 0.6 * tf - tm)


def _tissue_in(tissue: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Boolean mask of the voxels whose tissue code is one of ``names`` (a fast ``np.isin``)."""
    table = np.zeros(256, dtype=bool)
    table[[T[n] for n in names]] = True
    return table[tissue]


def _draw_blob(c: Canvas, centre, radii, tissue, hu, allowed=None, wobble=None, angle=0.0, **kw):
    """Paint an (optionally deformed) ellipsoid over the allowed tissues; returns (box, mask) or None."""
    reach = max(radii) * (1.6 if kw.get("taper") else 1.25)
    box = c.box(centre, (reach + abs(kw.get("shear", 0)) * radii[2],) * 2 + (reach,))
    if box is None:
        return None
    u, v, w = c.coords(box)
    level = ellipsoid_level(u, v, w, centre, radii, angle, **kw)
    if wobble is not None:
        level = level + wobble(u, v, w)
    mask = level < 0
    if allowed is not None:
        mask &= _tissue_in(c.tissue[box], allowed)
    c.paint(box, mask, T[tissue], hu)
    return box, mask


def _paint_column(c: Canvas, m2: np.ndarray, zsel: np.ndarray, tissue: str, hu) -> None:
    """Paint a 2D axial mask on the slices selected by ``zsel``; ``hu`` is a number or a 2D array."""
    ys, xs = np.nonzero(m2)
    zs = np.nonzero(zsel)[0]
    if ys.size and zs.size:
        index = (zs[:, None], ys[None, :], xs[None, :])
        c.tissue[index] = T[tissue]
        c.hu[index] = hu if np.isscalar(hu) else hu[ys, xs][None, :]


def _draw_spine_and_vessels(c: Canvas, rng: np.random.Generator, s: float, d: dict, hu: dict) -> None:
    """Vertebrae (body, arch, discs), spinal canal, paraspinal muscles, psoas, aorta and IVC."""
    U, V = c.plane()
    every = np.ones(c.shape[0], bool)
    Rv = rng.uniform(17, 22) * s
    vb = d["Bcp"] - rng.uniform(55, 62) * s  # vertebral body centre (v)
    canal = vb + Rv + 11 * s
    period = rng.uniform(28, 34) * s
    vertebra = ((c.w + rng.uniform(0, period)) % period) > 0.22 * period  # else intervertebral disc
    for side in (-1, 1):
        paraspinal = ((U - side * 34 * s) / (25 * s)) ** 2 + ((V - canal - 14 * s) / (24 * s)) ** 2 < 1
        _paint_column(c, paraspinal, every, "muscle", hu["muscle"])
        psoas = ((U - side * (Rv + 17 * s)) / (16 * s)) ** 2 + ((V - vb) / (15 * s)) ** 2 < 1
        _paint_column(c, psoas, c.w < -0.55 * d["liver_h"], "muscle", hu["muscle"])
    r_body = np.sqrt((U / (1.1 * Rv)) ** 2 + ((V - vb) / Rv) ** 2)
    bone = np.where(r_body > 0.82, hu["cortical"], hu["cancellous"]).astype(np.float32)
    _paint_column(c, r_body < 1, vertebra, "bone", bone)
    _paint_column(c, r_body < 1, ~vertebra, "disc", hu["disc"])
    arch = np.sqrt(U**2 + (V - canal) ** 2)
    spinous = (U / (5 * s)) ** 2 + ((V - canal - 24 * s) / (15 * s)) ** 2 < 1
    transverse = ((np.abs(U) - 24 * s) / (15 * s)) ** 2 + ((V - canal + 3 * s) / (5 * s)) ** 2 < 1
    _paint_column(c, ((arch < 15 * s) | spinous | transverse) & (arch >= 8 * s), vertebra, "bone",
                  0.8 * hu["cortical"])  # fmt: skip
    _paint_column(c, arch < 8 * s, every, "csf", hu["csf"])
    aorta = ((U - 16 * s) ** 2 + (V - (vb - Rv - 13 * s)) ** 2) < (rng.uniform(9, 12) * s) ** 2
    ivc = ((U + 22 * s) / (14 * s)) ** 2 + ((V - (vb - Rv - 10 * s)) / (10 * s)) ** 2 < 1
    _paint_column(c, aorta | ivc, every, "vessel", hu["vessel"])
    d.update(vb=vb, Rv=Rv)


def _draw_ribs(c: Canvas, rng: np.random.Generator, s: float, d: dict, hu: dict) -> None:
    """Ribs: oblique bands on a ring inside the muscle wall, descending towards the front."""
    U, V = c.plane()
    a, b = d["Ac"] + 0.5 * d["tm"], np.where(V < 0, d["Bc"], d["Bcp"]) + 0.5 * d["tm"]
    radial = (np.sqrt((U / a) ** 2 + (V / b) ** 2) - 1) * (a + b) / 2  # ~ mm from the ring
    angle = np.arctan2(np.abs(U), V)  # 0 at the spine, pi at the front
    ring = (np.abs(radial) < 4 * s) & (angle > 0.3) & (angle < 2.3)
    ys, xs = np.nonzero(ring)
    if not ys.size:
        return
    pitch, slope, half = rng.uniform(30, 38) * s, rng.uniform(0.25, 0.45), rng.uniform(5, 7) * s
    arc = angle[ys, xs] * 110 * s
    phase = (c.w[:, None] + slope * arc[None, :] + rng.uniform(0, pitch)) % pitch
    dist = np.sqrt(((phase - pitch / 2) / half) ** 2 + (radial[ys, xs] / (4 * s))[None, :] ** 2)
    present = (dist < 1) & (c.w[:, None] + slope * arc[None, :] > -0.9 * d["liver_h"])
    zs, ks = np.nonzero(present)
    c.tissue[zs, ys[ks], xs[ks]] = T["bone"]
    c.hu[zs, ys[ks], xs[ks]] = np.where(dist[zs, ks] > 0.55, hu["rib"], hu["cancellous"])


def _draw_viscera(c: Canvas, rng: np.random.Generator, s: float, d: dict, hu: dict) -> None:
    """Bowel loops, stomach, lungs and heart above the diaphragm, kidneys and spleen."""
    Ac, Bc, Bcp, h = d["Ac"], d["Bc"], d["Bcp"], d["liver_h"]
    soft = ("visceral_fat", "bowel", "gas")
    for _ in range(int(rng.integers(25, 40))):
        centre = (rng.uniform(-0.8, 0.8) * Ac, rng.uniform(-0.85, 0.3) * Bc, rng.uniform(-3.0, 0.3) * h)
        radii = rng.uniform(10, 22, 3) * s
        hit = _draw_blob(c, centre, radii, "bowel", hu["bowel"], ("visceral_fat",), angle=rng.uniform(0, 3))
        if hit is not None and rng.random() < 0.35:
            _draw_blob(c, centre, radii * 0.7, "gas", hu["gas"], ("bowel",), angle=0)
    stomach = (0.45 * Ac, -0.35 * Bc, 0.35 * h)
    radii = np.array([0.3 * Ac, 0.3 * Bc, 0.45 * h]) * rng.uniform(0.8, 1.15)
    _draw_blob(c, stomach, radii, "stomach", hu["bowel"] + 10, soft, Wobble(rng, 0.08, 60 * s))
    content = "gas" if rng.random() < 0.5 else "stomach"
    _draw_blob(
        c, stomach, radii - 4 * s, content, hu["gas"] if content == "gas" else hu["fluid"], ("stomach",)
    )
    # diaphragm: two domes; above them the cavity is thorax (lungs, heart)
    U, V = c.plane()
    top = d["liver_top"]
    dome = np.maximum(
        top - 0.8 * h * ((U + 0.4 * Ac) / Ac) ** 2 - 0.5 * h * (V / Bc) ** 2,
        top - rng.uniform(0.1, 0.3) * h - 0.8 * h * ((U - 0.45 * Ac) / Ac) ** 2 - 0.5 * h * (V / Bc) ** 2,
    ).astype(np.float32)
    d["dome"] = dome
    thorax = (c.w[:, None, None] > dome[None]) & _tissue_in(c.tissue, soft)
    c.hu[thorax], c.tissue[thorax] = hu["lung"], T["lung"]
    del thorax
    heart = (0.12 * Ac, -0.3 * Bc, top + 0.7 * h)
    _draw_blob(c, heart, (0.4 * Ac, 0.45 * Bc, 0.6 * h), "heart", hu["heart"], ("lung",))
    # kidneys (posterior, both sides, right one lower) and spleen (patient left): liver-like density
    for side, dz in ((-1, -0.9), (1, -0.75)):
        centre = (side * (d["Rv"] + 42 * s), d["vb"] + 4 * s, dz * h)
        radii = np.array([24, 30, 52]) * s * rng.uniform(0.9, 1.1)
        hit = _draw_blob(c, centre, radii, "kidney", hu["kidney"], soft, angle=side * 0.5)
        sinus = (centre[0] - side * 0.45 * radii[0], centre[1] - 0.3 * radii[1], centre[2])
        if hit is not None:
            _draw_blob(
                c, sinus, radii * (0.35, 0.35, 0.6), "visceral_fat", -60, ("kidney",), angle=side * 0.5
            )
    spleen = (0.7 * Ac, 0.3 * Bcp, 0.15 * h)
    radii = np.array([22, 55, 0.6 * h / s]) * s * rng.uniform(0.85, 1.15)
    _draw_blob(c, spleen, radii, "spleen", hu["spleen"], soft, Wobble(rng, 0.1, 50 * s), angle=-0.7)


def _draw_liver(c: Canvas, rng: np.random.Generator, s: float, d: dict, hu: dict) -> Tuple:
    """The liver: right lobe, medial part and a left lobe tapering across the midline; vessels and GB."""
    Ac, Bc, h = d["Ac"], d["Bc"], d["liver_h"]
    size = rng.uniform(0.85, 1.1)
    jitter = rng.uniform(-0.05, 0.05, (3, 3)) * (Ac, Bc, h)
    parts = [  # centre, radii, extra ellipsoid_level arguments; the cavity wall clips them
        ((-0.45 * Ac, -0.1 * Bc, 0), (0.62 * Ac, 0.88 * Bc, h), {"shear": rng.uniform(0.1, 0.3)}),
        ((-0.1 * Ac, -0.35 * Bc, 0.2 * h), (0.35 * Ac, 0.5 * Bc, 0.7 * h), {}),
        ((0.15 * Ac, -0.62 * Bc, 0.3 * h), (0.45 * Ac, 0.3 * Bc, 0.5 * h), {"taper": rng.uniform(0.4, 0.8)}),
    ]
    box = c.box((-0.1 * Ac, -0.2 * Bc, 0), (1.1 * Ac, 1.1 * Bc, 1.3 * h))
    u, v, w = c.coords(box)
    level = None
    for (centre, radii, kw), jit in zip(parts, jitter):
        part = ellipsoid_level(u, v, w, np.add(centre, jit), np.multiply(radii, size), **kw)
        level = part if level is None else np.minimum(level, part)
    level = level + Wobble(rng, 0.15, 70 * s)(u, v, w)
    # under the diaphragm the liver swells to fill the dome (its upper surface follows the diaphragm)
    below = d["dome"][box[1:]][None] - 2 * s - w  # mm below the diaphragm
    grow = np.clip(1 - below / np.float32(0.35 * h), 0, 1) * np.float32(0.8)
    mask = (level < grow) & (below > 0)
    mask &= _tissue_in(c.tissue[box], ("visceral_fat", "bowel", "gas", "stomach"))
    c.paint(box, mask, T["liver"], hu["liver"])
    # hepatic vessels: trunks from the hilum towards random liver points (still label 1)
    zz, yy, xx = np.nonzero(mask)
    if zz.size:
        hilum = (-0.15 * Ac, 0.05 * Bc, -0.1 * h)
        for _ in range(int(rng.integers(3, 6))):
            k = int(rng.integers(zz.size))
            end = (c.u[box[2]][xx[k]], c.v[box[1]][yy[k]], c.w[box[0]][zz[k]])
            radius = rng.uniform(2.5, 5) * s
            vbox = c.box(np.add(hilum, end) / 2, np.abs(np.subtract(end, hilum)) / 2 + radius)
            if vbox is not None:
                vessel = segment_distance(*c.coords(vbox), hilum, end) < radius
                c.paint(vbox, vessel & (c.tissue[vbox] == T["liver"]), T["liver_vessel"], hu["vessel"])
    gb = (-0.15 * Ac, -0.45 * Bc, -0.55 * h)
    _draw_blob(c, gb, np.array([14, 16, 32]) * s * rng.uniform(0.8, 1.2), "gallbladder", hu["fluid"],
               ("liver", "liver_vessel", "visceral_fat", "bowel"), angle=0.4)  # fmt: skip
    return box


def _draw_tumors(c: Canvas, rng: np.random.Generator, s: float, spacing, n: int, hu: dict, box) -> None:
    """Tumours centred on random liver voxels, clipped to the liver; hypodense (some necrotic) or hyper."""
    zz, yy, xx = np.nonzero(_tissue_in(c.tissue[box], ("liver", "liver_vessel")))
    for _ in range(n if zz.size else 0):
        k = int(rng.integers(zz.size))
        centre = (c.u[box[2]][xx[k]], c.v[box[1]][yy[k]], c.w[box[0]][zz[k]])
        r = max(rng.uniform(4, 28) * s, 2.2 * max(spacing[:2]))
        radii = r * rng.uniform(0.8, 1.2, 3)
        kind = rng.random()
        value = hu["liver"] - rng.uniform(20, 40) if kind < 0.7 else hu["liver"] + rng.uniform(25, 50)
        hit = _draw_blob(
            c, centre, radii, "tumor", value, ("liver", "liver_vessel"), Wobble(rng, 0.12, 3 * r)
        )
        if hit is not None and kind < 0.2 and r > 8 * s:
            _draw_blob(c, centre, radii * 0.5, "tumor", hu["liver"] - 45, ("tumor",), Wobble(rng, 0.1, 2 * r))


def _hu_table(rng: np.random.Generator) -> dict:
    """Per-case tissue densities (HU)."""
    ranges = {
        "fat": (-115, -90), "visceral_fat": (-100, -80), "muscle": (40, 60), "bowel": (20, 45),
        "gas": (-990, -900), "lung": (-880, -820), "heart": (35, 50), "cortical": (700, 1000),
        "cancellous": (300, 450), "rib": (550, 850), "disc": (70, 100), "csf": (5, 20), "vessel": (40, 170),
        "fluid": (0, 20), "liver": (55, 65), "spleen": (55, 65), "kidney": (55, 65),
    }  # fmt: skip
    return {name: float(rng.uniform(*r)) for name, r in ranges.items()}


def _check_args(shape, spacing) -> None:
    if len(shape) != 3 or any(int(n) != n or n < 8 for n in shape):
        raise ValueError(f"shape must be 3 integers (z, y, x), each >= 8; got {shape}")
    if spacing is not None and (len(spacing) != 3 or any(not sp > 0 for sp in spacing)):
        raise ValueError(f"spacing must be 3 positive numbers (x, y, z) in mm, or None; got {spacing}")


def build_phantom(
    seed: int,
    shape: Sequence[int] = (64, 256, 256),
    spacing: Optional[Sequence[float]] = None,
    n_tumors: Optional[int] = None,
) -> PhantomCase:
    """Generate one phantom with its tissue map (see :func:`make_phantom` for the arguments).

    Returns:
        A :class:`PhantomCase`.
    """
    _check_args(shape, spacing)
    if n_tumors is not None and (int(n_tumors) != n_tumors or n_tumors < 0):
        raise ValueError(f"n_tumors must be a non-negative integer or None; got {n_tumors}")
    rng = np.random.default_rng(seed)
    if spacing is None:
        sxy = round(float(rng.uniform(*INPLANE_SPACING)), 4)
        spacing = (sxy, sxy, float(rng.choice(SLICE_SPACINGS)))
    spacing = tuple(float(sp) for sp in spacing)
    nz, ny, nx = (int(n) for n in shape)
    half_x, half_y = nx * spacing[0] / 2, ny * spacing[1] / 2
    s = min(1.0, 0.92 * half_x / 180, 0.92 * half_y / 130) * rng.uniform(0.92, 1.0)  # body scale
    off_x = rng.uniform(-0.2, 0.2) * max(half_x - 180 * s, 0)
    off_y = rng.uniform(-0.2, 0.2) * max(half_y - 130 * s, 0)
    h = rng.uniform(75, 95) * s  # half height of the liver's right lobe
    w_mid, z_mid = rng.uniform(-0.5, 0.15) * h, rng.uniform(-350, 0)
    c = Canvas((nz, ny, nx), spacing, (off_x, off_y, w_mid))
    hu = _hu_table(rng)
    d = _draw_body(c, rng, s, hu)
    d.update(liver_h=h, liver_top=0.8 * h)
    _draw_spine_and_vessels(c, rng, s, d, hu)
    _draw_viscera(c, rng, s, d, hu)
    box = _draw_liver(c, rng, s, d, hu)
    if n_tumors is None:
        n_tumors = int(rng.choice(7, p=[0.2, 0.2, 0.2, 0.15, 0.1, 0.08, 0.07]))
    _draw_tumors(c, rng, s, spacing, int(n_tumors), hu, box)
    _draw_ribs(c, rng, s, d, hu)
    label = _tissue_in(c.tissue, ("liver", "liver_vessel")).astype(np.uint8)
    label[c.tissue == T["tumor"]] = 2
    # CT noise, then partial-volume blur (which also gives the noise its grain): final noise ~8-18 HU
    noise_sd = rng.uniform(8, 18) / 0.5
    c.hu += (rng.random(c.shape, dtype=np.float32) - np.float32(0.5)) * np.float32(noise_sd * np.sqrt(12))
    blur3(c.hu, (0.08, 0.125, 0.125))
    np.clip(c.hu, -1024, 3071, out=c.hu)
    origin = (-(nx - 1) / 2 * spacing[0], -(ny - 1) / 2 * spacing[1], z_mid - (nz - 1) / 2 * spacing[2])
    images = []
    for array in (np.rint(c.hu).astype(np.int16), label):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing)
        image.SetOrigin(origin)
        images.append(image)
    return PhantomCase(images[0], images[1], c.tissue, int(n_tumors), (off_x, off_y, z_mid))


def make_phantom(
    seed: int,
    shape: Sequence[int] = (64, 256, 256),
    spacing: Optional[Sequence[float]] = None,
    n_tumors: Optional[int] = None,
) -> Tuple[sitk.Image, sitk.Image]:
    """Generate a synthetic abdominal CT and its LiTS-style label map.

    Args:
        seed: non-negative integer; the same seed (and arguments) gives identical voxels.
        shape: ``(z, y, x)`` voxels. 64x256x256 takes about a second; 200x512x512 works for benchmarks.
        spacing: ``(x, y, z)`` mm; ``None`` draws a realistic one from the seed (in-plane 0.6-0.9 mm,
            slices 1-5 mm).
        n_tumors: number of tumours; ``None`` draws 0-6 from the seed (0 in about 1 case in 5).

    Returns:
        ``(image, label)``: CT in HU (int16) and labels (uint8: 0 background, 1 liver, 2 tumour), same
        geometry, LPS identity direction, the liver on the patient's right (physical x below the body centre).

    Example:
        >>> image, label = make_phantom(0, shape=(32, 128, 128))
        >>> image.GetSize()
        (128, 128, 32)
    """
    case = build_phantom(seed, shape, spacing, n_tumors)
    return case.image, case.label


def write_lits_folder(
    outdir: Union[str, os.PathLike],
    cases: Union[int, Iterable[int]],
    seed: int = 0,
    shape: Sequence[int] = (64, 256, 256),
    spacing: Optional[Sequence[float]] = None,
    overwrite: bool = False,
) -> List[Tuple[Path, Path]]:
    """Write phantoms as a LiTS-style folder: ``volume-N.nii.gz`` and ``segmentation-N.nii.gz``.

    Args:
        outdir: output folder (created if needed).
        cases: number of cases (numbered from 0) or the case numbers to write.
        seed: folder seed; case N uses a seed derived from ``(seed, N)``, so case N is the same whatever
            other cases are written.
        shape: ``(z, y, x)`` voxels per case.
        spacing: fixed spacing ``(x, y, z)`` mm, or ``None`` for a random one per case.
        overwrite: replace existing files.

    Returns:
        ``[(volume_path, segmentation_path), ...]`` in case order.
    """
    from .phantoms.folder import case_numbers, refuse_existing, write_case

    numbers = case_numbers(cases, seed)
    _check_args(shape, spacing)
    outdir = refuse_existing(outdir, numbers, overwrite)
    written = []
    for n in numbers:
        case_seed = int(np.random.SeedSequence([int(seed), n]).generate_state(1)[0])
        written.append(write_case(outdir, n, *make_phantom(case_seed, shape, spacing), overwrite))
    return written
