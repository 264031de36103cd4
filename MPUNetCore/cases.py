"""Finding cases: a file, a DICOM series folder, or a folder of cases, each with a stable name."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Union

import SimpleITK as sitk

from MPUNetCore.dicom_checks import looks_like_dicom
from MPUNetCore.fileutils import split_extension
from MPUNetCore.volume_io import case_name

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd", ".seg.nrrd")


@dataclass(frozen=True)
class Case:
    """One input scan: its name (used for output files and for matching labels) and its path."""

    name: str
    path: Path


def is_image_file(path: Path) -> bool:
    """True for the volume formats read here (NIfTI, NRRD, MetaImage); DICOM goes by folder."""
    hidden = path.name.startswith(".")
    return path.is_file() and not hidden and split_extension(path)[1].lower() in IMAGE_SUFFIXES


def holds_dicom_series(folder: Path) -> bool:
    """True when `folder` directly holds DICOM files that GDCM groups into at least one series."""
    files = [
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and not is_image_file(p)
    ]
    if not any(looks_like_dicom(p) for p in files[:64]):  # cheap test first: GDCM warns on empty folders
        return False
    return bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


_LABEL_NAME = re.compile(r"^(segmentation|labels?|seg|mask)[-_]|[-_](seg|label|labels|mask)$", re.IGNORECASE)


def is_label_name(name: str) -> bool:
    """True for case names that denote a label map rather than a CT (LiTS `segmentation-3`, `case_seg`)."""
    return bool(_LABEL_NAME.search(name))


def discover_cases(path: Union[str, Path], kind: str = "any") -> List[Case]:
    """Every case under `path`, sorted by name.

    A file is one case; a folder holding DICOM files is one series (one case); any other folder
    holds cases: each image file in it, and each sub-folder that holds a DICOM series.

    Args:
        path: a file or folder.
        kind: "any"; "image" to leave out label maps named as such (`segmentation-N`, `*_seg`) when a
            folder mixes CTs and labels, as LiTS folders do; "label" to keep only those, when any.

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
    if kind not in ("any", "image", "label"):
        raise ValueError(f"kind must be 'any', 'image' or 'label', not {kind!r}")
    if kind != "any":
        chosen = [c for c in cases if is_label_name(c.name) == (kind == "label")]
        cases = chosen or cases
    if not cases:
        raise ValueError(
            f"no CT found in {path}: expected NIfTI/NRRD/MHA files or DICOM series folders in it"
        )
    names = [c.name for c in cases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{path} holds several cases named {', '.join(duplicates)}; rename one of each")
    return cases
