"""Volume I/O: geometry survives read -> write label -> read (checked with SimpleITK), clear refusals."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from MPUNetCore.volume_io import (
    Volume,
    VolumeError,
    case_name,
    list_dicom_series,
    read_label_map,
    read_volume,
    split_extension,
    write_image,
    write_label_map,
)

FORMATS = [".nii.gz", ".nii", ".nrrd", ".mha"]
# NIfTI stores geometry as float32 (and direction as a quaternion): allow that rounding, nothing more.
TOL = {".nii.gz": 1e-4, ".nii": 1e-4, ".nrrd": 1e-9, ".mha": 1e-9}


def _rotation(yaw: float, tilt: float, roll: float) -> np.ndarray:
    cz, sz = np.cos(yaw), np.sin(yaw)
    cx, sx = np.cos(tilt), np.sin(tilt)
    cy, sy = np.cos(roll), np.sin(roll)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return rz @ rx @ ry


DIRECTIONS = {
    "identity": np.eye(3),
    "oblique": _rotation(0.3, 0.45, -0.2),
    "left-handed": _rotation(0.3, 0.45, -0.2) @ np.diag([1.0, 1.0, -1.0]),
    "flipped-x": np.diag([-1.0, 1.0, 1.0]),
}


def _synthetic_image(direction: np.ndarray) -> sitk.Image:
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(rng.integers(-1000, 1000, size=(7, 9, 11)).astype(np.int16))
    image.SetSpacing((0.7421875, 0.7421875, 2.5))
    image.SetOrigin((-180.125, -150.5, -402.75))
    image.SetDirection(tuple(direction.ravel()))
    return image


def _assert_same_geometry(image: sitk.Image, reference: sitk.Image, tol: float) -> None:
    assert image.GetSize() == reference.GetSize()
    np.testing.assert_allclose(image.GetSpacing(), reference.GetSpacing(), rtol=0, atol=tol)
    np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), rtol=0, atol=tol)
    np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), rtol=0, atol=tol * 1e-2)


def _digest(folder) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# ------------------------------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("path", "name", "ext"),
    [
        ("/a/volume-3.nii.gz", "volume-3", ".nii.gz"),
        ("seg.seg.nrrd", "seg", ".seg.nrrd"),
        ("x.NRRD", "x", ".NRRD"),
        ("ct.mha", "ct", ".mha"),
        ("ct.v2.nii", "ct.v2", ".nii"),
        ("/data/dicom-folder", "dicom-folder", ""),
    ],
)
def test_case_name(path, name, ext):
    assert case_name(path) == name
    assert split_extension(path) == (name, ext)


# ------------------------------------------------------------------------------------------ real DICOM


def test_real_dicom_series_matches_simpleitk(real_ct_dir, tmp_path):
    before = _digest(real_ct_dir)
    volume = read_volume(real_ct_dir)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(real_ct_dir)))
    reference = reader.Execute()
    assert volume.size == reference.GetSize() == (512, 512, 3)
    assert volume.spacing == reference.GetSpacing()
    assert volume.origin == reference.GetOrigin()
    assert volume.direction == reference.GetDirection()
    assert volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(reference))
    assert volume.array.min() == -3024 and volume.array.max() == 1381  # HU (rescale applied)
    assert volume.name == real_ct_dir.name
    # Expert label: same grid as the series (up to the NRRD header's printed precision).
    label = read_label_map(real_ct_dir / "liver_seg.nrrd")
    _assert_same_geometry(label.to_image(), reference, 1e-4)
    assert label.array.dtype == np.uint8 and int(label.array.sum()) == 107098
    for ext in FORMATS:
        out = write_label_map(label.array, volume, tmp_path / f"liver{ext}")
        back = sitk.ReadImage(str(out))
        _assert_same_geometry(back, reference, TOL[ext])
        assert back.GetPixelID() == sitk.sitkUInt8
        np.testing.assert_array_equal(sitk.GetArrayFromImage(back), label.array)
    assert _digest(real_ct_dir) == before  # the input is never modified


def _two_series_folder(real_ct_dir, folder):
    folder.mkdir()
    for path in real_ct_dir.glob("*.dcm"):
        shutil.copy(path, folder / path.name)
    new_uid = "1.2.826.0.1.3680043.2.1125.999.1"
    for i, path in enumerate(sorted(real_ct_dir.glob("*.dcm"))[:2]):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        image = reader.Execute()
        for key in reader.GetMetaDataKeys():
            image.SetMetaData(key, reader.GetMetaData(key))
        image.SetMetaData("0020|000e", new_uid)
        image.SetMetaData("0008|103e", "second copy")
        image.SetMetaData("0008|0018", f"{new_uid}.{i}")
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(folder / f"copy_{i}.dcm"))
        writer.Execute(image)
    return new_uid


def test_dicom_folder_with_two_series(real_ct_dir, tmp_path):
    folder = tmp_path / "two"
    new_uid = _two_series_folder(real_ct_dir, folder)
    original_uid = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(real_ct_dir))[0]
    assert {s.uid: len(s.files) for s in list_dicom_series(folder)} == {original_uid: 3, new_uid: 2}
    with pytest.raises(VolumeError) as error:
        read_volume(folder)
    message = str(error.value)
    assert str(folder) in message and "2 series" in message and "--series UID" in message
    assert f"{original_uid} (3 slices)" in message and f"{new_uid} (2 slices, 'second copy')" in message
    assert read_volume(folder, series_uid=original_uid).shape == (3, 512, 512)
    second = read_volume(folder, series_uid=new_uid)
    assert second.shape == (2, 512, 512)
    original = read_volume(real_ct_dir)
    first_slice = round((second.origin[2] - original.origin[2]) / original.spacing[2])
    np.testing.assert_array_equal(second.array, original.array[first_slice : first_slice + 2])
    with pytest.raises(VolumeError, match=r"series UID 1\.2\.3 is not in DICOM folder .*--series UID"):
        read_volume(folder, series_uid="1.2.3")


def test_single_dicom_file_is_refused(real_ct_dir):
    with pytest.raises(VolumeError, match="single DICOM slice; pass the folder"):
        read_volume(real_ct_dir / "ct-3slice_01.dcm")


# ------------------------------------------------------------------------------------------ geometry


@pytest.mark.parametrize("direction", list(DIRECTIONS))
@pytest.mark.parametrize("ext", FORMATS)
def test_geometry_round_trip(tmp_path, direction, ext):
    source = tmp_path / f"ct{ext}"
    sitk.WriteImage(_synthetic_image(DIRECTIONS[direction]), str(source))
    reference = sitk.ReadImage(str(source))  # what SimpleITK itself makes of the file
    volume = read_volume(source)
    _assert_same_geometry(volume.to_image(), reference, 0.0)
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(reference).astype(np.float32))
    labels = (volume.array > 0).astype(np.uint8) + (volume.array > 500)
    for out_ext in FORMATS:
        out = write_label_map(labels, volume, tmp_path / f"label{out_ext}")
        back = sitk.ReadImage(str(out))
        _assert_same_geometry(back, reference, TOL[out_ext])
        np.testing.assert_array_equal(sitk.GetArrayFromImage(back), labels)
        # and through our own reader
        np.testing.assert_array_equal(read_label_map(out).array, labels)
    if np.linalg.det(DIRECTIONS[direction]) < 0:
        assert np.linalg.det(np.reshape(back.GetDirection(), (3, 3))) == pytest.approx(-1.0)


def test_write_image_round_trip(tmp_path):
    volume = Volume.from_image(_synthetic_image(DIRECTIONS["oblique"]), dtype=np.float32)
    out = write_image(volume, tmp_path / "sub" / "ct.mha")
    back = sitk.ReadImage(str(out))
    _assert_same_geometry(back, volume.image, 0.0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), volume.array)


# ------------------------------------------------------------------------------------------ refusals


def test_missing_path(tmp_path):
    with pytest.raises(VolumeError, match=r"nowhere\.nii\.gz does not exist"):
        read_volume(tmp_path / "nowhere.nii.gz")


def test_corrupt_file(tmp_path):
    path = tmp_path / "bad.nii.gz"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    before = path.read_bytes()
    with pytest.raises(VolumeError, match=r"cannot read volume .*bad\.nii\.gz: the file is corrupt"):
        read_volume(path)
    assert path.read_bytes() == before


@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("keep", [0.15, 0.5, 0.99])
def test_truncated_file(tmp_path, ext, keep):
    """ITK zero-fills a truncated NIfTI without complaint: the reader must refuse it anyway."""
    rng = np.random.default_rng(2)
    image = sitk.GetImageFromArray(rng.integers(-1000, 1000, size=(20, 30, 40)).astype(np.int16))
    path = tmp_path / f"cut{ext}"
    sitk.WriteImage(image, str(path), True)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(VolumeError, match=rf"cannot read volume .*cut{ext}: the file is (corrupt|truncated)"):
        read_volume(path)


def test_multi_member_gzip_nifti_is_accepted(tmp_path):
    """A valid .nii.gz made of two gzip members (gzip trailer size != data size) still reads."""
    import gzip

    image = _synthetic_image(np.eye(3))
    plain = tmp_path / "ct.nii"
    sitk.WriteImage(image, str(plain))
    data = plain.read_bytes()
    path = tmp_path / "ct.nii.gz"
    path.write_bytes(gzip.compress(data[:500]) + gzip.compress(data[500:]))
    np.testing.assert_array_equal(read_volume(path).array, sitk.GetArrayFromImage(image))


def test_2d_image(tmp_path):
    path = tmp_path / "slice.nii.gz"
    sitk.WriteImage(sitk.Image([16, 16], sitk.sitkInt16), str(path))
    with pytest.raises(VolumeError, match=r"slice\.nii\.gz is a 2D image .*3D volume is needed"):
        read_volume(path)


def test_4d_image(tmp_path):
    path = tmp_path / "dynamic.nii.gz"
    frames = [sitk.Image([8, 8, 4], sitk.sitkInt16) for _ in range(3)]
    sitk.WriteImage(sitk.JoinSeries(frames), str(path))
    assert sitk.ReadImage(str(path)).GetDimension() == 4
    with pytest.raises(VolumeError, match=r"dynamic\.nii\.gz is a 4D image .*single 3D volume"):
        read_volume(path)


@pytest.mark.parametrize(
    ("name", "pixel", "components"),
    [("vector.nrrd", sitk.sitkVectorFloat32, 3), ("rgb.mha", sitk.sitkVectorUInt8, 3)],
)
def test_vector_and_rgb_images(tmp_path, name, pixel, components):
    path = tmp_path / name
    sitk.WriteImage(sitk.Image([8, 8, 4], pixel, components), str(path))
    with pytest.raises(VolumeError, match=rf"{name} is a vector/RGB image with 3 components.*scalar"):
        read_volume(path)
    with pytest.raises(VolumeError, match="exported as a labelmap"):
        read_label_map(path)


def test_empty_and_non_dicom_folders(tmp_path):
    with pytest.raises(VolumeError, match=r"no DICOM series found in folder .*Pass a folder holding"):
        read_volume(tmp_path)
    (tmp_path / "notes.txt").write_text("not DICOM")
    (tmp_path / "series1").mkdir()
    with pytest.raises(VolumeError, match=r"no DICOM series found .*subfolders \(series1\)"):
        read_volume(tmp_path)


def test_series_uid_with_a_file(tmp_path):
    path = tmp_path / "ct.nrrd"
    sitk.WriteImage(_synthetic_image(np.eye(3)), str(path))
    with pytest.raises(VolumeError, match="series only apply to DICOM folders"):
        read_volume(path, series_uid="1.2.3")


def test_unknown_label_values(tmp_path):
    path = tmp_path / "labels.nrrd"
    array = np.zeros((4, 5, 6), np.int16)
    array[0, 0, :4] = [1, 2, 3, 7]
    image = sitk.GetImageFromArray(array)
    sitk.WriteImage(image, str(path))
    with pytest.raises(VolumeError, match=r"labels\.nrrd contains label values .*: 3, 7; allowed: 0, 1, 2"):
        read_label_map(path)
    assert np.unique(read_label_map(path, allowed_labels=range(8)).array).tolist() == [0, 1, 2, 3, 7]
    negative = tmp_path / "negative.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(-array), str(negative))
    with pytest.raises(VolumeError, match=r"-7, -3, -2, -1; allowed"):
        read_label_map(negative)
    ct = tmp_path / "ct.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(array.astype(np.float32) + 0.5), str(ct))
    with pytest.raises(VolumeError, match="non-integer values"):
        read_label_map(ct)


# ------------------------------------------------------------------------------------------ writing


def _small_volume() -> Volume:
    return Volume.from_image(_synthetic_image(DIRECTIONS["oblique"]), dtype=np.float32)


def test_no_overwrite_without_flag(tmp_path):
    volume = _small_volume()
    out = write_label_map(np.zeros(volume.shape, np.uint8), volume, tmp_path / "seg.nii.gz")
    with pytest.raises(VolumeError, match=r"seg\.nii\.gz already exists; .*pass --overwrite"):
        write_label_map(np.ones(volume.shape, np.uint8), volume, out)
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(out))).max() == 0
    write_label_map(np.ones(volume.shape, np.uint8), volume, out, overwrite=True)
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(out))).min() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.nii.gz"]  # no temporary files left


def test_label_array_checks(tmp_path):
    volume = _small_volume()
    with pytest.raises(VolumeError, match=r"shape \(7, 9, 10\) differs from the volume"):
        write_label_map(np.zeros((7, 9, 10), np.uint8), volume, tmp_path / "a.nrrd")
    with pytest.raises(VolumeError, match="do not fit uint8"):
        write_label_map(np.full(volume.shape, 300), volume, tmp_path / "a.nrrd")
    with pytest.raises(VolumeError, match="non-integer values"):
        write_label_map(np.full(volume.shape, 0.4), volume, tmp_path / "a.nrrd")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["labels.xyz", "labels.jpg", "labels.mhd"])
def test_failed_write_leaves_nothing(tmp_path, name):
    volume = _small_volume()
    with pytest.raises(VolumeError, match=rf"cannot write .*{name}"):
        write_label_map(np.zeros(volume.shape, np.uint8), volume, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_write_into_a_folder_is_refused(tmp_path):
    volume = _small_volume()
    (tmp_path / "out.nii.gz").mkdir()
    with pytest.raises(VolumeError, match="it is a folder"):
        write_label_map(np.zeros(volume.shape, np.uint8), volume, tmp_path / "out.nii.gz", overwrite=True)
