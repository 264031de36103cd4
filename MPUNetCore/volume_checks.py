"""Low-level helpers for :mod:`MPUNetCore.volume_io`: DICOM series discovery and file completeness checks.

Nothing here raises user-facing errors: functions return facts (series found, why a file is incomplete)
and :mod:`MPUNetCore.volume_io` turns them into :class:`~MPUNetCore.volume_io.VolumeError` messages.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import struct
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

import SimpleITK as sitk

PathLike = Union[str, os.PathLike]
SERIES_DESCRIPTION_TAG = "0008|103e"


@dataclass
class DicomSeries:
    """One DICOM series found in a folder.

    Attributes:
        uid: SeriesInstanceUID (0020,000E).
        files: its files, sorted by GDCM along the slice normal.
        description: SeriesDescription (0008,103E), ``""`` if absent.
    """

    uid: str
    files: Tuple[str, ...]
    description: str = ""

    def __str__(self) -> str:
        text = f"{self.uid} ({len(self.files)} slices"
        return text + (f", '{self.description}')" if self.description else ")")


def list_dicom_series(folder: PathLike) -> List[DicomSeries]:
    """List the DICOM series in a folder (not its subfolders).

    Args:
        folder: the folder.

    Returns:
        One entry per series UID, with its sorted file names and description.
    """
    folder = str(folder)
    series = []
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder):
        files = tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid))
        description = ""
        try:
            reader = sitk.ImageFileReader()
            reader.SetFileName(files[0])
            reader.ReadImageInformation()
            if reader.HasMetaDataKey(SERIES_DESCRIPTION_TAG):
                description = reader.GetMetaData(SERIES_DESCRIPTION_TAG).strip()
        except RuntimeError:
            pass
        series.append(DicomSeries(uid, files, description))
    return series


def _nifti_expected_bytes(header: bytes) -> Optional[int]:
    """Bytes a single-file NIfTI-1/2 should hold (header + voxels), or None if the header is not NIfTI."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            vox_offset = struct.unpack(endian + "f", header[108:112])[0]
            if not math.isfinite(vox_offset):
                return None  # a damaged header: ITK's reader judges it
            offset = max(int(vox_offset), 352)
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            dims = struct.unpack(endian + "8q", header[16:80])
            offset = max(struct.unpack(endian + "q", header[168:176])[0], 544)
            break
    else:
        return None
    ndim = dims[0]
    if not 1 <= ndim <= 7 or bitpix <= 0:
        return None
    voxels = 1
    for d in dims[1 : ndim + 1]:
        voxels *= max(int(d), 1)
    return offset + voxels * bitpix // 8


def nifti_truncation(path: PathLike) -> Optional[str]:
    """Check that a .nii / .nii.gz file holds all its voxels (ITK silently zero-fills truncated NIfTI).

    Args:
        path: the file.

    Returns:
        ``None`` if complete (or not a single-file NIfTI), else a short reason.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".nii"):
        with open(path, "rb") as f:
            expected = _nifti_expected_bytes(f.read(544))
        size = path.stat().st_size
        if expected is not None and size < expected:
            return f"it holds {size} bytes but its header describes {expected}"
        return None
    if not name.endswith(".nii.gz"):
        return None
    if path.stat().st_size < 18:  # gzip header + trailer
        return f"it holds only {path.stat().st_size} bytes"
    with open(path, "rb") as f:
        raw = f.read(4096)
        f.seek(-4, os.SEEK_END)
        isize = struct.unpack("<I", f.read(4))[0]
    try:
        expected = _nifti_expected_bytes(zlib.decompressobj(31).decompress(raw, 544))
    except zlib.error as error:
        return f"gzip error ({error})"
    if expected is None or isize == expected % 2**32:
        return None  # the gzip trailer agrees (the common single-stream case): no need to decompress
    # Trailer disagrees: a multi-member gzip or a truncated/corrupt file. Decompress to be sure.
    total, decoder = 0, zlib.decompressobj(31)
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                while chunk:
                    total += len(decoder.decompress(chunk))
                    chunk = decoder.unused_data
                    if chunk:
                        decoder = zlib.decompressobj(31)
        if not decoder.eof:
            return f"the gzip stream ends early after {total} of {expected} bytes"
    except zlib.error as error:
        return f"gzip error after {total} bytes ({error})"
    if total < expected:
        return f"it decompresses to {total} bytes but its header describes {expected}"
    return None


def _nifti_head(path: Path, size: int = 348) -> bytes:
    """The first `size` bytes of a .nii or .nii.gz file, decompressed; b"" when it is neither or unreadable.

    The read is bounded: at most 64 KiB of a compressed file are read and `size` bytes inflated.
    """
    name = path.name.lower()
    try:
        with open(path, "rb") as f:
            if name.endswith(".nii"):
                return f.read(size)
            if name.endswith(".nii.gz"):
                return zlib.decompressobj(31).decompress(f.read(1 << 16), size)
    except (OSError, zlib.error):
        pass
    return b""


def nifti_sform(path: PathLike) -> Optional[Tuple[Tuple[float, float, float], ...]]:
    """The 3x3 linear part of a NIfTI-1 file's sform (srow_x/y/z) when its sform_code says it is used.

    ITK's NIfTI reader replaces an sform that shears the axes by an orthonormal direction (or by the
    qform) with only a warning, so the image it returns does not lie where the file says; this reads
    the header itself (fixed 348-byte layout, either byte order) so that the caller can refuse.

    Args:
        path: a .nii or .nii.gz file (anything else gives None).

    Returns:
        Rows ``(srow_x[:3], srow_y[:3], srow_z[:3])``, or None when the file is not NIfTI-1 or its
        sform_code is 0 (the qform, a rotation that cannot shear, is then the geometry).
    """
    header = _nifti_head(Path(path))
    for endian in "<>":
        if len(header) == 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            if struct.unpack(endian + "h", header[254:256])[0] <= 0:  # sform_code
                return None
            rows = struct.unpack(endian + "12f", header[280:328])
            return tuple(tuple(rows[4 * r : 4 * r + 3]) for r in range(3))
    return None


def read_failure_reason(path: PathLike, itk_message: str) -> Optional[str]:
    """A plain-words reason (with the fix) for an ITK read failure that ITK itself words badly.

    ITK reports a truncated MetaImage as "Reason: No such file or directory" (a stale errno) and a
    singular direction matrix by printing the matrix; both are recognised from the message.

    Args:
        path: the file that failed.
        itk_message: the text of SimpleITK's exception.

    Returns:
        The reason and fix, or None for other failures.
    """
    short = re.search(r"data not read completely\s*ideal = (\d+) : actual = (\d+)", itk_message)
    if short:
        return (
            f"the file is truncated: it holds {short.group(2)} of the {short.group(1)} bytes of voxel data "
            "its header describes. Copy or export it again."
        )
    if "MetaImageIO" in itk_message and "No such file or directory" in itk_message and Path(path).is_file():
        return (  # ITK's stale errno: the file is there, its header or data is what it could not read
            "its MetaImage header is damaged or does not match the voxel data after it (ITK could not read "
            "it). Copy or export it again."
        )
    if "Bad direction" in itk_message or "determinant is 0" in itk_message:
        return (
            "its header's direction matrix is singular (all zero, or axes that are not independent), so the "
            "image has no orientation. Set the direction cosines in the header (e.g. TransformMatrix = "
            "1 0 0 0 1 0 0 0 1 for an axial image) or export it again."
        )
    return None


@contextlib.contextmanager
def captured_stderr() -> Iterator[List[str]]:
    """Collect what C++ code (ITK's MetaIO, GDCM) prints on file descriptor 2 during the block.

    Those libraries write warnings straight to the process's stderr, bypassing Python; the text is
    kept (the list holds it after the block) so that real problems can be reported in our own words.
    """
    text: List[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (e.g. a GUI process without a console)
        saved = None
    if saved is None:
        yield text
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text.append(tmp.read(65536).decode("utf-8", errors="replace"))
