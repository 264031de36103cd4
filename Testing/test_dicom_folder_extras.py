"""A DICOM series folder with a DICOMDIR, a licence and a README beside the slices (MPUNetCore side).

A DICOMDIR is a real DICOM file ("DICM" at byte 128) that indexes a file set and belongs to no series:
it must not be reported as a truncated slice. References: SimpleITK reading GDCM's list of the series,
and `mpunet segment` on the same slices without the extra files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MPUNetCore.cli import main
from MPUNetCore.dicom_checks import is_dicomdir, unlisted_dicom_files
from MPUNetCore.volume_io import read_volume
from Testing.dicom_bytes import dicomdir
from Testing.real_data import REAL_CT_DIR
from Testing.slicer_models import write_tiny_bundle


def _series(folder: Path, extras: bool) -> Path:
    folder.mkdir(parents=True)
    for path in sorted(REAL_CT_DIR.glob("*.dcm")):
        shutil.copy(path, folder / path.name)
    if extras:
        (folder / "DICOMDIR").write_bytes(dicomdir())
        (folder / "NOTICE").write_text("licence of the data\n", encoding="utf-8")
        (folder / "README.md").write_text("# the scan\n", encoding="utf-8")
    return folder


def test_is_dicomdir_reads_the_media_storage_sop_class(tmp_path):
    (tmp_path / "DICOMDIR").write_bytes(dicomdir())
    (tmp_path / "ct-like").write_bytes(dicomdir(sop_class=b"1.2.840.10008.5.1.4.1.1.2"))  # CT Image Storage
    (tmp_path / "NOTICE").write_text("licence\n", encoding="utf-8")
    assert is_dicomdir(tmp_path / "DICOMDIR")
    assert not is_dicomdir(tmp_path / "ct-like") and not is_dicomdir(tmp_path / "NOTICE")
    assert not any(is_dicomdir(p) for p in REAL_CT_DIR.glob("*.dcm"))
    assert not is_dicomdir(tmp_path / "missing")


def test_a_series_with_a_dicomdir_beside_it_reads_as_the_series(tmp_path):
    folder = _series(tmp_path / "series", extras=True)
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))
    assert [Path(f).suffix for f in files] == [".dcm"] * 3
    assert unlisted_dicom_files(folder, files) == []
    volume = read_volume(folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reference = reader.Execute()
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(reference))
    np.testing.assert_allclose(volume.spacing, reference.GetSpacing())
    np.testing.assert_allclose(volume.origin, reference.GetOrigin())


def test_a_truncated_slice_is_still_named_and_the_dicomdir_is_not(tmp_path):
    folder = _series(tmp_path / "series", extras=True)
    damaged = folder / "ct-3slice_02.dcm"
    damaged.write_bytes(damaged.read_bytes()[:-1000])
    with pytest.raises(ValueError) as error:
        read_volume(folder)
    assert "ct-3slice_02.dcm" in str(error.value) and "DICOMDIR" not in str(error.value)


def test_mpunet_segment_gives_the_same_labels_with_and_without_the_extra_files(tmp_path, capfd):
    model = write_tiny_bundle(tmp_path / "model")
    labels = {}
    for extras in (False, True):
        folder = _series(tmp_path / f"extras_{extras}" / "series", extras)
        output = tmp_path / f"extras_{extras}" / "labels.nii.gz"
        code = main(["segment", str(folder), "-o", str(output), "--model", str(model), "--progress", "none"])
        assert code == 0, capfd.readouterr().err
        labels[extras] = sitk.ReadImage(str(output))
    np.testing.assert_array_equal(*(sitk.GetArrayFromImage(image) for image in labels.values()))
    assert labels[True].GetOrigin() == labels[False].GetOrigin()
