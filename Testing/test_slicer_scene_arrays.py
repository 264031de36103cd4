"""Volume node <-> (z, y, x) array + LPS geometry, checked voxel by voxel against SimpleITK.

Slicer reverses the slice order of left-handed volumes, so arrays are never compared raw: every voxel's
physical point (from our geometry) must be the physical point of the voxel SimpleITK reads with the same
value from the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from MPUNetSegmentationLib.scene_arrays import (
    VolumeGeometry,
    add_volume_node_from_array,
    array_from_volume_node,
    load_volume_node,
    volume_geometry,
)


def _assert_same_image(array: np.ndarray, geometry: VolumeGeometry, image: sitk.Image, atol: float) -> None:
    """Every voxel of (array, geometry) is a voxel of ``image`` at the same LPS point with the same value."""
    assert array.size == int(np.prod(image.GetSize()))
    points = geometry.physical_points(array.shape).reshape(-1, 3)
    reference = VolumeGeometry.from_sitk(image)
    lps_to_index = np.linalg.inv(reference.ijk_to_lps())
    continuous = np.c_[points, np.ones(len(points))] @ lps_to_index.T
    index = np.rint(continuous[:, :3])
    np.testing.assert_allclose(continuous[:, :3], index, atol=atol)
    sitk_array = sitk.GetArrayFromImage(image)
    i, j, k = index.astype(int).T
    assert ((i >= 0) & (j >= 0) & (k >= 0)).all()
    np.testing.assert_array_equal(array.reshape(-1), sitk_array[k, j, i])
    # the mapping is a bijection: every SimpleITK voxel is hit once
    assert len(np.unique(np.c_[i, j, k], axis=0)) == sitk_array.size


def _oblique_direction(seed: int, left_handed: bool) -> tuple:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if (np.linalg.det(q) < 0) != left_handed:
        q[:, 2] *= -1
    return tuple(q.ravel())


def _test_image(direction: tuple) -> sitk.Image:
    array = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7) - 50  # every voxel distinct
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.9, 2.5))
    image.SetOrigin((10.5, -20.25, 30.0))
    image.SetDirection(direction)
    return image


def test_real_dicom_series_matches_simpleitk(slicer_scene, real_ct_dir: Path) -> None:
    node = load_volume_node(str(real_ct_dir))
    array, geometry = array_from_volume_node(node)
    assert array.shape == (3, 512, 512)
    # README: origin (-235.2, -226.8, -128.69) LPS, identity direction, 0.8105 mm pixels, 1 mm slices
    np.testing.assert_allclose(geometry.origin, (-235.2, -226.8, -128.69), atol=1e-3)
    np.testing.assert_allclose(geometry.direction, np.eye(3).ravel(), atol=1e-9)
    np.testing.assert_allclose(geometry.spacing, (0.8105, 0.8105, 1.0), atol=1e-3)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(real_ct_dir)))
    image = reader.Execute()
    assert int(array.min()) == -3024 and int(array.max()) == 1381
    _assert_same_image(array, geometry, image, atol=1e-4)


@pytest.mark.parametrize("left_handed", [False, True], ids=["oblique", "oblique-left-handed"])
@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
def test_file_volume_matches_simpleitk(slicer_scene, tmp_path: Path, left_handed: bool, suffix: str) -> None:
    path = tmp_path / f"volume{suffix}"
    sitk.WriteImage(_test_image(_oblique_direction(3, left_handed)), str(path))
    image = sitk.ReadImage(str(path))  # what SimpleITK (and MPUNetCore) sees in the file
    node = load_volume_node(str(path))
    array, geometry = array_from_volume_node(node)
    if left_handed:  # Slicer really does hold the slices reversed: raw arrays differ
        assert not np.array_equal(array, sitk.GetArrayFromImage(image))
    _assert_same_image(array, geometry, image, atol=1e-4 if suffix == ".nii.gz" else 1e-9)


def test_left_handed_axis_flip(slicer_scene, tmp_path: Path) -> None:
    path = tmp_path / "flipped.nrrd"
    sitk.WriteImage(_test_image((1, 0, 0, 0, 1, 0, 0, 0, -1)), str(path))
    array, geometry = array_from_volume_node(load_volume_node(str(path)))
    _assert_same_image(array, geometry, sitk.ReadImage(str(path)), atol=1e-9)


def test_array_to_node_round_trip_and_save(slicer_scene, tmp_path: Path) -> None:
    image = _test_image(_oblique_direction(7, left_handed=False))
    array, geometry = sitk.GetArrayFromImage(image), VolumeGeometry.from_sitk(image)
    node = add_volume_node_from_array(array, geometry, "round trip")
    back, back_geometry = array_from_volume_node(node)
    np.testing.assert_array_equal(back, array)
    np.testing.assert_allclose(back_geometry.ijk_to_lps(), geometry.ijk_to_lps(), atol=1e-12)
    # the node's IJKToRAS is the LPS geometry with x and y negated
    np.testing.assert_allclose(volume_geometry(node).origin, image.GetOrigin(), atol=1e-12)
    import slicer.util

    out = tmp_path / "saved.nrrd"
    assert slicer.util.saveNode(node, str(out))
    _assert_same_image(array, geometry, sitk.ReadImage(str(out)), atol=1e-9)


def test_label_map_node_is_created(slicer_scene) -> None:
    geometry = VolumeGeometry((1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    labels = np.zeros((2, 3, 4), np.uint8)
    labels[1, 1, 2] = 2
    node = add_volume_node_from_array(labels, geometry, "labels", labelmap=True)
    assert node.IsA("vtkMRMLLabelMapVolumeNode")
    np.testing.assert_array_equal(array_from_volume_node(node)[0], labels)


def test_bad_inputs_raise_clear_errors(slicer_scene, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_volume_node(str(tmp_path / "missing.nrrd"))
    with pytest.raises(ValueError, match="no files"):
        load_volume_node(str(tmp_path))
    with pytest.raises(ValueError, match="expected a volume node"):
        array_from_volume_node(None)
    with pytest.raises(ValueError, match="zero-length axis"):
        VolumeGeometry.from_ijk_to_ras(np.diag([0.0, 1.0, 1.0, 1.0]))
