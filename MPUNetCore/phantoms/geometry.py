"""What a phantom case draws before any voxel: scanner protocol, patient build, pose and field of view.

Patient parameters ``P`` (millimetres, already multiplied by the scale ``s``): ``A``/``B``/``Bp`` trunk
half-width, anterior and posterior half-depth; ``tf``, ``tm``, ``skin`` fat, muscle and skin thickness;
``Ac``/``Bc``/``Bcp`` the abdominal cavity's half-axes; ``H`` the liver's height scale; ``liver_volume``
(ml, at scale 1); ``left_dome`` how much lower the left dome is; ``Rv``/``vb`` vertebral body radius and
centre (v); ``ivc_u``/``ivc_v`` the IVC's centre; ``arms_down``, ``table`` and the table's geometry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from .appearance import PHASES

SLICE_SPACINGS = (0.7, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
INPLANE_SPACING = (0.6, 1.0)
FOV_MM = (300.0, 500.0)
SIM_VOXELS = 8_000_000  # budget of the simulation grid (speed)


@dataclass
class Scanner:
    """The acquisition: voxel spacing (x, y, z) mm, slice thickness, in-plane PSF, noise, phase."""

    spacing: Tuple[float, float, float]
    thickness: float
    psf_fwhm: float
    noise_sd: float
    phase: str
    outside_value: Optional[float]  # value outside the reconstruction circle, None: no circle


def draw_scanner(
    rng: np.random.Generator,
    spacing: Optional[Sequence[float]],
    phase: Optional[str],
    matrix: int = 512,
    width: float = 350.0,
) -> Scanner:
    """Draw a CT protocol (``spacing`` and ``phase`` are kept when given).

    The drawn field of view fits the patient (``width`` mm across, arms included) with a margin, as a
    technologist sets it, within 300-500 mm; over ``matrix`` pixels that is 0.6-1.0 mm for a 512 matrix
    (a smaller matrix gives coarser pixels, like a downsampled scan).
    """
    if spacing is None:
        fov = float(np.clip(width * rng.uniform(1.02, 1.25), *FOV_MM))
        sxy = round(max(fov / matrix, INPLANE_SPACING[0]), 4)
        sz = float(rng.choice(SLICE_SPACINGS))
        thickness = float(np.clip(sz * rng.choice([1.0, 1.0, 1.0, 1.5, 2.0]), 0.7, 5.0))
        spacing = (sxy, sxy, sz)
    else:
        spacing = tuple(float(x) for x in spacing)
        thickness = float(np.clip(spacing[2], 0.7, 5.0))
        rng.random(3)  # keep the stream aligned with the drawn-spacing case
    if phase is None:
        phase = PHASES[int(rng.choice(4, p=[0.15, 0.2, 0.5, 0.15]))]
    noise = float(rng.uniform(9, 25) * np.sqrt(2.5 / thickness))  # quantum noise falls with thickness
    outside = float(rng.choice([-1024.0, -3024.0])) if rng.random() < 0.4 else None
    return Scanner(spacing, thickness, float(rng.uniform(0.7, 1.5)), noise, phase, outside)


def draw_patient(rng: np.random.Generator) -> dict:
    """Patient build at scale 1 (see :func:`fit_patient`)."""
    A = rng.uniform(145, 205)  # lateral half-width: 290-410 mm across
    B = A * rng.uniform(0.7, 0.95)
    P = {
        "A": A, "B": B, "Bp": B * rng.uniform(0.85, 0.95),
        "tf": float(np.clip(rng.normal(6 + (A - 145) * 0.4, 6), 4, 45)), "tm": rng.uniform(9, 18),
        "skin": rng.uniform(1.5, 2.5), "H": rng.uniform(140, 185),
        "liver_volume": rng.uniform(1000, 2500), "left_dome": rng.uniform(10, 35), "Rv": rng.uniform(16, 22),
        "spine_depth": rng.uniform(52, 62), "arms_down": bool(rng.random() < 0.3),
        "table": bool(rng.random() < 0.75),
        "table_gap": rng.uniform(0, 10), "table_shell": rng.uniform(2, 4), "phase": rng.uniform(0, 2 * np.pi),
    }  # fmt: skip
    P["width"] = 2 * (A + (60 if P["arms_down"] else 0))  # arms down may be cut by the FOV
    return P


def fit_patient(rng: np.random.Generator, P: dict, fov: Sequence[float]) -> dict:
    """Scale the patient down (a small patient) when the field of view is too small to hold it.

    A field of view of 300 mm or more sometimes crops a big patient instead (1 case in 4).
    """
    fit = min(fov[0] / P["width"], 0.95 * fov[1] / 2 / max(P["B"], P["Bp"] + 20))
    crop = fov[0] >= 300 and rng.random() < 0.25  # a big patient cropped by the field of view
    s = 1.0 if crop else float(min(1.0, fit))
    for key in (
        "A",
        "B",
        "Bp",
        "tf",
        "tm",
        "skin",
        "H",
        "left_dome",
        "Rv",
        "spine_depth",
        "table_gap",
        "table_shell",
    ):
        P[key] *= s
    P["s"] = s
    P["Ac"], P["Bc"] = P["A"] - P["tf"] - P["tm"], P["B"] - P["tf"] - P["tm"]
    P["Bcp"] = P["Bp"] - 0.6 * P["tf"] - P["tm"]
    P["vb"] = P["Bcp"] - P["spine_depth"]
    P["ivc_u"], P["ivc_v"] = -24 * s, P["vb"] - P["Rv"] - 12 * s
    return P


def draw_pose(rng: np.random.Generator, P: dict, fov: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    """Patient rotation (3x3, patient -> scanner) and the patient point at the image centre (u, v, w).

    ``P['liver_bottom']`` (from :func:`.liver.shape_liver`) places the field of view on the liver.
    """
    angles = rng.uniform(-1, 1, 3) * (0.04, 0.04, 0.1) if rng.random() < 0.6 else np.zeros(3)
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    slack = np.maximum(np.array(fov[:2]) / 2 - np.array([P["A"], P["B"]]), 0)
    centre_uv = rng.uniform(-0.3, 0.3, 2) * slack + (0, 0.15 * P["B"])  # the table side shows more
    bottom, fz = P["liver_bottom"], fov[2]
    if fz < -bottom:  # a short scan: centred on the liver
        w = rng.uniform(0.9 * bottom, 0.15 * bottom)
    else:  # from liver-only to chest-abdomen-pelvis; the liver is at least partly inside
        margin = min(40 * P["s"], 0.45 * fz)
        w = rng.uniform(bottom - fz / 2 + margin, fz / 2 - margin)
    return rz @ ry @ rx, np.array([centre_uv[0], centre_uv[1], w])
