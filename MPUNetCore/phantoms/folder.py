"""Write anatomical phantoms as a LiTS-style folder (``volume-N.nii.gz``, ``segmentation-N.nii.gz``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from .generate import _check, make_phantom

if TYPE_CHECKING:
    import SimpleITK as sitk


def case_seed(seed: int, number: int) -> int:
    """The seed of case ``number`` of a folder with seed ``seed`` (independent of the other cases)."""
    return int(np.random.SeedSequence([int(seed), int(number), 13]).generate_state(1)[0])


def case_numbers(cases: Union[int, Iterable[int]], seed: int) -> List[int]:
    """The case numbers of ``cases`` (a count or the numbers); refuses negative numbers and seeds."""
    numbers = list(range(cases)) if isinstance(cases, (int, np.integer)) else [int(n) for n in cases]
    if any(n < 0 for n in numbers) or int(seed) != seed or seed < 0:
        raise ValueError(
            f"case numbers and seed must be non-negative integers; got cases={cases}, seed={seed}"
        )
    return numbers


def refuse_existing(outdir: Union[str, os.PathLike], numbers: Sequence[int], overwrite: bool) -> Path:
    """``outdir`` as a Path; without ``overwrite``, refuses before anything is written if a case is there."""
    from ..volume_io import VolumeError

    outdir = Path(outdir)
    names = [outdir / f"{kind}-{n}.nii.gz" for n in numbers for kind in ("volume", "segmentation")]
    existing = [str(p) for p in names if p.exists()]
    if existing and not overwrite:
        raise VolumeError(
            f"the output {existing[0]} already exists; choose another folder, or pass --overwrite to "
            "replace it"
        )
    return outdir


def write_case(
    outdir: Path, number: int, image: sitk.Image, label: sitk.Image, overwrite: bool
) -> Tuple[Path, Path]:
    """Write case ``number``'s CT and label map; returns their paths."""
    from ..volume_io import write_image

    volume = write_image(image, outdir / f"volume-{number}.nii.gz", overwrite)
    return volume, write_image(label, outdir / f"segmentation-{number}.nii.gz", overwrite)


def write_lits_folder(
    outdir: Union[str, os.PathLike],
    cases: Union[int, Iterable[int]],
    seed: int = 0,
    shape: Sequence[int] = (64, 256, 256),
    spacing: Optional[Sequence[float]] = None,
    overwrite: bool = False,
    synthseg_fraction: float = 0.0,
    slab_fraction: float = 0.0,
    recess: Optional[Sequence[float]] = None,
    steatosis: float = 0.0,
) -> List[Tuple[Path, Path]]:
    """Write phantoms as ``volume-N.nii.gz`` and ``segmentation-N.nii.gz``.

    Args:
        outdir: output folder (created if needed).
        cases: number of cases (numbered from 0) or the case numbers to write.
        seed: folder seed; case N's seed derives from ``(seed, N)``.
        shape: ``(z, y, x)`` voxels per case.
        spacing: fixed spacing ``(x, y, z)`` mm, or ``None`` for a drawn protocol per case.
        overwrite: replace existing files.
        synthseg_fraction: fraction of cases (chosen by seed) with randomised soft-tissue HU.
        slab_fraction: fraction of cases (chosen by seed) with only 3-12 slices (a thin slab, like a
            few slices exported from a scan), so that a model also learns to work with little z context.
        recess: depth range (mm) of the lung's recesses around the liver (see :func:`.build_phantom`).
        steatosis: extra probability of a fatty liver (see :func:`.build_phantom`).

    Returns:
        ``[(volume_path, segmentation_path), ...]`` in case order.
    """
    numbers = case_numbers(cases, seed)
    for name, value in (("synthseg_fraction", synthseg_fraction), ("slab_fraction", slab_fraction)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be in [0, 1]; got {value}")
    _check(shape, spacing, None, None, recess, steatosis)
    outdir = refuse_existing(outdir, numbers, overwrite)
    written = []
    for n in numbers:
        s = case_seed(seed, n)
        choice = np.random.default_rng(s + 1).random(3)
        synth = bool(choice[0] < synthseg_fraction)
        size = tuple(shape)
        if choice[1] < slab_fraction:
            size = (min(size[0], 3 + int(choice[2] * 10)),) + size[1:]
        image, label = make_phantom(s, size, spacing, synthseg=synth, recess=recess, steatosis=steatosis)
        written.append(write_case(outdir, n, image, label, overwrite))
    return written
