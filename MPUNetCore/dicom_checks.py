"""Checks that a DICOM series is one complete, evenly spaced stack of parallel slices.

GDCM, which SimpleITK uses to list a folder's series, silently leaves out a slice it cannot parse (a
truncated file), and ITK stacks whatever slices it is given with one spacing: a missing, duplicated or
moved slice would give a volume whose geometry is wrong without any message. These checks read every
slice's header and return what is wrong, naming the slice files; :mod:`MPUNetCore.volume_io` turns that
into a :class:`~MPUNetCore.volume_io.VolumeError`.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

POSITION, ORIENTATION, INSTANCE = "0020|0032", "0020|0037", "0020|0013"
#: Relative tolerance on slice spacing (DICOM positions are decimal strings with ~6 digits).
SPACING_TOLERANCE = 0.01
#: Slices closer than this (mm) along the normal are duplicates.
DUPLICATE_MM = 1e-3
#: Media Storage SOP Class UID of a DICOMDIR: a DICOM file that indexes a file set, never a slice.
DICOMDIR_SOP_CLASS = b"1.2.840.10008.1.3.10"


@dataclass(frozen=True)
class SliceHeader:
    """The geometry of one slice file."""

    file: str
    position: Tuple[float, float, float]
    orientation: Tuple[float, ...]
    instance: Optional[int]


@dataclass(frozen=True)
class SeriesProblem:
    """Why a series cannot be read as it is.

    Attributes:
        message: what is wrong, naming the slice files.
        uneven: True when the only problem is the slice spacing (gaps or uneven spacing), which
            ``allow_uneven_slices`` accepts.
    """

    message: str
    uneven: bool = False


def looks_like_dicom(path: Path) -> bool:
    """True for a file with the DICOM preamble magic ("DICM" at byte 128) or a .dcm extension."""
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def is_dicomdir(path: Path) -> bool:
    """True for a DICOMDIR: its file meta information (group 0002, always explicit VR little endian,
    right after "DICM") gives the Media Storage Directory SOP class as (0002,0002)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132 + 2048)
    except OSError:
        return False
    pos = 132
    if head[128:pos] != b"DICM":
        return False
    while pos + 12 <= len(head):
        group, element = struct.unpack_from("<HH", head, pos)
        if group != 0x0002:
            return False
        if head[pos + 4 : pos + 6] in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):  # 4-byte lengths
            start, length = pos + 12, struct.unpack_from("<I", head, pos + 8)[0]
        else:
            start, length = pos + 8, struct.unpack_from("<H", head, pos + 6)[0]
        if element == 0x0002:
            return head[start : start + length].rstrip(b"\0 ") == DICOMDIR_SOP_CLASS
        pos = start + length
    return False


def unlisted_dicom_files(folder: Path, listed: Sequence[str]) -> List[str]:
    """DICOM-looking files of ``folder`` that GDCM did not put in any series (truncated or corrupt).

    A DICOMDIR (the index of a DICOM file set, often beside the slices) belongs to no series by design.
    """
    known = {os.path.realpath(f) for f in listed}
    out = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and os.path.realpath(path) not in known and looks_like_dicom(path):
            if not is_dicomdir(path):
                out.append(path.name)
    return out


def _floats(text: str, n: int) -> Optional[Tuple[float, ...]]:
    try:
        values = tuple(float(v) for v in text.replace(",", "\\").split("\\") if v.strip())
    except ValueError:
        return None
    return values if len(values) == n and all(np.isfinite(values)) else None


def read_slice_header(file: str) -> Optional[SliceHeader]:
    """The position, orientation and instance number of one slice, or None if it has no usable geometry."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(file)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    if not (reader.HasMetaDataKey(POSITION) and reader.HasMetaDataKey(ORIENTATION)):
        return None
    position = _floats(reader.GetMetaData(POSITION), 3)
    orientation = _floats(reader.GetMetaData(ORIENTATION), 6)
    if position is None or orientation is None:
        return None
    instance = None
    if reader.HasMetaDataKey(INSTANCE):
        try:
            instance = int(float(reader.GetMetaData(INSTANCE)))
        except ValueError:
            instance = None
    return SliceHeader(file, position, orientation, instance)  # type: ignore[arg-type]


def _names(files: Sequence[str], limit: int = 6) -> str:
    shown = [os.path.basename(f) for f in files[:limit]]
    return ", ".join(shown) + (f" and {len(files) - limit} more" if len(files) > limit else "")


def series_problem(files: Sequence[str]) -> Optional[SeriesProblem]:
    """Check the slices of one series: readable geometry, one orientation, no duplicates, even spacing.

    Args:
        files: the series' slice files.

    Returns:
        None when the series is one evenly spaced stack, else the problem.
    """
    headers = [read_slice_header(f) for f in files]
    broken = [f for f, h in zip(files, headers) if h is None]
    if broken:
        return SeriesProblem(f"slice file(s) {_names(broken)} have no readable position/orientation")
    if len(headers) < 2:
        return None
    keys = [tuple(np.round(h.orientation, 4)) for h in headers]
    common = max(set(keys), key=keys.count)
    first = np.asarray(common)
    odd = [h.file for h in headers if np.max(np.abs(np.asarray(h.orientation) - first)) > 1e-4]
    if odd:
        reference = next(h.file for h in headers if h.file not in odd)
        return SeriesProblem(
            f"slice file(s) {_names(odd)} are oriented differently from {os.path.basename(reference)} "
            "(mixed orientations: e.g. a localizer or a reformatted slice in the folder)"
        )
    normal = np.cross(first[:3], first[3:])
    ordered = sorted(headers, key=lambda h: float(np.dot(normal, h.position)))
    z = np.array([float(np.dot(normal, h.position)) for h in ordered])
    steps = np.diff(z)
    for k in np.flatnonzero(steps < DUPLICATE_MM):
        return SeriesProblem(
            f"slice files {_names([ordered[k].file, ordered[k + 1].file])} lie at the same position "
            f"({z[k]:.3f} mm along the slice normal): duplicated slices"
        )
    step = float(np.median(steps))
    uneven = [k for k, s in enumerate(steps) if abs(s - step) > SPACING_TOLERANCE * step]
    if uneven:
        k = uneven[0]
        return SeriesProblem(
            f"uneven slice spacing: {steps.min():.4g} to {steps.max():.4g} mm (median {step:.4g} mm), "
            f"first between {_names([ordered[k].file, ordered[k + 1].file])} ({steps[k]:.4g} mm): "
            "missing slices or a mixed series",
            uneven=True,
        )
    numbers = [h.instance for h in ordered]
    if None not in numbers and len(set(numbers)) == len(numbers):
        jumps = np.abs(np.diff(np.asarray(numbers, dtype=np.int64)))
        gaps = np.flatnonzero(jumps > 1)
        if gaps.size:
            k = int(gaps[0])
            low, high = sorted((numbers[k], numbers[k + 1]))
            return SeriesProblem(
                f"slice(s) missing between instance numbers {low} and {high} (neighbouring slice files "
                f"{_names([ordered[k].file, ordered[k + 1].file])})",
                uneven=True,
            )
    return None
