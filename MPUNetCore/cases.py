"""Finding cases: a file, a DICOM series folder, or a folder of cases, each with a stable name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Union

import SimpleITK as sitk

from MPUNetCore.fileutils import full_suffix

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd", ".seg.nrrd")


@dataclass(frozen=True)
class Case:
    """One input scan: its name (used for output files and for matching labels) and its path."""

    name: str
    path: Path


def case_name(path: Union[str, Path]) -> str:
    """The name of a case: the file name without its image extension, or the folder's name.

    `volume-3.nii.gz` → `volume-3`, `scan.seg.nrrd` → `scan`, `dicom/CT1/` → `CT1`.
    """
    path = Path(path)
    if path.is_dir():
        return path.name
    return path.name[: -len(full_suffix(path))] if full_suffix(path) else path.name


def is_image_file(path: Path) -> bool:
    """True for the volume formats read here (NIfTI, NRRD, MetaImage); DICOM goes by folder."""
    return path.is_file() and full_suffix(path).lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def holds_dicom_series(folder: Path) -> bool:
    """True when GDCM finds at least one DICOM series directly in `folder`."""
    return bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def discover_cases(path: Union[str, Path]) -> List[Case]:
    """Every case under `path`, sorted by name.

    A file is one case; a folder holding DICOM files is one series (one case); any other folder
    holds cases: each image file in it, and each sub-folder that holds a DICOM series.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: a folder with no case in it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    if path.is_file():
        return [Case(case_name(path), path)]
    if holds_dicom_series(path):
        return [Case(case_name(path), path)]
    cases = [
        Case(case_name(p), p)
        for p in sorted(path.iterdir())
        if is_image_file(p) or (p.is_dir() and holds_dicom_series(p))
    ]
    if not cases:
        raise ValueError(
            f"no CT found in {path}: expected NIfTI/NRRD/MHA files or DICOM series folders in it"
        )
    names = [c.name for c in cases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{path} holds several cases named {', '.join(duplicates)}; rename one of each")
    return cases
