"""`load_volume_node` on a DICOM folder with other files beside the slices, against the real MRML.

A user's series folder may hold a licence, a README or a DICOMDIR next to the slices. Slicer must be
given a slice of the series as its first file: the loaded node is compared voxel by voxel with what
SimpleITK reads from GDCM's list of the series (the reference), and folders with no DICOM series or
with two are refused in one line, leaving the scene and the folder as they were.
"""

from __future__ import annotations

import hashlib
import locale
import shutil
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import SimpleITK as sitk
from MPUNetSegmentationLib.scene_arrays import array_from_volume_node, first_dicom_slice, load_volume_node

from Testing.dicom_bytes import dicomdir
from Testing.test_slicer_scene_arrays import _assert_same_image


def _snapshot(folder: Path) -> Dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _volume_nodes(scene) -> int:
    return scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")


@pytest.fixture
def series_with_extras(tmp_path: Path, real_ct_dir: Path) -> Path:
    """The real 3-slice CT with a licence, a DICOMDIR and a README beside it; each sorts before the slices."""
    folder = tmp_path / "CT series"
    folder.mkdir()
    for slice_file in sorted(real_ct_dir.glob("*.dcm")):
        shutil.copy2(slice_file, folder / slice_file.name)
    (folder / "NOTICE").write_text("BSD-3-Clause licence text of the data\n", encoding="utf-8")
    (folder / "LICENSE").write_text("another licence\n", encoding="utf-8")
    (folder / "DICOMDIR").write_bytes(dicomdir())
    (folder / "README.md").write_text("# the scan\n", encoding="utf-8")
    return folder


def test_extra_files_beside_the_slices_are_not_taken_for_the_series(slicer_scene, series_with_extras: Path):
    assert sorted(p.name for p in series_with_extras.iterdir())[0] == "DICOMDIR"  # before any slice
    before = _snapshot(series_with_extras)
    node = load_volume_node(str(series_with_extras))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(series_with_extras)))
    image = reader.Execute()
    array, geometry = array_from_volume_node(node)
    assert array.shape == (3, 512, 512) and node.GetName() == "CT series"
    _assert_same_image(array, geometry, image, atol=1e-4)
    assert int(array.min()) == -3024 and int(array.max()) == 1381  # the committed CT's range (README)
    assert _snapshot(series_with_extras) == before  # the folder is only read


def test_the_first_slice_is_a_slice_of_the_series(series_with_extras: Path):
    first = Path(first_dicom_slice(str(series_with_extras)))
    assert first.suffix == ".dcm" and first.parent == series_with_extras
    assert str(first) == sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(series_with_extras))[0]


def test_a_folder_without_dicom_is_refused_in_one_line(slicer_scene, tmp_path: Path):
    folder = tmp_path / "not dicom"
    folder.mkdir()
    (folder / "NOTICE").write_text("licence\n", encoding="utf-8")
    (folder / "DICOMDIR").write_bytes(dicomdir())
    nodes = _volume_nodes(slicer_scene)
    with pytest.raises(ValueError) as error:
        load_volume_node(str(folder))
    message = str(error.value)
    assert message.startswith(f"folder '{folder}' holds no DICOM series (none of DICOMDIR, NOTICE is")
    assert "select a folder with the slices of one DICOM series" in message and "\n" not in message
    assert _volume_nodes(slicer_scene) == nodes


def _write_series(folder: Path, uid: str, z0: float) -> None:
    """Three 4x4 CT slices of one series, written by SimpleITK's GDCM writer.

    The writer sets the process locale to "C" and leaves it so (Python's default text encoding then
    becomes ASCII for every later test); the locale is put back.
    """
    folder.mkdir(exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    saved = locale.setlocale(locale.LC_ALL)
    try:
        for k in range(3):
            image = sitk.GetImageFromArray(np.full((1, 4, 4), 100 * k, np.int16))
            for tag, value in (
                ("0020|000e", uid), ("0020|000d", "1.2.3.9"), ("0008|0060", "CT"),
                ("0020|0013", str(k + 1)), ("0020|0032", f"0\\0\\{z0 + k}"),
                ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0008|0018", f"{uid}.{k}"),
            ):  # fmt: skip
                image.SetMetaData(tag, value)
            writer.SetFileName(str(folder / f"{uid}-{k}.dcm"))
            writer.Execute(image)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def test_a_folder_with_two_series_is_refused_naming_both(slicer_scene, tmp_path: Path):
    folder = tmp_path / "two"
    _write_series(folder, "1.2.3.4.1", 0.0)
    _write_series(folder, "1.2.3.4.2", 10.0)
    assert len(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))) == 2
    nodes = _volume_nodes(slicer_scene)
    with pytest.raises(
        ValueError, match=r"holds 2 DICOM series \(1\.2\.3\.4\.1 \(3 slices\); 1\.2\.3\.4\.2 \(3"
    ):
        load_volume_node(str(folder))
    assert _volume_nodes(slicer_scene) == nodes


@pytest.mark.slicer_dicom_series
def test_a_folder_with_one_written_series_loads(slicer_scene, tmp_path: Path):
    only = tmp_path / "one"
    _write_series(only, "1.2.3.4.1", 0.0)
    array, _ = array_from_volume_node(load_volume_node(str(only)))
    assert sorted(np.unique(array).tolist()) == [0, 100, 200]
