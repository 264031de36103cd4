"""Bad-input catalogue, volumes (issue 10, items 7, 8, 12, 13, 14 and the messages).

Each test runs the real ``mpunet segment`` command (in process, real SimpleITK on real files, a tiny real
model) on a damaged input and checks the behaviour a careful user expects: the exit code, one line
naming the file, the problem and the fix, no output file, the input byte-identical and nothing written
anywhere else in the test's folder. The DICOM cases use the real CT series committed under Testing/data/.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import SimpleITK as sitk

from MPUNetCore.cli import main
from Testing.real_data import REAL_CT_DIR
from Testing.slicer_models import phantom_ct, save_like, write_tiny_bundle

REAL_SERIES = REAL_CT_DIR
ORIENTATION = b"1.000000\\0.000000\\0.000000\\0.000000\\1.000000\\0.000000"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_tiny_bundle(tmp_path_factory.mktemp("model"))


def snapshot(folder: Path) -> Dict[str, str]:
    """Every file under ``folder`` with the SHA-256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def segment(capfd, source: Path, output: Path, model: Path, *extra: str):
    """Run ``mpunet segment``; returns (exit code, stdout, stderr) as the process would show them."""
    code = main(
        ["segment", str(source), "-o", str(output), "--model", str(model), "--progress", "none", *extra]
    )
    out, err = capfd.readouterr()
    return code, out, err


def refused(capfd, tmp_path: Path, source: Path, model: Path, *extra: str) -> str:
    """Run a case that must be refused: exit 2, one error line, nothing written, input unchanged."""
    before = snapshot(tmp_path)
    output = tmp_path / "out" / "labels.nii.gz"
    code, out, err = segment(capfd, source, output, model, *extra)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("mpunet segment: error: "), err
    assert "Traceback" not in err
    assert snapshot(tmp_path) == before  # no output, no temporary file, input byte-identical
    return lines[0]


# ------------------------------------------------------------------------------------------ DICOM (7)


def dicom_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "series"
    folder.mkdir()
    for path in sorted(REAL_SERIES.glob("*.dcm")):
        shutil.copy(path, folder / path.name)
    return folder


def edit_bytes(path: Path, old: bytes, new: bytes) -> None:
    """Replace a DICOM value by one of the same length (the file's element lengths stay valid)."""
    assert len(old) == len(new)
    data = path.read_bytes()
    assert data.count(old) == 1
    path.write_bytes(data.replace(old, new))


def test_dicom_truncated_slice_is_refused_naming_it(tiny_model, tmp_path, capfd):
    folder = dicom_copy(tmp_path)
    slice_file = folder / "ct-3slice_02.dcm"
    slice_file.write_bytes(slice_file.read_bytes()[:-1000])
    line = refused(capfd, tmp_path, folder, tiny_model)
    assert "ct-3slice_02.dcm" in line and "truncated or corrupt" in line


def test_dicom_duplicate_slice_is_refused_naming_both(tiny_model, tmp_path, capfd):
    folder = dicom_copy(tmp_path)
    shutil.copy(folder / "ct-3slice_02.dcm", folder / "ct-3slice_02-copy.dcm")
    line = refused(capfd, tmp_path, folder, tiny_model)
    assert "ct-3slice_02.dcm" in line and "ct-3slice_02-copy.dcm" in line and "same position" in line


def test_dicom_uneven_spacing_is_refused(tiny_model, tmp_path, capfd):
    folder = dicom_copy(tmp_path)
    edit_bytes(folder / "ct-3slice_03.dcm", b"800003\\-128.690002", b"800003\\-129.690002")  # 1 mm then 2 mm
    line = refused(capfd, tmp_path, folder, tiny_model)
    assert "uneven slice spacing: 1 to 2 mm" in line and "ct-3slice_03.dcm" in line
    assert "--allow-uneven-slices" in line


def test_dicom_mixed_orientation_is_refused_naming_the_odd_slice(tiny_model, tmp_path, capfd):
    folder = dicom_copy(tmp_path)
    edit_bytes(
        folder / "ct-3slice_01.dcm",
        ORIENTATION,
        ORIENTATION.replace(b"1.000000\\0.000000", b"0.000000\\1.000000", 1),
    )
    line = refused(capfd, tmp_path, folder, tiny_model)
    assert "ct-3slice_01.dcm are oriented differently" in line


def test_dicom_gap_is_refused_and_accepted_only_with_the_flag_which_the_output_records(
    tiny_model, tmp_path, capfd
):
    folder = dicom_copy(tmp_path)
    (folder / "ct-3slice_02.dcm").unlink()  # 01 and 03 remain, evenly 2 mm apart
    line = refused(capfd, tmp_path, folder, tiny_model)
    assert "missing between instance numbers 1 and 3" in line
    output = tmp_path / "out" / "labels.nii.gz"
    code, out, err = segment(capfd, folder, output, tiny_model, "--allow-uneven-slices")
    assert code == 0, err
    assert "WARNING" not in err and "itk" not in err.lower()  # ITK's own warnings stay off stderr
    written = sitk.ReadImage(str(output))
    assert written.GetSize() == (512, 512, 2)
    assert "uneven DICOM slices accepted" in written.GetMetaData("descrip")  # NIfTI description


# ------------------------------------------------------------------------ direction matrices (8)


def write_mha(path: Path, transform: str) -> Path:
    image = sitk.GetImageFromArray(np.full((6, 8, 10), -500, np.int16))
    sitk.WriteImage(image, str(path))
    data = path.read_bytes().replace(b"TransformMatrix = 1 0 0 0 1 0 0 0 1", transform.encode())
    path.write_bytes(data)
    return path


def test_non_orthonormal_direction_is_refused_with_the_fix(tiny_model, tmp_path, capfd):
    source = write_mha(tmp_path / "shear.mha", "TransformMatrix = 1 0 0 0.5 1 0 0 0 1")
    line = refused(capfd, tmp_path, source, tiny_model)
    assert str(source) in line and "not orthonormal" in line and "TransformMatrix = 1 0 0 0 1 0 0 0 1" in line


def test_all_zero_direction_says_so_in_words(tiny_model, tmp_path, capfd):
    source = write_mha(tmp_path / "zero.mha", "TransformMatrix = 0 0 0 0 0 0 0 0 0")
    line = refused(capfd, tmp_path, source, tiny_model)
    assert str(source) in line and "direction matrix is singular" in line and "(0 0 0)" not in line


def write_nifti1(path: Path, srow_x: tuple, sform_code: int = 1) -> Path:
    """A NIfTI-1 file written by hand (fixed 348-byte header): 10 x 8 x 6 int16 voxels of -500 HU,
    spacing 0.8 x 0.8 x 2 mm, identity qform, and the given first sform row (srow_y/z are plain)."""
    header = bytearray(348)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, 10, 8, 6, 1, 1, 1, 1)  # dim
    struct.pack_into("<hh", header, 70, 4, 16)  # datatype int16, bitpix
    struct.pack_into("<8f", header, 76, 1.0, 0.8, 0.8, 2.0, 0, 0, 0, 0)  # pixdim (qfac = 1)
    struct.pack_into("<f", header, 108, 352.0)  # vox_offset
    struct.pack_into("<ff", header, 112, 1.0, 0.0)  # scl_slope, scl_inter
    struct.pack_into("<B", header, 123, 10)  # xyzt_units: mm, s
    struct.pack_into("<hh", header, 252, 1, sform_code)  # qform_code, sform_code
    struct.pack_into("<12f", header, 280, *srow_x, 0, 0.8, 0, 0, 0, 0, 2.0, 0)
    header[344:348] = b"n+1\0"
    data = bytes(header) + bytes(4) + np.full((6, 8, 10), -500, "<i2").tobytes()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


@pytest.mark.parametrize("name", ["shear.nii", "shear.nii.gz"])
def test_sheared_nifti_sform_is_refused_although_itk_hides_it(name, tiny_model, tmp_path, capfd):
    source = write_nifti1(tmp_path / name, (0.8, 0.0, 1.0, 0.0))  # x moves 1 mm per 2 mm slice
    itk_direction = np.reshape(sitk.ReadImage(str(source)).GetDirection(), (3, 3))
    assert np.allclose(itk_direction.T @ itk_direction, np.eye(3))  # ITK alone would not notice
    line = refused(capfd, tmp_path, source, tiny_model)
    assert str(source) in line and "NIfTI sform" in line and "not orthonormal" in line
    assert "sform_code = 0" in line and "resample" in line
    # The same hand-written file without the shear is read and segmented: the check is the shear.
    (tmp_path / "plain").mkdir()
    plain = write_nifti1(tmp_path / "plain" / name, (0.8, 0.0, 0.0, 0.0))
    output = tmp_path / "out" / "plain.nii.gz"
    code, _, err = segment(capfd, plain, output, tiny_model)
    assert code == 0, err
    assert sitk.ReadImage(str(output)).GetSpacing() == pytest.approx((0.8, 0.8, 2.0))


def test_short_mha_names_the_truncation_not_a_stale_errno(tiny_model, tmp_path, capfd):
    source = write_mha(tmp_path / "short.mha", "TransformMatrix = 1 0 0 0 1 0 0 0 1")
    source.write_bytes(source.read_bytes()[:-300])
    line = refused(capfd, tmp_path, source, tiny_model)
    # 6 x 8 x 10 int16 voxels = 960 bytes, 300 cut off
    assert "truncated: it holds 660 of the 960 bytes" in line and "No such file" not in line


# ------------------------------------------------------------------- voxel values (12)


@pytest.fixture
def phantom() -> sitk.Image:
    return phantom_ct()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels_are_refused_with_their_count(tiny_model, tmp_path, capfd, phantom, bad):
    array = sitk.GetArrayFromImage(phantom).astype(np.float32)
    array[2:4, 5:9, 10:13] = bad  # 2 * 4 * 3 = 24 voxels
    source = save_like(array, phantom, tmp_path / "bad.nrrd")
    line = refused(capfd, tmp_path, source, tiny_model)
    assert f"{source} has 24 voxels that are NaN or infinite" in line and "--fill-nonfinite" in line


def test_non_finite_voxels_are_replaced_only_under_the_flag(tiny_model, tmp_path, capfd, phantom):
    array = sitk.GetArrayFromImage(phantom).astype(np.float32)
    array[0, :5, :5] = np.nan
    source = save_like(array, phantom, tmp_path / "nan.nrrd")
    clean = save_like(np.nan_to_num(array, nan=-1000.0), phantom, tmp_path / "clean.nrrd")
    outputs = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    code, _, err = segment(capfd, source, outputs[0], tiny_model, "--fill-nonfinite", "-1000")
    assert code == 0 and "replaced 25 NaN/infinite voxels" in err
    assert segment(capfd, clean, outputs[1], tiny_model)[0] == 0
    labels = [sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in outputs]
    np.testing.assert_array_equal(labels[0], labels[1])  # same as filling the voxels by hand


@pytest.mark.parametrize(
    "kind, expected",
    [("uint8", "an 8-bit image"), ("constant", "is constant"), ("huge", "far outside the CT range")],
)
def test_volumes_that_are_not_ct_in_hu_are_segmented_with_a_warning(
    tiny_model, tmp_path, capfd, phantom, kind, expected
):
    array = sitk.GetArrayFromImage(phantom)
    made = {
        "uint8": np.clip(array, 0, 255).astype(np.uint8),
        "constant": np.full(array.shape, 40, np.int16),
        "huge": np.where(array > 0, 1e30, -1000).astype(np.float32),
    }[kind]
    source = save_like(made, phantom, tmp_path / f"{kind}.nrrd")
    output = tmp_path / "labels.nii.gz"
    code, _, err = segment(capfd, source, output, tiny_model)
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert code == 0 and output.exists()
    assert len(warnings) == 1 and str(source) in warnings[0] and expected in warnings[0]


def test_ct_in_hu_gives_no_warning(tiny_model, tmp_path, capfd, phantom):
    source = save_like(sitk.GetArrayFromImage(phantom), phantom, tmp_path / "ct.nrrd")
    code, _, err = segment(capfd, source, tmp_path / "labels.nii.gz", tiny_model)
    assert code == 0 and "warning" not in err


# ---------------------------------------------------------------------- memory (13, 14)


@pytest.mark.parametrize("z_spacing", [60.0, 1e6])
def test_huge_spacing_is_refused_with_the_numbers_before_allocating(
    tiny_model, tmp_path, capfd, phantom, z_spacing
):
    phantom.SetSpacing((1.0, 1.0, z_spacing))
    source = save_like(sitk.GetArrayFromImage(phantom), phantom, tmp_path / "spaced.nii.gz")
    # tiny card: 0.5 in-plane, 1 mm slices: 12 slices of z_spacing mm become 12 * z_spacing network slices
    budget = "4M" if z_spacing < 100 else "64G"
    line = refused(capfd, tmp_path, source, tiny_model, "--max-memory", budget)
    assert f"network grid of 20 x 20 x {int(12 * z_spacing)} voxels" in line
    assert "would need about" in line and "the budget is" in line


def test_huge_header_size_is_refused_before_reading(tiny_model, tmp_path, capfd):
    source = tmp_path / "huge.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.int16)), str(source))
    source.write_bytes(source.read_bytes().replace(b"sizes: 4 4 4", b"sizes: 90000 90000 90000"))
    line = refused(capfd, tmp_path, source, tiny_model)
    assert "90000 x 90000 x 90000 voxels" in line and "more than the budget" in line


def test_max_memory_needs_a_size(tmp_path, capfd):
    with pytest.raises(SystemExit) as caught:
        main(
            ["segment", str(tmp_path / "x.nii.gz"), "-o", str(tmp_path / "y.nii.gz"), "--max-memory", "lots"]
        )
    assert caught.value.code == 2 and "--max-memory" in capfd.readouterr().err


def test_running_out_of_memory_ends_in_one_line_naming_the_fix(tiny_model, tmp_path, phantom):
    """A real MemoryError: the run is started in a process whose address space is capped."""
    import subprocess
    import sys

    phantom.SetSpacing((1.0, 1.0, 4e4))  # a network grid of about 3 GB
    source = save_like(sitk.GetArrayFromImage(phantom), phantom, tmp_path / "far.nrrd")
    output = tmp_path / "labels.nii.gz"
    # --max-memory lets the run start (the budget check would refuse it first: the other tests' business);
    # the 2 GiB address-space cap (a normal run of this phantom fits in it) makes the allocation fail.
    command = [sys.executable, "-m", "MPUNetCore", "segment", str(source), "-o", str(output)]
    command += ["--model", str(tiny_model), "--progress", "none", "--max-memory", "1P"]
    code = "import resource, subprocess, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "
    code += "sys.exit(subprocess.call(sys.argv[1:]))"
    run = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, timeout=300)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 1, run.stderr
    assert len(lines) == 1 and f"segmenting {source} ran out of computer memory" in lines[0]
    assert "--batch-size" in lines[0]
    assert not output.exists()


def test_out_of_memory_message_for_the_gpu_names_the_cpu_fallback():
    import torch

    from MPUNetCore.memory import is_out_of_memory, memory_error_message

    error = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert is_out_of_memory(error) and is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    message = memory_error_message(error, "segmenting ct.nrrd")
    assert message.startswith("segmenting ct.nrrd ran out of GPU memory") and "--device cpu" in message
    assert "\n" not in message


def test_memory_sizes_parse_in_binary_units():
    from MPUNetCore.memory import parse_memory

    assert (
        parse_memory("4G") == 4 * 2**30
        and parse_memory("512M") == 2**29
        and parse_memory("1.5GiB") == 3 * 2**29
    )
    for bad in ("", "4X", "-1G", "0"):
        with pytest.raises(ValueError):
            parse_memory(bad)


# ------------------------------------------------------- the Slicer module shows the same messages


def test_slicer_module_shows_the_same_refusal_naming_the_volume_node(
    slicer_scene, tiny_model, tmp_path, phantom
):
    """The module's background run (real MRML, real process) fails with the command line's message."""
    import slicer.util
    from MPUNetSegmentationLib.logic import MPUNetLogic
    from MPUNetSegmentationLib.process import SegmentationFailed

    array = sitk.GetArrayFromImage(phantom).astype(np.float32)
    array[2:4, 5:9, 10:13] = np.nan  # 24 voxels
    source = save_like(array, phantom, tmp_path / "nan-ct.nrrd")
    volume = slicer.util.loadVolume(str(source))
    before = slicer.util.arrayFromVolume(volume).copy()
    (tmp_path / "runs").mkdir()
    logic = MPUNetLogic(temporaryDirectory=str(tmp_path / "runs"))
    with pytest.raises(SegmentationFailed) as caught:
        logic.process(volume, model=str(tiny_model), device="cpu")
    message = str(caught.value)
    assert caught.value.returncode == 2
    assert "volume 'nan-ct' has 24 voxels that are NaN or infinite" in message and "Traceback" not in message
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(volume), before)
    assert slicer.mrmlScene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0


def test_slicer_module_logs_the_not_ct_warning(slicer_scene, tiny_model, tmp_path, phantom):
    import slicer.util
    from MPUNetSegmentationLib.logic import MPUNetLogic

    source = save_like(
        np.clip(sitk.GetArrayFromImage(phantom), 0, 255).astype(np.uint8), phantom, tmp_path / "u8.nrrd"
    )
    volume = slicer.util.loadVolume(str(source))
    (tmp_path / "runs").mkdir()
    logged = []
    segmentation = MPUNetLogic(temporaryDirectory=str(tmp_path / "runs")).process(
        volume, model=str(tiny_model), device="cpu", logCallback=logged.append
    )
    assert segmentation is not None
    warnings = [line for line in logged if line.startswith("warning: ")]
    assert len(warnings) == 1 and "volume 'u8' holds values 0..255: an 8-bit image" in warnings[0]


def test_click_worker_refuses_non_finite_voxels_and_keeps_serving(tiny_model, tmp_path, phantom):
    import io
    import json

    from MPUNetCore.worker import ModelWorker

    array = sitk.GetArrayFromImage(phantom).astype(np.float32)
    array[0, 0, :7] = np.inf
    source = save_like(array, phantom, tmp_path / "region.nrrd")
    output = tmp_path / "labels.nrrd"
    out = io.StringIO()
    requests = [{"id": 1, "op": "segment", "input": str(source), "output": str(output)}, {"op": "quit"}]
    worker = ModelWorker(str(tiny_model), "cpu", out=out)
    assert worker.serve(io.StringIO("".join(json.dumps(r) + "\n" for r in requests))) == 0
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert events[-1]["event"] == "error" and events[-1]["id"] == 1
    assert f"{source} has 7 voxels that are NaN or infinite" in events[-1]["message"]
    assert not output.exists()
