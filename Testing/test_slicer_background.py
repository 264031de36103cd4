"""Cancel never blocks, and a run never outlives its scene (real processes, Slicer's real MRML).

Covered: :meth:`BackgroundCommand.stop` with ``wait=False`` returns at once even when the process group
ignores the interrupt (a shell that ignores SIGINT/SIGTERM and its child ``sleep``), and a thread then kills
and reaps the whole group; ``MPUNetLogic.cancel`` of a run returns at once in the same situation (the run's
"Python" is such a shell script: a real process that is slow to die, standing in for a model run stuck in
native code) and the temporary folder goes once the group is reaped; closing the scene during a real
segmentation run (tiny model, real background process) cancels it without an error and nothing lands in the
new scene; a run that finished just before the scene closed, or whose input left the scene, is dropped.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest
from MPUNetSegmentationLib.background import BackgroundCommand
from MPUNetSegmentationLib.logic import MPUNetLogic
from MPUNetSegmentationLib.process import SegmentationCancelled

from Testing.slicer_models import write_phantom, write_tiny_bundle

pytestmark = pytest.mark.skipif(os.name == "nt", reason="process groups and signals are POSIX here")

STUBBORN = "trap '' INT TERM; echo ready; exec sleep 60"  # ignores Ctrl+C and SIGTERM; sleep inherits it


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for_line(command: BackgroundCommand, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(line == text for line in command.stdout_lines + command.stderr_lines):
        command.read_lines()
        assert time.monotonic() < deadline, f"no {text!r} from {command.args}"
        time.sleep(0.01)


def test_stop_without_waiting_returns_at_once_and_reaps_the_group() -> None:
    grace = 1.5
    blocking = BackgroundCommand(["sh", "-c", STUBBORN])
    blocking.start()
    _wait_for_line(blocking, "ready")
    started = time.monotonic()
    blocking.stop(grace=grace)  # the reference: the blocking stop waits out the grace period
    assert time.monotonic() - started >= grace and not _group_alive(blocking.pid)

    command = BackgroundCommand(["sh", "-c", STUBBORN])
    command.start()
    _wait_for_line(command, "ready")
    stopped_callbacks = []
    started = time.monotonic()
    command.stop(grace=grace, wait=False, on_stopped=lambda: stopped_callbacks.append(time.monotonic()))
    returned = time.monotonic() - started
    assert returned < 0.2, f"stop(wait=False) took {returned:.2f} s"
    assert command.returncode is None and _group_alive(command.pid)  # it ignored the interrupt
    assert command.wait_stopped(grace + 10)
    assert stopped_callbacks and stopped_callbacks[0] - started >= grace  # killed after the grace period
    assert command.returncode is not None and not _group_alive(command.pid)
    command.stop(wait=False)  # again: harmless


@pytest.fixture
def ct_volume(slicer_scene, tmp_path):
    import slicer.util

    image_path, _ = write_phantom(tmp_path / "data", seed=2, shape=(64, 160, 160))
    return slicer.util.loadVolume(str(image_path))


def test_cancel_of_a_run_returns_at_once(slicer_scene, ct_volume, tmp_path) -> None:
    python = tmp_path / "stubborn-python"  # what a run stuck in native code looks like to Cancel
    python.write_text("#!/bin/sh\ntrap '' INT TERM\necho ready >&2\nexec sleep 60\n")
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "runs").mkdir()
    logic = MPUNetLogic(pythonExecutable=str(python), temporaryDirectory=str(tmp_path / "runs"))
    nodes_before = slicer_scene.GetNumberOfNodes()
    job = logic.process(ct_volume, waitForCompletion=False)
    job.cancel_grace = 1.0
    _wait_for_line(job.command, "ready")
    started = time.monotonic()
    logic.cancel()
    returned = time.monotonic() - started
    assert returned < 0.2, f"Cancel took {returned:.2f} s"
    assert job.state == job.CANCELLED and not logic.isRunning and job.poll()
    assert _group_alive(job.command.pid)  # still there: the waiting is the reaper thread's
    assert job.command.wait_stopped(15)
    assert not _group_alive(job.command.pid) and not os.listdir(tmp_path / "runs")
    assert slicer_scene.GetNumberOfNodes() == nodes_before


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_tiny_bundle(tmp_path_factory.mktemp("model"))


def _segmentations(scene) -> int:
    return scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems()


def test_closing_the_scene_during_a_run_cancels_it_without_error(
    slicer_scene, ct_volume, tiny_model, tmp_path
) -> None:
    import slicer.util

    os.environ["OMP_NUM_THREADS"] = "1"
    logic = MPUNetLogic(temporaryDirectory=str(tmp_path))
    messages = []
    job = logic.process(
        ct_volume,
        model=str(tiny_model),
        device="cpu",
        waitForCompletion=False,
        progressCallback=lambda fraction, message: messages.append(message),
    )
    deadline = time.monotonic() + 120
    while not any(m.startswith("Segmenting") for m in messages):  # the model is running
        assert not job.poll(), job.error
        assert time.monotonic() < deadline
        time.sleep(0.05)
    slicer_scene.Clear(False)  # File > Close Scene
    assert job.state == job.CANCELLED and "scene was closed" in job.cancel_reason
    assert not logic.isRunning and job.poll() and job.error is None
    with pytest.raises(SegmentationCancelled):
        job.wait()
    assert job.command.wait_stopped(30) and not _group_alive(job.command.pid)
    assert not job.temp_dir.exists()
    slicer.util.loadVolume(str(write_phantom(tmp_path / "next", seed=3, shape=(32, 64, 64))[0]))
    assert job.poll() and _segmentations(slicer_scene) == 0  # nothing lands in the next scene


@pytest.mark.parametrize("how", ["close scene", "remove input"])
def test_a_finished_run_whose_scene_is_gone_is_dropped(
    slicer_scene, ct_volume, tiny_model, tmp_path, how
) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    logic = MPUNetLogic(temporaryDirectory=str(tmp_path))
    job = logic.process(ct_volume, model=str(tiny_model), device="cpu", waitForCompletion=False)
    assert job.command.wait(timeout=300) == 0  # the process is done; its result is not imported yet
    if how == "close scene":
        slicer_scene.Clear(False)
    else:
        slicer_scene.RemoveNode(ct_volume)
    assert job.poll() and job.state == job.CANCELLED and job.segmentation_node is None
    assert _segmentations(slicer_scene) == 0
    assert job.command.wait_stopped(10) and not job.temp_dir.exists()


def test_scripts_may_still_wait_for_the_stop(tmp_path) -> None:
    command = BackgroundCommand(
        [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"]
    )
    command.start()
    _wait_for_line(command, "ready")
    command.stop(grace=5.0)  # Python stops on Ctrl+C: the blocking stop returns as soon as it has
    assert command.stopped.is_set() and command.returncode is not None and not _group_alive(command.pid)
