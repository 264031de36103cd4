"""The headless batch script, run as a real subprocess under plain Python with slicer-core.

Input: a phantom CT file, the real 3-slice DICOM series (a sub-folder) and a broken file. Checked: the good
cases get a .nii.gz label map and a .seg.nrrd with named segments; the label maps are what ``python -m
MPUNetCore segment`` writes for the same input; the metrics CSV equals the one ``python -m MPUNetCore
evaluate`` writes for the same folders; the exit code is non-zero and the broken file is named; a second run
keeps existing outputs unless ``--overwrite``. Nothing is mocked (a tiny real U-Net bundle keeps it fast).
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from Testing.child_env import run_python
from Testing.slicer_models import TINY_CLASSES, write_phantom, write_tiny_bundle

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "MPUNetSegmentation" / "Scripts" / "mpunet_batch.py"


def _run(*args, cwd=None) -> subprocess.CompletedProcess:
    return run_python(*args, cwd=cwd, timeout=600)  # the batch segments whole volumes


@pytest.fixture(scope="module")
def batch_case(tmp_path_factory, real_ct_dir):
    root = tmp_path_factory.mktemp("batch")
    inputs, labels = root / "in", root / "labels"
    ct, label = write_phantom(root / "phantom", seed=2, shape=(24, 64, 64))
    inputs.mkdir()
    labels.mkdir()
    shutil.copy(ct, inputs / "phantom-2.nrrd")
    shutil.copy(label, labels / "phantom-2-label.nrrd")
    (inputs / "liver").mkdir()
    for dicom in real_ct_dir.glob("*.dcm"):
        shutil.copy(dicom, inputs / "liver" / dicom.name)
    shutil.copy(real_ct_dir / "liver_seg.nrrd", labels / "liver_seg.nrrd")
    (inputs / "broken.nii.gz").write_bytes(b"\x1f\x8b this is not a volume" * 50)
    model = write_tiny_bundle(root / "model")
    output = root / "out"
    result = _run(
        SCRIPT,
        "--input",
        inputs,
        "--output",
        output,
        "--labels",
        labels,
        "--model",
        model,
        "--device",
        "cpu",
        cwd=root,
    )
    return root, inputs, labels, model, output, result


@pytest.mark.slow
def test_batch_writes_the_good_cases_and_fails_naming_the_broken_file(batch_case) -> None:
    root, inputs, labels, model, output, result = batch_case
    assert result.returncode == 1, result.stderr
    assert "broken" in result.stderr and str(inputs / "broken.nii.gz") in result.stderr
    for name in ("phantom-2", "liver"):
        assert (output / "labelmaps" / f"{name}.nii.gz").is_file()
        assert (output / "segmentations" / f"{name}.seg.nrrd").is_file()
    assert not (output / "labelmaps" / "broken.nii.gz").exists()
    assert sorted(p.name for p in (output / "segmentations").iterdir()) == [
        "liver.seg.nrrd",
        "phantom-2.seg.nrrd",
    ]
    log = (output / "mpunet_batch.log").read_text()
    assert "broken: FAILED" in log and "phantom-2: done" in log and "liver: done" in log


@pytest.mark.slow
def test_batch_label_maps_are_what_mpunet_segment_writes(batch_case) -> None:
    root, inputs, _, model, output, _ = batch_case
    for name, source in (("phantom-2", inputs / "phantom-2.nrrd"), ("liver", inputs / "liver")):
        expected = root / f"expected-{name}.nii.gz"
        cli = _run("-m", "MPUNetCore", "segment", source, "-o", expected, "--model", model, "--device", "cpu")
        assert cli.returncode == 0, cli.stderr
        ours, theirs = (
            sitk.ReadImage(str(output / "labelmaps" / f"{name}.nii.gz")),
            sitk.ReadImage(str(expected)),
        )
        np.testing.assert_array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(theirs))
        for getter in ("GetSpacing", "GetOrigin", "GetDirection"):
            np.testing.assert_allclose(getattr(ours, getter)(), getattr(theirs, getter)(), atol=1e-6)


@pytest.mark.slow
def test_batch_segmentations_hold_named_segments_equal_to_the_label_maps(batch_case, slicer_scene) -> None:
    import slicer.util
    from MPUNetSegmentationLib.scene_arrays import load_volume_node
    from MPUNetSegmentationLib.segmentation_nodes import label_array_from_node

    _, inputs, _, _, output, _ = batch_case
    for name, source in (("phantom-2", inputs / "phantom-2.nrrd"), ("liver", inputs / "liver")):
        volume = load_volume_node(str(source))
        segmentation = slicer.util.loadSegmentation(str(output / "segmentations" / f"{name}.seg.nrrd"))
        segments = segmentation.GetSegmentation()
        names = [segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments())]
        assert names == [class_name for _, class_name, _ in TINY_CLASSES[1:]]
        colours = [segments.GetNthSegment(i).GetColor() for i in range(2)]
        assert colours == [pytest.approx(tuple(color)) for _, _, color in TINY_CLASSES[1:]]
        labels = sitk.ReadImage(str(output / "labelmaps" / f"{name}.nii.gz"))
        label_node = slicer.util.loadLabelVolume(str(output / "labelmaps" / f"{name}.nii.gz"))
        np.testing.assert_array_equal(
            label_array_from_node(segmentation, volume), label_array_from_node(label_node, volume)
        )
        assert sitk.GetArrayViewFromImage(labels).max() <= 2


@pytest.mark.slow
def test_batch_metrics_equal_mpunet_evaluate(batch_case) -> None:
    root, _, labels, _, output, _ = batch_case
    expected = root / "evaluate.csv"
    cli = _run(
        "-m", "MPUNetCore", "evaluate", "--pred", output / "labelmaps", "--ref", labels, "--out", expected
    )
    assert cli.returncode == 0, cli.stderr
    with open(output / "metrics.csv", newline="") as ours, open(expected, newline="") as theirs:
        ours_rows, their_rows = list(csv.DictReader(ours)), list(csv.DictReader(theirs))
    assert ours_rows == their_rows
    assert {row["case_id"] for row in ours_rows} == {"phantom-2", "liver", "mean", "global"}


@pytest.mark.slow
def test_batch_keeps_existing_outputs_unless_overwrite(batch_case) -> None:
    root, inputs, labels, model, output, _ = batch_case
    files = sorted((output / "labelmaps").iterdir()) + sorted((output / "segmentations").iterdir())
    stamps = {path: path.stat().st_mtime_ns for path in files}
    (inputs / "broken.nii.gz").unlink()  # only good cases left
    kept = _run(SCRIPT, "--input", inputs, "--output", output, "--model", model, "--device", "cpu")
    assert kept.returncode == 0, kept.stderr
    assert "kept existing outputs" in kept.stdout
    assert {path: path.stat().st_mtime_ns for path in files} == stamps
    only = inputs.parent / "only-phantom"
    only.mkdir()
    shutil.copy(inputs / "phantom-2.nrrd", only)
    rerun = _run(
        SCRIPT, "--", "--input", only, "--output", output, "--model", model, "--device", "cpu", "--overwrite"
    )
    assert rerun.returncode == 0, rerun.stderr
    replaced = [output / "labelmaps" / "phantom-2.nii.gz", output / "segmentations" / "phantom-2.seg.nrrd"]
    assert all(path.stat().st_mtime_ns > stamps[path] for path in replaced)
    assert (output / "labelmaps" / "liver.nii.gz").stat().st_mtime_ns == stamps[
        output / "labelmaps" / "liver.nii.gz"
    ]


def test_batch_usage_errors_exit_2(tmp_path) -> None:
    missing = _run(SCRIPT, "--input", tmp_path / "nope", "--output", tmp_path / "out")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    usage = _run(SCRIPT, "--output", tmp_path / "out")
    assert usage.returncode == 2 and "--input" in usage.stderr
