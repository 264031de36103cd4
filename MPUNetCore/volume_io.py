"""Volume I/O: read CT volumes and label maps with their geometry, write label maps on the same grid.

Arrays are in ``sitk.GetArrayFromImage`` order ``(z, y, x)``; ``spacing``, ``origin`` and ``direction``
follow SimpleITK's ``(x, y, z)`` conventions (LPS physical space, direction as a row-major 3x3 tuple).
Every error a user can cause is a :class:`VolumeError` naming the file, the problem and the fix.
Inputs are never modified; outputs are written atomically (temporary file, then ``os.replace``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk

from . import dicom_checks
from .fileutils import atomic_output, split_extension
from .output_guard import LABEL_MAP_FORMATS, OutputFormatError, check_label_map_format
from .volume_checks import (
    DicomSeries,
    captured_stderr,
    list_dicom_series,
    nifti_sform,
    nifti_truncation,
    read_failure_reason,
)

# ITK prints its own warnings (e.g. "Non uniform sampling or missing slices detected") straight onto
# stderr; the checks here detect those problems and report them as our own messages instead.
sitk.ProcessObject.SetGlobalWarningDisplay(False)

__all__ = ["DicomSeries", "Volume", "VolumeError", "case_name", "list_dicom_series", "read_label_map"]
__all__ += ["read_volume", "split_extension", "write_image", "write_label_map"]

PathLike = Union[str, os.PathLike]


class VolumeError(ValueError):
    """A user-facing problem with an input or output volume (message names the file and the fix)."""


def case_name(path: PathLike) -> str:
    """Case name of a volume path: its file name without image extensions (a DICOM folder's name).

    Args:
        path: a file such as ``volume-3.nii.gz`` or a DICOM folder.

    Returns:
        The name, e.g. ``"volume-3"``.
    """
    return split_extension(Path(path))[0]


@dataclass
class Volume:
    """A 3D volume: voxel array plus the geometry that places it in LPS physical space.

    Attributes:
        array: voxels in ``(z, y, x)`` order, as ``sitk.GetArrayFromImage`` returns them.
        spacing: voxel size in mm, ``(x, y, z)``.
        origin: physical position of voxel ``(0, 0, 0)`` in mm (LPS), ``(x, y, z)``.
        direction: row-major 3x3 direction cosines (columns are the x, y, z axes), as SimpleITK.
        path: the file or DICOM folder it came from (``None`` if built in memory).
        name: case name (file name without image extension) or ``""``.
        notes: what was accepted only because the user asked (e.g. uneven DICOM slices); written into
            the header of label maps made on this grid (NIfTI description, NRRD/MHA ``ITK_FileNotes``).
    """

    array: np.ndarray
    spacing: Tuple[float, float, float]
    origin: Tuple[float, float, float]
    direction: Tuple[float, ...]
    path: Optional[Path] = None
    name: str = field(default="")
    notes: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise VolumeError(f"Volume array must be 3D (z, y, x), got shape {self.array.shape}")
        self.spacing = tuple(float(v) for v in self.spacing)
        self.origin = tuple(float(v) for v in self.origin)
        self.direction = tuple(float(v) for v in self.direction)
        if len(self.spacing) != 3 or len(self.origin) != 3 or len(self.direction) != 9:
            raise VolumeError("Volume geometry must be 3D: 3 spacings, 3 origin values, 9 direction values")
        if self.path is not None:
            self.path = Path(self.path)
            if not self.name:
                self.name = case_name(self.path)

    @classmethod
    def from_image(cls, image: sitk.Image, path: Optional[PathLike] = None, dtype=None) -> Volume:
        """Build a Volume from a 3D scalar SimpleITK image.

        Args:
            image: the image (its geometry is copied exactly).
            path: where it came from, if anywhere.
            dtype: numpy dtype to convert the array to (``None`` keeps the image's type).

        Returns:
            The Volume.
        """
        array = sitk.GetArrayFromImage(image)
        if dtype is not None:
            array = array.astype(dtype, copy=False)
        return cls(array, image.GetSpacing(), image.GetOrigin(), image.GetDirection(), path)

    @property
    def shape(self) -> Tuple[int, int, int]:
        """Array shape ``(z, y, x)``."""
        return tuple(self.array.shape)

    @property
    def size(self) -> Tuple[int, int, int]:
        """Image size in SimpleITK order ``(x, y, z)``."""
        return tuple(reversed(self.array.shape))

    @property
    def image(self) -> sitk.Image:
        """This volume as a SimpleITK image (same as ``to_image()``)."""
        return self.to_image()

    def to_image(self, array: Optional[np.ndarray] = None) -> sitk.Image:
        """Make a SimpleITK image with exactly this volume's geometry.

        Args:
            array: voxels to use instead of ``self.array`` (e.g. a label map); must have the same
                ``(z, y, x)`` shape.

        Returns:
            The image.
        """
        array = self.array if array is None else np.asarray(array)
        if array.shape != self.array.shape:
            raise VolumeError(
                f"array shape {array.shape} does not match the volume {self.name or ''} shape "
                f"{self.array.shape} (z, y, x); resample it onto the volume's grid first"
            )
        if array.dtype == bool:
            array = array.astype(np.uint8)
        image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=False)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        if self.notes:
            image.SetMetaData("ITK_FileNotes", "; ".join(self.notes))
        return image


# --------------------------------------------------------------------------------------------- reading


def _sitk_reason(error: Exception) -> str:
    """The informative last line of a SimpleITK exception."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _read_dicom_folder(folder: Path, series_uid: Optional[str], allow_uneven: bool) -> Tuple[sitk.Image, str]:
    """Read one complete, evenly spaced series of a folder; returns the image and a note ('' or why)."""
    with captured_stderr():  # GDCM's own warnings about files it skips; they are checked below
        series = list_dicom_series(folder)
    unreadable = dicom_checks.unlisted_dicom_files(folder, [f for s in series for f in s.files])
    if unreadable:
        raise VolumeError(
            f"DICOM folder {folder}: {', '.join(unreadable[:6])}"
            + (f" and {len(unreadable) - 6} more" if len(unreadable) > 6 else "")
            + " cannot be read as DICOM slices (truncated or corrupt), so the series would be missing them. "
            "Copy or export the series again, or move files that do not belong to it out of the folder."
        )
    if not series:
        subfolders = [p.name for p in folder.iterdir() if p.is_dir()]
        hint = ""
        if subfolders:
            names = ", ".join(sorted(subfolders)[:5])
            hint = f" It has subfolders ({names}): pass the one with the DICOM files."
        raise VolumeError(
            f"no DICOM series found in folder {folder}.{hint} Pass a folder holding the .dcm files of one "
            "series, or an image file (.nii.gz, .nrrd, .mha)."
        )
    if series_uid is not None:
        chosen = [s for s in series if s.uid == series_uid]
        if not chosen:
            raise VolumeError(
                f"series UID {series_uid} is not in DICOM folder {folder}; available series: "
                + "; ".join(str(s) for s in series)
                + ". Pass one of these with --series UID."
            )
        chosen_series = chosen[0]
    elif len(series) > 1:
        raise VolumeError(
            f"DICOM folder {folder} holds {len(series)} series: "
            + "; ".join(str(s) for s in series)
            + ". Pick one with --series UID (series_uid=...)."
        )
    else:
        chosen_series = series[0]
    note = ""
    with captured_stderr():
        problem = dicom_checks.series_problem(chosen_series.files)
    if problem is not None and not (problem.uneven and allow_uneven):
        fix = (
            " Export the complete series again; to segment it anyway on an evenly spaced approximation, "
            "pass --allow-uneven-slices (the output records it)."
            if problem.uneven
            else " Keep one slice per position and one orientation in the folder (move the others out), "
            "or export the series again."
        )
        raise VolumeError(f"DICOM series in {folder}: {problem.message}.{fix}")
    if problem is not None:
        note = "MPUNet: uneven DICOM slices accepted (--allow-uneven-slices)"
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(chosen_series.files))
    try:
        with captured_stderr():
            return reader.Execute(), note
    except RuntimeError as error:
        raise VolumeError(
            f"cannot read DICOM series {chosen_series.uid} in {folder}: {_sitk_reason(error)}. "
            "Check that the files are complete and uncompressed or in a transfer syntax GDCM supports."
        ) from None


def _unreadable(path: Path, what: str, error: Exception, itk_output: Sequence[str] = ()) -> VolumeError:
    known = read_failure_reason(path, str(error) + "\n" + "".join(itk_output))
    if known:
        return VolumeError(f"cannot read {what} {path}: {known}")
    return VolumeError(
        f"cannot read {what} {path}: the file is corrupt, truncated or not an image format SimpleITK "
        f"knows ({_sitk_reason(error)}). Use NIfTI (.nii/.nii.gz), NRRD, MHA or a DICOM folder."
    )


def _check_file_size_budget(path: Path, what: str, max_memory: Union[None, str, int]) -> None:
    """Refuse, from the header alone, a file whose voxels would not fit in memory (before reading them)."""
    from .memory import budget, format_bytes

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    failure = None
    with captured_stderr() as itk_output:
        try:
            reader.ReadImageInformation()
        except RuntimeError as error:
            failure = error
    if failure is not None:
        raise _unreadable(path, what, failure, itk_output) from None
    voxels = 1
    for n in reader.GetSize():
        voxels *= int(n)
    try:
        one = sitk.Image([1, 1, 1], reader.GetPixelID(), reader.GetNumberOfComponents())
        pixel_bytes = one.GetSizeOfPixelComponent() * reader.GetNumberOfComponents()
    except RuntimeError:  # a pixel type SimpleITK cannot build: assume the widest
        pixel_bytes = 8 * max(1, reader.GetNumberOfComponents())
    needed = voxels * (pixel_bytes + 4)
    limit = budget(max_memory)
    if limit is not None and needed > limit:
        size = " x ".join(str(n) for n in reader.GetSize())
        raise VolumeError(
            f"{what} {path}: its header describes {size} voxels, which need about {format_bytes(needed)} "
            f"of memory to read, more than the budget of {format_bytes(limit)}. Check the image size in the "
            "header (a damaged header?), or raise --max-memory on a machine with more memory."
        )


def _check_direction(direction: np.ndarray, path: Path, what: str, source: str, fix: str) -> None:
    """Refuse a direction matrix that is not a rotation (writers would store a different geometry)."""
    error = float(np.max(np.abs(direction.T @ direction - np.eye(3))))
    if error > 1e-3:
        rows = "; ".join(" ".join(f"{v:.4g}" for v in row) for row in direction)
        raise VolumeError(
            f"{what} {path} has a {source} that is not orthonormal ({rows}): it shears or scales the "
            "axes, which label-map formats cannot store, so the output would not lie on the input's grid. "
            f"Fix the header ({fix}), or resample the image onto an orthonormal grid first."
        )


def _check_nifti_sform(path: Path, what: str) -> None:
    """Refuse a NIfTI sform that shears: ITK's reader would hide it (the MHA/NRRD case is seen after)."""
    sform = nifti_sform(path)
    if sform is None:
        return
    matrix = np.asarray(sform, dtype=float)
    norms = np.linalg.norm(matrix, axis=0)  # the voxel spacing along each column
    direction = matrix / np.where(norms > 0, norms, 1.0)
    fix = "the srow_x/y/z columns must be at right angles; or set sform_code = 0 if the qform is right"
    _check_direction(direction, path, what, "NIfTI sform (srow_x/y/z, per unit spacing)", fix)


def _read_image(
    path: PathLike,
    series_uid: Optional[str],
    what: str,
    allow_uneven: bool = False,
    max_memory: Union[None, str, int] = None,
) -> Tuple[sitk.Image, Path, str]:
    """Read a file or DICOM folder and check it is one 3D scalar volume; returns (image, path, note)."""
    path = Path(path).expanduser()
    note = ""
    if not path.exists():
        raise VolumeError(f"{what} {path} does not exist; check the path (and that the disk is mounted).")
    if path.is_dir():
        image, note = _read_dicom_folder(path, series_uid, allow_uneven)
    else:
        if series_uid is not None:
            raise VolumeError(
                f"--series {series_uid} was given but {path} is a file; series only apply to DICOM folders."
            )
        _check_file_size_budget(path, what, max_memory)
        truncated = nifti_truncation(path)  # before reading: ITK would zero-fill the missing voxels
        if truncated:
            raise VolumeError(
                f"cannot read {what} {path}: the file is corrupt or truncated ({truncated}). "
                "Copy or export it again."
            )
        _check_nifti_sform(path, what)
        failure = None
        with captured_stderr() as itk_output:
            try:
                image = sitk.ReadImage(str(path))
            except RuntimeError as error:
                failure = error
        if failure is not None:
            raise _unreadable(path, what, failure, itk_output) from None
    components = image.GetNumberOfComponentsPerPixel()
    if components > 1:
        hint = (
            " A multi-layer segmentation (.seg.nrrd with overlapping segments) must first be exported as a "
            "labelmap."
            if what == "label map"
            else " Convert it to a single-channel grayscale CT."
        )
        raise VolumeError(
            f"{what} {path} is a vector/RGB image with {components} components per pixel; a scalar "
            f"(single-channel) 3D volume is needed.{hint}"
        )
    dim = image.GetDimension()
    if dim == 2:
        raise VolumeError(
            f"{what} {path} is a 2D image {image.GetSize()}; a 3D volume is needed. Pass the whole series "
            "(the DICOM folder) or a 3D file."
        )
    if dim != 3:
        raise VolumeError(
            f"{what} {path} is a {dim}D image of size {image.GetSize()}; a single 3D volume is needed. "
            "Extract one 3D time point/channel first."
        )
    if path.is_file() and image.HasMetaDataKey("0020|000e") and image.GetSize()[2] == 1:
        raise VolumeError(
            f"{what} {path} is a single DICOM slice; pass the folder {path.parent} that holds the whole "
            "series."
        )
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    fix = "direction cosines must be unit length and at right angles, e.g. "
    fix += "TransformMatrix = 1 0 0 0 1 0 0 0 1"
    _check_direction(direction, path, what, "direction matrix", fix)
    return image, path, note


def read_volume(
    path: PathLike,
    series_uid: Optional[str] = None,
    allow_uneven_slices: bool = False,
    max_memory: Union[None, str, int] = None,
) -> Volume:
    """Read a CT volume with its geometry.

    Args:
        path: NIfTI (.nii, .nii.gz), NRRD, MHA/MHD file, or a folder holding a DICOM series.
        series_uid: SeriesInstanceUID to pick when a DICOM folder holds several series.
        allow_uneven_slices: accept a DICOM series with gaps or uneven slice spacing (read on ITK's evenly
            spaced approximation); the volume's ``notes`` record it. Refused otherwise.
        max_memory: memory budget for reading ("4G", bytes); None: the memory available now.

    Returns:
        The volume, with a float32 array (DICOM rescale slope/intercept applied, i.e. HU for CT).

    Raises:
        VolumeError: missing path, unreadable file, not a 3D scalar image, no/ambiguous/unknown series,
            unreadable/duplicated/misoriented/unevenly spaced DICOM slices, a non-orthonormal direction,
            a size over the memory budget.
    """
    image, path, note = _read_image(path, series_uid, "volume", allow_uneven_slices, max_memory)
    volume = Volume.from_image(image, path, dtype=np.float32)
    volume.notes = (note,) if note else ()
    return volume


def read_label_map(path: PathLike, allowed_labels: Sequence[int] = (0, 1, 2)) -> Volume:
    """Read a label map and check that it holds only the labels the model knows.

    Args:
        path: label map file (.nii.gz, .nrrd, .seg.nrrd with one layer, .mha ...).
        allowed_labels: the label values accepted (LiTS: 0 background, 1 liver, 2 tumour).

    Returns:
        The volume, with a uint8 array (int32 if an allowed label does not fit in uint8).

    Raises:
        VolumeError: as :func:`read_volume`, non-integer values, or label values not in ``allowed_labels``.
    """
    image, path, _ = _read_image(path, None, "label map")
    array = sitk.GetArrayFromImage(image)
    allowed = sorted({int(v) for v in allowed_labels})
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise VolumeError(
                f"label map {path} holds non-integer values; a label map must hold integer labels "
                f"({', '.join(map(str, allowed))}). Did you pass a CT image instead of a segmentation?"
            )
    found_min, found_max = float(array.min()), float(array.max())
    if 0 <= found_min and found_max < 65536 and allowed and allowed[0] >= 0:
        known = np.zeros(int(found_max) + 1, dtype=bool)
        known[[v for v in allowed if v <= found_max]] = True
        unknown_mask = ~known[array.astype(np.int64 if array.dtype.kind == "f" else array.dtype, copy=False)]
        unknown = np.unique(array[unknown_mask])
    else:
        unknown = np.setdiff1d(np.unique(array), allowed)
    if unknown.size:
        shown = ", ".join(str(int(v)) for v in unknown[:20]) + (" ..." if unknown.size > 20 else "")
        raise VolumeError(
            f"label map {path} contains label values the model does not know: {shown}; allowed: "
            f"{', '.join(map(str, allowed))}. Remap the labels (e.g. liver 1, tumour 2) before using it."
        )
    dtype = np.uint8 if (not allowed or (allowed[0] >= 0 and allowed[-1] <= 255)) else np.int32
    return Volume(
        array.astype(dtype, copy=False), image.GetSpacing(), image.GetOrigin(), image.GetDirection(), path
    )


# --------------------------------------------------------------------------------------------- writing


def _atomic_write(
    image: sitk.Image, path: PathLike, overwrite: bool, compress: bool, what: str = "label map"
) -> Path:
    """Write ``image`` to ``path`` through a temporary file in the same folder, then ``os.replace``."""
    path = Path(path).expanduser()
    try:
        check_label_map_format(path, what)
    except OutputFormatError as error:
        raise VolumeError(str(error)) from None
    if path.is_dir():
        raise VolumeError(f"cannot write {path}: it is a folder; give a file name such as case.nii.gz.")
    try:
        with atomic_output(path, overwrite) as tmp:
            sitk.WriteImage(image, str(tmp), compress)
    except RuntimeError as error:
        raise VolumeError(
            f"cannot write {path}: {_sitk_reason(error)}. Use one of {', '.join(LABEL_MAP_FORMATS)}."
        ) from None
    except FileExistsError as error:  # existing output and no overwrite
        raise VolumeError(str(error)) from None
    except OSError as error:
        raise VolumeError(f"cannot write {path}: {error}") from None
    return path


def write_image(
    image: Union[sitk.Image, Volume], path: PathLike, overwrite: bool = False, compress: bool = True
) -> Path:
    """Write an image atomically (no partial file on failure, never replaces a file unless asked).

    Args:
        image: a SimpleITK image or a :class:`Volume`.
        path: output file; its extension picks the format (.nii.gz, .nii, .nrrd, .mha ...).
        overwrite: replace an existing file.
        compress: ask the writer to compress (gzip for NRRD/MHA; .nii.gz is always compressed).

    Returns:
        The path written.
    """
    if isinstance(image, Volume):
        image = image.to_image()
    return _atomic_write(image, path, overwrite, compress, "image")


def write_label_map(array: np.ndarray, like: Volume, path: PathLike, overwrite: bool = False) -> Path:
    """Write a label map as uint8 with exactly the geometry (size, spacing, origin, direction) of ``like``.

    Args:
        array: labels in ``(z, y, x)`` order, same shape as ``like.array``; integers 0..255 or bool.
        like: the volume whose grid the labels are on (usually the input CT).
        path: output file (.nii.gz, .nii, .nrrd, .seg.nrrd, .mha).
        overwrite: replace an existing file.

    Returns:
        The path written.

    Raises:
        VolumeError: shape mismatch, values that are not integers in 0..255, existing file without
            ``overwrite``, unwritable path or format.
    """
    array = np.asarray(array)
    if array.shape != like.shape:
        raise VolumeError(
            f"cannot write {path}: label array shape {array.shape} differs from the volume "
            f"{like.name or ''} shape {like.shape} (z, y, x); labels must be on the volume's grid."
        )
    if array.dtype != bool:
        if array.dtype.kind not in "iuf":
            raise VolumeError(f"cannot write {path}: label array has dtype {array.dtype}; integers needed.")
        if array.size and (array.min() < 0 or array.max() > 255):
            raise VolumeError(
                f"cannot write {path}: label values {array.min()}..{array.max()} do not fit uint8 (0..255)."
            )
        if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
            raise VolumeError(
                f"cannot write {path}: label array holds non-integer values (probabilities?); "
                "threshold or argmax it first."
            )
    return _atomic_write(like.to_image(array.astype(np.uint8, copy=False)), path, overwrite, True)
