"""The module's logic on Slicer's real MRML (slicer-core), with real inference in a real background process.

Covered: a phantom (left-handed, oblique) and the real DICOM series in, a segmentation node out whose voxels
equal MPUNetCore's own in-process prediction on the volume's grid, segments named/coloured per the model
card, comparison numbers equal to ``MPUNetCore.metrics`` on the same arrays, CSV export, cancelling a run
(no node, no process, no temporary file), a failing run's error text, and input nodes left untouched.
Nothing is mocked. The Qt widget cannot run here (no Qt in slicer-core): see test_slicer_module_ui.py.
"""

from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from MPUNetSegmentationLib.logic import MPUNetLogic
from MPUNetSegmentationLib.process import SegmentationCancelled, SegmentationFailed, SegmentationJob
from MPUNetSegmentationLib.scene_arrays import array_from_volume_node, volume_geometry  # noqa: E402
from MPUNetSegmentationLib.segmentation_nodes import label_array_from_node  # noqa: E402

from Testing.slicer_models import TINY_CLASSES, predict_in_process, write_phantom, write_tiny_bundle


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_tiny_bundle(tmp_path_factory.mktemp("model"))


@pytest.fixture
def logic(tmp_path: Path) -> MPUNetLogic:
    os.environ["OMP_NUM_THREADS"] = "1"  # same arithmetic in the background as in the in-process reference
    (tmp_path / "runs").mkdir()
    return MPUNetLogic(temporaryDirectory=str(tmp_path / "runs"))


def _snapshot(node):
    import slicer.util

    storage = node.GetStorageNode()
    return (
        node.GetMTime(),
        node.GetName(),
        node.GetNumberOfStorageNodes(),
        storage.GetFileName() if storage else None,
        slicer.util.arrayFromVolume(node).copy() if node.IsA("vtkMRMLVolumeNode") else None,
    )


def _assert_unchanged(node, before) -> None:
    after = _snapshot(node)
    assert after[:4] == before[:4], node.GetName()
    if before[4] is not None:
        np.testing.assert_array_equal(after[4], before[4])


def _segments(node):
    segmentation = node.GetSegmentation()
    return [segmentation.GetNthSegment(i) for i in range(segmentation.GetNumberOfSegments())]


def _assert_on_volume_grid(segmentation_node, volume) -> None:
    """The segments' voxels lie on the volume's voxel grid (same IJK-to-RAS, extent inside the volume).

    An empty segment has no voxels, hence no grid to check (Slicer keeps an empty labelmap as is).
    """
    import slicer
    import vtk

    volume_matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(volume_matrix)
    dims = volume.GetImageData().GetDimensions()
    for segment_id in segmentation_node.GetSegmentation().GetSegmentIDs():
        image = slicer.vtkOrientedImageData()
        segmentation_node.GetBinaryLabelmapRepresentation(segment_id, image)
        if image.IsEmpty():
            continue
        matrix = vtk.vtkMatrix4x4()
        image.GetImageToWorldMatrix(matrix)
        np.testing.assert_allclose(
            slicer.util.arrayFromVTKMatrix(matrix), slicer.util.arrayFromVTKMatrix(volume_matrix), atol=1e-6
        )
        extent = image.GetExtent()
        assert all(0 <= extent[2 * a] and extent[2 * a + 1] < dims[a] for a in range(3)), extent


@pytest.mark.slow
def test_phantom_segmentation(slicer_scene, logic, tiny_model, tmp_path) -> None:
    import slicer
    import slicer.util

    image_path, _ = write_phantom(tmp_path / "data", seed=1, shape=(24, 64, 64), oblique=True)
    volume = slicer.util.loadVolume(str(image_path))
    before = _snapshot(volume)
    namesake = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "phantom-1 MPU-Net")
    namesake_before = namesake.GetMTime()
    progress, log = [], []
    node = logic.process(
        volume,
        model=str(tiny_model),
        device="cpu",
        progressCallback=lambda fraction, message: progress.append(fraction),
        logCallback=log.append,
    )
    _assert_unchanged(volume, before)
    assert node.IsA("vtkMRMLSegmentationNode") and node.GetName() == "phantom-1 MPU-Net_1"  # unique
    assert namesake.GetMTime() == namesake_before and namesake.GetSegmentation().GetNumberOfSegments() == 0
    assert not os.listdir(tmp_path / "runs")  # the run's temporary folder is gone
    assert progress[-1] == 1.0 and progress == sorted(progress) and len(progress) > 3
    assert any("Running:" in line for line in log)

    # segments: one per foreground class of the card, named and coloured by it, with terminology
    segments = _segments(node)
    assert [s.GetName() for s in segments] == [name for _, name, _ in TINY_CLASSES[1:]]
    for segment, (_, _, color) in zip(segments, TINY_CLASSES[1:]):
        np.testing.assert_allclose(segment.GetColor(), color)
    assert "SCT^10200004^Liver" in segments[0].GetTerminology()
    assert "SCT^108369006^Neoplasm" in segments[1].GetTerminology()

    # geometry and content: exactly MPUNetCore's own prediction on the volume's grid
    _assert_on_volume_grid(node, volume)
    array, geometry = array_from_volume_node(volume)
    assert geometry == volume_geometry(volume)
    expected = predict_in_process(array, geometry.spacing, tiny_model)
    result = label_array_from_node(node, volume, {"Liver": 1, "Liver tumor": 2})
    assert expected.any()
    np.testing.assert_array_equal(result, expected)

    # a chosen output segmentation is overwritten in place
    target = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my output")
    target.GetSegmentation().AddEmptySegment("old", "old")
    assert logic.process(volume, outputSegmentation=target, model=str(tiny_model), device="cpu") is target
    assert target.GetName() == "my output"
    assert [s.GetName() for s in _segments(target)] == ["Liver", "Liver tumor"]
    overwritten = label_array_from_node(target, volume, {"Liver": 1, "Liver tumor": 2})
    np.testing.assert_array_equal(overwritten, expected)
    assert slicer.mrmlScene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 3
    assert not os.listdir(tmp_path / "runs")


@pytest.mark.slow
def test_real_ct_with_default_model_and_comparison(slicer_scene, logic, real_ct_dir, tmp_path) -> None:
    import slicer.util
    from MPUNetSegmentationLib.comparison import COLUMNS, LITS_SEGMENTS

    from MPUNetCore.metrics import segmentation_metrics
    from MPUNetCore.registry import resolve_model

    files = sorted(str(p) for p in real_ct_dir.glob("*.dcm"))
    volume = slicer.util.loadVolume(files[0], {"singleFile": False})
    reference = slicer.util.loadLabelVolume(str(real_ct_dir / "liver_seg.nrrd"))
    before = [(node, _snapshot(node)) for node in (volume, reference)]

    log = []
    node = logic.process(volume, logCallback=log.append)  # the default (bundled demo) model, device auto
    assert node.GetName() == f"{volume.GetName()} MPU-Net"
    _assert_on_volume_grid(node, volume)
    array, geometry = array_from_volume_node(volume)
    expected = predict_in_process(array, geometry.spacing, resolve_model(None))
    prediction = label_array_from_node(node, volume, {"Liver": 1, "Liver tumor": 2})
    np.testing.assert_array_equal(prediction, expected)
    # The phantom-trained demo model finds nothing in this 3-slice real CT: the log says so.
    assert any("found nothing in this volume" in line for line in log) == (not prediction.any())

    table = logic.compare(node, reference, volume)
    for item, snapshot in before:
        _assert_unchanged(item, snapshot)
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(real_ct_dir / "liver_seg.nrrd")))
    assert truth.shape == prediction.shape and (truth >= 1).sum() == 107_098
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
    assert table.GetNumberOfRows() == len(LITS_SEGMENTS)
    for row, labels in enumerate(LITS_SEGMENTS.values()):
        predicted, expert = np.isin(prediction, labels), np.isin(truth, labels)
        expected_metrics = segmentation_metrics(predicted, expert, geometry.spacing[::-1])
        expected_metrics.update(predicted_ml=predicted.sum() * voxel_ml, reference_ml=expert.sum() * voxel_ml)
        for key, column, _, _ in COLUMNS:
            value = slicer.util.arrayFromTableColumn(table, column)[row]
            if math.isnan(expected_metrics[key]):
                assert math.isnan(value), key
            else:
                assert value == pytest.approx(expected_metrics[key], rel=1e-12, abs=1e-12), key

    # CSV: header of column titles, the same numbers (NaN as an empty field)
    path = logic.exportTableToCsv(table, tmp_path / "out" / "metrics.csv")
    with open(path, newline="", encoding="utf-8") as stream:
        rows = list(csv.reader(stream))
    assert rows[0][0] == "Segment" and "HD95 (mm)" in rows[0] and len(rows) == 1 + table.GetNumberOfRows()
    for row_index, row in enumerate(rows[1:]):
        assert row[0] == table.GetCellText(row_index, 0)
        for (_, column, _, _), text in zip(COLUMNS, row[1:]):
            value = slicer.util.arrayFromTableColumn(table, column)[row_index]
            assert (text == "" and math.isnan(value)) or float(text) == value


def test_cancel_stops_the_process_and_leaves_nothing(slicer_scene, logic, tiny_model, tmp_path) -> None:
    import slicer
    import slicer.util

    image_path, _ = write_phantom(tmp_path / "data", seed=2, shape=(64, 160, 160))
    volume = slicer.util.loadVolume(str(image_path))
    before = _snapshot(volume)
    nodes_before = slicer.mrmlScene.GetNumberOfNodes()
    messages = []
    job = logic.process(
        volume,
        model=str(tiny_model),
        device="cpu",
        waitForCompletion=False,
        progressCallback=lambda fraction, message: messages.append(message),
    )
    assert isinstance(job, SegmentationJob) and logic.isRunning and job.temp_dir.is_dir()
    deadline = time.monotonic() + 120
    while not any(m.startswith("Segmenting") for m in messages):  # wait until windows are being computed
        assert not job.poll(), job.error
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pid = job.command.pid
    logic.cancel()
    assert job.state == job.CANCELLED and not logic.isRunning
    assert job.command.wait_stopped(30)  # Cancel returns at once; a thread reaps the process group
    assert job.command.returncode is not None  # the process ended and was reaped
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # nothing of its process group is left
    assert not job.temp_dir.exists() and not os.listdir(tmp_path / "runs")
    assert slicer.mrmlScene.GetNumberOfNodes() == nodes_before
    assert job.segmentation_node is None
    with pytest.raises(SegmentationCancelled):
        job.wait()
    _assert_unchanged(volume, before)


def test_failing_run_reports_the_error_text(slicer_scene, logic, tmp_path) -> None:
    import slicer
    import slicer.util

    image_path, _ = write_phantom(tmp_path / "data", seed=3, shape=(16, 48, 48))
    volume = slicer.util.loadVolume(str(image_path))
    broken = tmp_path / "broken.json"
    broken.write_text("{ this is not a model card", encoding="utf-8")
    with pytest.raises(SegmentationFailed) as caught:
        logic.process(volume, model=str(broken), device="cpu")
    error = caught.value
    assert error.returncode == 2
    assert "cannot read the model card" in str(error) and str(broken) in str(error)
    assert "cannot read the model card" in error.stderr
    assert slicer.mrmlScene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0
    assert not os.listdir(tmp_path / "runs")


def test_bad_arguments_are_refused_before_anything_runs(slicer_scene, logic, tmp_path) -> None:
    import slicer.util

    image_path, label_path = write_phantom(tmp_path / "data", seed=4, shape=(8, 32, 32))
    volume = slicer.util.loadVolume(str(image_path))
    labels = slicer.util.loadLabelVolume(str(label_path))
    with pytest.raises(ValueError, match="select a CT volume"):
        logic.process(None)
    with pytest.raises(ValueError, match="is a label map"):
        logic.process(labels)
    with pytest.raises(ValueError, match="device must be"):
        logic.process(volume, device="tpu")
    with pytest.raises(ValueError, match="output must be a segmentation"):
        logic.process(volume, outputSegmentation=labels)
    with pytest.raises(ValueError, match="segmentation to evaluate"):
        logic.compare(labels, labels, volume)
    assert not os.listdir(tmp_path / "runs") and not logic.isRunning


def test_a_script_ending_mid_run_leaves_no_process_and_no_files(tmp_path, tiny_model) -> None:
    import json
    import subprocess
    import sys

    image_path, _ = write_phantom(tmp_path / "data", seed=5, shape=(16, 48, 48))
    runs = tmp_path / "runs-script"
    runs.mkdir()
    repo = Path(__file__).resolve().parents[1]
    script = (
        "import json, sys\n"
        "sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
        "from MPUNetSegmentationLib.headless import ensure_slicer\n"
        "ensure_slicer()\n"
        "import slicer.util\n"
        "from MPUNetSegmentationLib.logic import MPUNetLogic\n"
        "volume = slicer.util.loadVolume(sys.argv[3])\n"
        "job = MPUNetLogic(temporaryDirectory=sys.argv[4]).process(\n"
        "    volume, model=sys.argv[5], device='cpu', waitForCompletion=False)\n"
        "print(json.dumps({'pid': job.command.pid, 'temp': str(job.temp_dir)}), flush=True)\n"
    )  # ends without waiting for, or cancelling, the run
    args = [str(repo / "MPUNetSegmentation"), str(repo), str(image_path), str(runs), str(tiny_model)]
    command = [sys.executable, "-c", script, *args]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    started = json.loads(completed.stdout.strip().splitlines()[-1])
    assert started["temp"].startswith(str(runs))
    with pytest.raises(ProcessLookupError):
        os.killpg(started["pid"], 0)
    assert not os.listdir(runs)
