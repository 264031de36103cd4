"""Anatomical CT phantoms: draw a case, paint its anatomy, image it; seeded and deterministic."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from . import body, lesions, liver, organs
from .appearance import PHASES, TISSUES, draw_hu
from .geometry import SIM_VOXELS, Scanner, draw_patient, draw_pose, draw_scanner, fit_patient
from .scanner import Sampling, render
from .shapes import Grid


@dataclass
class PhantomCase:
    """A generated case.

    Attributes:
        image: CT in HU (int16), LPS identity direction.
        label: 0 background, 1 liver (with its vessels), 2 tumour; the image's geometry.
        n_tumors: tumours painted (some may merge or be cut by the field of view).
        phase: contrast phase (one of :data:`PHASES`).
        hu: the case's mean HU per tissue name (before texture, blur and noise).
        scanner: the drawn protocol.
        patient: the drawn patient parameters (mm).
        tissues: tissue codes on the output grid (nearest neighbour), only when asked for.
    """

    image: sitk.Image
    label: sitk.Image
    n_tumors: int
    phase: str
    hu: Dict[str, float]
    scanner: Scanner
    patient: dict
    tissues: Optional[np.ndarray] = field(default=None, repr=False)


def _check(shape, spacing, n_tumors, phase, recess=None, steatosis=0.0) -> None:
    if recess is not None and (len(recess) != 2 or not 0 <= recess[0] <= recess[1] <= 200):
        raise ValueError(
            f"recess must be (lowest, highest) mm with 0 <= lowest <= highest <= 200; got {recess}"
        )
    if not 0 <= steatosis <= 1:
        raise ValueError(f"steatosis must be a probability in [0, 1]; got {steatosis}")
    if len(shape) != 3 or any(int(n) != n or n < low for n, low in zip(shape, (1, 8, 8))):
        raise ValueError(f"shape must be 3 integers (z, y, x), z >= 1 and y, x >= 8; got {shape}")
    if spacing is not None and (len(spacing) != 3 or any(not sp > 0 for sp in spacing)):
        raise ValueError(f"spacing must be 3 positive numbers (x, y, z) in mm, or None; got {spacing}")
    if n_tumors is not None and (int(n_tumors) != n_tumors or not 0 <= n_tumors <= 50):
        raise ValueError(f"n_tumors must be an integer 0-50 or None; got {n_tumors}")
    if phase is not None and phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)} or None; got {phase!r}")


def _sampling(size_zyx: Sequence[int], scanner: Scanner) -> Sampling:
    """Integer step ratios between the simulation and the output grid, within the voxel budget."""
    nz, ny, nx = size_zyx
    fxy = max(1, int(round(max(nx, ny) / 256)))
    plane = (-(-(ny - 1) // fxy) + 1) * (-(-(nx - 1) // fxy) + 1)
    sub = max(1, int(round(scanner.thickness / scanner.spacing[2])))
    while sub > 1 and nz * sub * plane > SIM_VOXELS:
        sub -= 1
    fz = max(1, int(np.ceil(nz * plane / SIM_VOXELS))) if sub == 1 else 1
    return Sampling((nz, ny, nx), fxy, fz, sub)


def _axes(origin, spacing, size, sampling: Sampling) -> List[np.ndarray]:
    """Scanner-frame coordinates (x, y, z) of the simulation grid."""
    steps = (spacing[0] * sampling.factor_xy, spacing[1] * sampling.factor_xy,
             spacing[2] * sampling.factor_z / sampling.sub_z)  # fmt: skip
    counts = [
        -(-(size[0] - 1) // sampling.factor_xy) + 1,
        -(-(size[1] - 1) // sampling.factor_xy) + 1,
        -(-(size[2] - 1) // sampling.factor_z) + 1 if sampling.sub_z == 1 else size[2] * sampling.sub_z,
    ]
    return [o + np.arange(n) * st for o, n, st in zip(origin, counts, steps)]


def _tissue_map(axes, rotation: np.ndarray, centre: np.ndarray, paint) -> np.ndarray:
    """Paint the anatomy in patient coordinates and return it on the simulation grid ``(z, y, x)``.

    Scanner point ``x`` shows patient point ``rotation.T @ x + centre`` (the scanner origin is the centre).
    """
    if np.allclose(rotation, np.eye(3)):
        g = Grid(*(a + c for a, c in zip(axes, centre)))
        paint(g)
        return g.tissue
    spacing = [float(a[1] - a[0]) if a.size > 1 else 1.0 for a in axes]
    corners = np.array(np.meshgrid(*[[a[0], a[-1]] for a in axes])).reshape(3, -1).T
    points = corners @ rotation + centre  # rotation.T @ x for each row x
    lo, hi = points.min(0) - 2 * np.array(spacing), points.max(0) + 2 * np.array(spacing)
    g = Grid(*(np.arange(lo_, hi_ + sp, sp) for lo_, hi_, sp in zip(lo, hi, spacing)))
    paint(g)
    drawn = sitk.GetImageFromArray(g.tissue)
    drawn.SetOrigin(tuple(float(x) for x in lo))
    drawn.SetSpacing(spacing)
    reference = sitk.Image([a.size for a in axes], sitk.sitkUInt8)
    reference.SetOrigin(tuple(float(a[0]) for a in axes))
    reference.SetSpacing(spacing)
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(rotation.T.ravel().tolist())
    transform.SetTranslation(centre.tolist())
    return sitk.GetArrayFromImage(sitk.Resample(drawn, reference, transform, sitk.sitkNearestNeighbor, 0))


def build_phantom(
    seed: int,
    shape: Sequence[int] = (64, 256, 256),
    spacing: Optional[Sequence[float]] = None,
    n_tumors: Optional[int] = None,
    phase: Optional[str] = None,
    synthseg: bool = False,
    tissues: bool = False,
    recess: Optional[Sequence[float]] = None,
    steatosis: float = 0.0,
) -> PhantomCase:
    """Generate one anatomical phantom.

    Args:
        seed: non-negative integer; the same seed and arguments give identical voxels.
        shape: output ``(z, y, x)`` voxels.
        spacing: output ``(x, y, z)`` mm; ``None`` draws a protocol (field of view 300-460 mm, so
            0.6-0.9 mm pixels for a 512 matrix; slices 0.7-5 mm).
        n_tumors: number of tumours; ``None`` draws 0-15.
        phase: contrast phase (``non_contrast``, ``arterial``, ``portal_venous``, ``delayed``);
            ``None`` draws one.
        synthseg: randomise soft-tissue HU (domain randomisation) instead of realistic values.
        tissues: also return the tissue codes on the output grid (slower).
        recess: ``(lowest, highest)`` mm: how far below the diaphragm's dome the lung's recesses
            reach at the cavity wall, drawn per case (:func:`.body.draw_recesses`); ``None``: none.
            Drawn from its own generator, so the rest of the phantom of ``seed`` is as without it.
        steatosis: probability of a fatty liver on top of the generator's own 1 in 8: the liver
            loses 10-45 HU in every phase (mild to severe; unenhanced 5-60 HU instead of 50-70). Drawn
            from its own generator, like ``recess``.

    Returns:
        A :class:`PhantomCase`.
    """
    _check(shape, spacing, n_tumors, phase, recess, steatosis)
    rng = np.random.default_rng(int(seed))
    P = draw_patient(rng)
    scanner = draw_scanner(rng, spacing, phase, max(int(shape[1]), int(shape[2])), P["width"])
    nz, ny, nx = (int(n) for n in shape)
    sx, sy, sz = scanner.spacing
    fov = (nx * sx, ny * sy, nz * sz)
    P = fit_patient(rng, P, fov)
    if recess is not None:
        P["recess"] = float(np.random.default_rng([int(seed), 29]).uniform(*recess)) * P["s"]
    liver.shape_liver(rng, P)
    rotation, centre = draw_pose(rng, P, fov)
    table_z = float(rng.uniform(-400, 0))
    origin = (-(nx - 1) / 2 * sx, -(ny - 1) / 2 * sy, table_z - (nz - 1) / 2 * sz)
    sampling = _sampling((nz, ny, nx), scanner)
    axes = _axes((origin[0], origin[1], origin[2] - table_z), scanner.spacing, (nx, ny, nz), sampling)
    sim_spacing = [float(a[1] - a[0]) if a.size > 1 else 1.0 for a in axes]
    placed = []

    def paint(g: Grid) -> None:
        body.draw_body(g, rng, P)
        body.draw_thorax(g, rng, P)
        body.draw_spine(g, rng, P)
        liver.draw_liver(g, rng, P)
        body.draw_recesses(g, P)
        body.draw_great_vessels(g, rng, P)
        for draw in (organs.draw_spleen, organs.draw_kidneys, organs.draw_stomach, organs.draw_pancreas,
                     organs.draw_bowel):  # fmt: skip
            draw(g, rng, P)
        count = lesions.draw_count(rng) if n_tumors is None else int(n_tumors)
        placed.append(lesions.draw_tumors(g, rng, P, count, min_diameter=2 * max(sx, sy)))
        body.draw_ribs(g, rng, P)
        body.draw_arms_and_table(g, rng, P)

    tissue = _tissue_map(axes, rotation, centre, paint)
    fatty = np.random.default_rng([int(seed), 31]).random(2)
    drop = 10.0 + 35.0 * float(fatty[1]) if fatty[0] < steatosis else 0.0
    mean, texture = draw_hu(rng, scanner.phase, synthseg, liver_drop=drop)
    hu, label = render(rng, tissue, sim_spacing, mean, texture, scanner, sampling)
    images = []
    for array in (hu, label):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(scanner.spacing)
        image.SetOrigin(origin)
        images.append(image)
    codes = sampling.nearest(tissue) if tissues else None
    return PhantomCase(
        images[0], images[1], placed[0], scanner.phase, {n: float(mean[c]) for n, c in TISSUES.items()},
        scanner, {k: v for k, v in P.items() if k != "liver_shape"}, codes,
    )  # fmt: skip


def make_phantom(
    seed: int,
    shape: Sequence[int] = (64, 256, 256),
    spacing: Optional[Sequence[float]] = None,
    n_tumors: Optional[int] = None,
    phase: Optional[str] = None,
    synthseg: bool = False,
    recess: Optional[Sequence[float]] = None,
    steatosis: float = 0.0,
) -> Tuple[sitk.Image, sitk.Image]:
    """The CT (int16 HU) and LiTS label map (uint8 0/1/2) of :func:`build_phantom`.

    Example:
        >>> image, label = make_phantom(0, shape=(32, 128, 128))
        >>> image.GetSize()
        (128, 128, 32)
    """
    case = build_phantom(seed, shape, spacing, n_tumors, phase, synthseg, recess=recess, steatosis=steatosis)
    return case.image, case.label
