"""Volume nodes to NumPy arrays with SimpleITK-style geometry, and back.

MPUNetCore works on ``(z, y, x)`` arrays (``SimpleITK.GetArrayFromImage`` order) with spacing, origin and
direction in LPS as SimpleITK gives them. Slicer stores the same voxels in RAS through each node's
IJKToRAS matrix, and it reverses the slice order of left-handed volumes when it reads them. So the
array Slicer holds may differ from the file's array while describing the same physical image: the
geometry here is always derived from IJKToRAS, which makes every voxel land on the same physical point
as SimpleITK reading the file; never compare raw arrays across the two.

Parent transforms are not applied: the geometry is the node's own (local) voxel grid. Code that puts a
result back on that grid (see :mod:`.segmentation_nodes`) places it under the same parent transform.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple

import numpy as np

# RAS <-> LPS: flip the first two axes.
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class VolumeGeometry:
    """A voxel grid's geometry, in the conventions of SimpleITK (LPS, x/y/z order).

    Attributes:
        spacing: voxel size along i, j, k (x, y, z) in mm.
        origin: LPS position of voxel (0, 0, 0) in mm.
        direction: 3x3 direction cosines, row-major, as ``SimpleITK.Image.GetDirection()``.
    """

    spacing: Tuple[float, float, float]
    origin: Tuple[float, float, float]
    direction: Tuple[float, ...]

    def ijk_to_lps(self) -> np.ndarray:
        """Return the 4x4 matrix mapping voxel indices (i, j, k, 1) to LPS millimetres."""
        matrix = np.eye(4)
        matrix[:3, :3] = np.asarray(self.direction, dtype=float).reshape(3, 3) @ np.diag(self.spacing)
        matrix[:3, 3] = self.origin
        return matrix

    def ijk_to_ras(self) -> np.ndarray:
        """Return the 4x4 matrix mapping voxel indices (i, j, k, 1) to RAS millimetres (Slicer's IJKToRAS)."""
        return _RAS_TO_LPS @ self.ijk_to_lps()

    @classmethod
    def from_ijk_to_ras(cls, ijk_to_ras: Any) -> VolumeGeometry:
        """Build the geometry from a 4x4 IJKToRAS matrix (NumPy array or ``vtkMatrix4x4``).

        Args:
            ijk_to_ras: the matrix; its upper 3x3 block must have non-zero columns.

        Returns:
            The equivalent LPS geometry.

        Raises:
            ValueError: when the matrix is not 4x4 or has a zero-length axis.
        """
        matrix = _as_numpy_matrix(ijk_to_ras)
        lps = _RAS_TO_LPS @ matrix
        axes = lps[:3, :3]
        spacing = np.linalg.norm(axes, axis=0)
        if np.any(spacing <= 0):
            raise ValueError(f"IJKToRAS matrix has a zero-length axis (spacing {spacing.tolist()})")
        direction = axes / spacing
        return cls(
            spacing=tuple(float(s) for s in spacing),
            origin=tuple(float(o) for o in lps[:3, 3]),
            direction=tuple(float(d) for d in direction.ravel()),
        )

    @classmethod
    def from_sitk(cls, image: Any) -> VolumeGeometry:
        """Build the geometry of a ``SimpleITK.Image`` (or anything with the same three getters)."""
        return cls(
            spacing=tuple(float(s) for s in image.GetSpacing()),
            origin=tuple(float(o) for o in image.GetOrigin()),
            direction=tuple(float(d) for d in image.GetDirection()),
        )

    def physical_points(self, shape: Sequence[int]) -> np.ndarray:
        """Return the LPS point of every voxel of a ``(z, y, x)`` array of ``shape``, as ``(*shape, 3)``."""
        k, j, i = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
        ijk1 = np.stack([i, j, k, np.ones_like(i)], axis=-1).astype(float)
        return (ijk1 @ self.ijk_to_lps().T)[..., :3]


def _as_numpy_matrix(matrix: Any) -> np.ndarray:
    if hasattr(matrix, "GetElement"):
        return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=float)
    result = np.asarray(matrix, dtype=float)
    if result.shape != (4, 4):
        raise ValueError(f"expected a 4x4 IJKToRAS matrix, got shape {result.shape}")
    return result


def volume_geometry(volume_node: Any) -> VolumeGeometry:
    """Return the LPS geometry of a volume node's voxel grid (from its IJKToRAS matrix).

    Args:
        volume_node: a ``vtkMRMLVolumeNode`` (scalar or label map).

    Returns:
        The node's geometry in SimpleITK conventions.
    """
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return VolumeGeometry.from_ijk_to_ras(matrix)


def array_from_volume_node(volume_node: Any, copy: bool = True) -> Tuple[np.ndarray, VolumeGeometry]:
    """Return a volume node's voxels as a ``(z, y, x)`` array with its LPS geometry.

    Args:
        volume_node: a scalar or label map ``vtkMRMLVolumeNode`` holding image data.
        copy: return a copy (default); False returns the VTK-owned memory (do not resize it).

    Returns:
        ``(array, geometry)``; ``geometry.physical_points(array.shape)`` are the voxels' LPS positions.

    Raises:
        ValueError: when the node is missing, has no image data, or is not a single-component volume.
    """
    import slicer.util

    if volume_node is None or not volume_node.IsA("vtkMRMLVolumeNode"):
        raise ValueError(f"expected a volume node, got {volume_node!r}")
    if volume_node.GetImageData() is None:
        raise ValueError(f"volume '{volume_node.GetName()}' has no voxels (empty image data)")
    if volume_node.GetImageData().GetNumberOfScalarComponents() != 1:
        raise ValueError(
            f"volume '{volume_node.GetName()}' has "
            f"{volume_node.GetImageData().GetNumberOfScalarComponents()} components per voxel; "
            "select a single-channel (grayscale) CT volume"
        )
    array = slicer.util.arrayFromVolume(volume_node)
    return (np.array(array, copy=True) if copy else array), volume_geometry(volume_node)


def update_volume_node_from_array(volume_node: Any, array: np.ndarray, geometry: VolumeGeometry) -> Any:
    """Set a volume node's voxels and geometry from a ``(z, y, x)`` array and LPS geometry.

    Args:
        volume_node: the node to overwrite (only nodes this project created should be passed).
        array: 3D array in ``(z, y, x)`` order.
        geometry: where the voxels lie, in SimpleITK conventions.

    Returns:
        The same node.

    Raises:
        ValueError: when ``array`` is not 3D.
    """
    import slicer.util

    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"expected a 3D (z, y, x) array, got shape {array.shape}")
    volume_node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(geometry.ijk_to_ras()))
    slicer.util.updateVolumeFromArray(volume_node, np.ascontiguousarray(array))
    return volume_node


def add_volume_node_from_array(
    array: np.ndarray, geometry: VolumeGeometry, name: str, labelmap: bool = False
) -> Any:
    """Create a new volume node (scalar or label map) from an array and geometry.

    Args:
        array: 3D array in ``(z, y, x)`` order.
        geometry: LPS geometry of the array.
        name: base name; made unique in the scene.
        labelmap: create a ``vtkMRMLLabelMapVolumeNode`` instead of a scalar volume.

    Returns:
        The new node, with default display nodes.
    """
    import slicer

    class_name = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    node = slicer.mrmlScene.AddNewNodeByClass(class_name, slicer.mrmlScene.GenerateUniqueName(name))
    update_volume_node_from_array(node, array, geometry)
    node.CreateDefaultDisplayNodes()
    return node


def load_volume_node(path: str, name: Optional[str] = None) -> Any:
    """Load a CT volume from a file or a DICOM series folder with ``slicer.util.loadVolume``.

    A folder is read as the DICOM series that GDCM finds in it (as ``MPUNetCore`` reads it), starting
    from the series' first slice (``singleFile: False``): Slicer's volume reader does not accept folders
    itself, and other files beside the slices (a licence, a DICOMDIR, a README) must not be taken for one.

    Args:
        path: a NIfTI/NRRD/MHA/... file, one file of a DICOM series, or a folder holding one series.
        name: node name (default: the file name without extension; for a folder, the folder's name).

    Returns:
        The loaded ``vtkMRMLScalarVolumeNode``.

    Raises:
        ValueError: when the path does not exist, or a folder holds no DICOM series or several.
        RuntimeError: when Slicer cannot read the data (message from Slicer's reader).
    """
    import slicer.util

    path = os.fspath(path)
    properties = {}
    if name:
        properties["name"] = name
    if os.path.isdir(path):
        properties["singleFile"] = False
        properties.setdefault("name", os.path.basename(os.path.normpath(path)))
        path = first_dicom_slice(path)
    elif not os.path.exists(path):
        raise ValueError(f"'{path}' does not exist: select a NIfTI/NRRD file or a DICOM series folder")
    return slicer.util.loadVolume(path, properties)


def first_dicom_slice(folder: str) -> str:
    """The first slice (in GDCM's order along the slice normal) of the one DICOM series in ``folder``.

    Files are DICOM when GDCM groups them into a series; a cheap look for the "DICM" marker at byte 128
    (or a .dcm name) comes first, so that a folder of other files is refused without GDCM's warnings.

    Raises:
        ValueError: the folder holds no DICOM series, or more than one (naming them).
    """
    from MPUNetCore.dicom_checks import looks_like_dicom
    from MPUNetCore.volume_checks import captured_stderr, list_dicom_series

    names = sorted(e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith("."))
    series = []
    if any(looks_like_dicom(Path(folder, n)) for n in names):
        with captured_stderr():  # GDCM's notes about the files it skips
            series = list_dicom_series(folder)
    fix = "select a folder with the slices of one DICOM series, or an image file (.nii.gz, .nrrd)"
    if not names:
        raise ValueError(f"folder '{folder}' holds no files: {fix}")
    if not series:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise ValueError(f"folder '{folder}' holds no DICOM series (none of {shown} is a DICOM slice): {fix}")
    if len(series) > 1:
        raise ValueError(
            f"folder '{folder}' holds {len(series)} DICOM series ({'; '.join(str(s) for s in series)}): "
            "move each series into a folder of its own and select one, or load it with the DICOM module"
        )
    return series[0].files[0]
