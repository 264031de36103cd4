"""Bad-input catalogue, the Slicer module's words (issue 10, messages).

The module runs ``mpunet segment`` in a background process, whose refusals name command-line options
(``--fill-nonfinite``, ``--max-memory``, ``--batch-size``) that the module has no control for. These tests
run the module's Logic against the real MRML of the slicer-core wheel and a real background process, and
check that the message keeps the diagnosis but gives a fix the user can carry out in Slicer; the NaN
fix is carried out literally and must make the same volume segment.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from Testing.slicer_models import phantom_ct, save_like, write_tiny_bundle

COMMAND_LINE_OPTION = re.compile(r"--[a-z]")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_tiny_bundle(tmp_path_factory.mktemp("model"))


@pytest.fixture()
def phantom() -> sitk.Image:
    return phantom_ct()


def _process(tmp_path: Path, volume, model: Path):
    from MPUNetSegmentationLib.logic import MPUNetLogic

    runs = tmp_path / "runs"
    runs.mkdir(exist_ok=True)
    return MPUNetLogic(temporaryDirectory=str(runs)).process(volume, model=str(model), device="cpu")


def test_nan_refusal_says_how_to_fix_the_volume_in_slicer_and_that_fix_works(
    slicer_scene, tiny_model, tmp_path, phantom
):
    import numpy  # the advice's console code names it so
    import slicer
    import slicer.util
    from MPUNetSegmentationLib.process import SegmentationFailed

    array = sitk.GetArrayFromImage(phantom).astype(np.float32)
    array[2:4, 5:9, 10:13] = np.nan  # 24 voxels
    volume = slicer.util.loadVolume(str(save_like(array, phantom, tmp_path / "nan-ct.nrrd")))
    with pytest.raises(SegmentationFailed) as caught:
        _process(tmp_path, volume, tiny_model)
    message = str(caught.value)
    assert "volume 'nan-ct' has 24 voxels that are NaN or infinite" in message  # the diagnosis stays
    assert not COMMAND_LINE_OPTION.search(message), message
    code = re.search(r"Python console: (.*)\.$", message, re.MULTILINE).group(1)
    exec(code, {"slicer": slicer, "numpy": numpy, "node": volume})  # the user's fix, as written
    assert np.isfinite(slicer.util.arrayFromVolume(volume)).all()
    assert _process(tmp_path, volume, tiny_model) is not None


def test_memory_budget_refusal_names_no_option_the_module_lacks(slicer_scene, tiny_model, tmp_path, phantom):
    import slicer.util
    from MPUNetSegmentationLib.process import SegmentationFailed

    phantom.SetSpacing((1.0, 1.0, 1e6))  # 12 slices become 12e6 network slices: no machine has the memory
    source = save_like(sitk.GetArrayFromImage(phantom), phantom, tmp_path / "far.nrrd")
    volume = slicer.util.loadVolume(str(source))
    with pytest.raises(SegmentationFailed) as caught:
        _process(tmp_path, volume, tiny_model)
    message = str(caught.value)
    assert caught.value.returncode == 2 and "volume 'far': the run would need about" in message
    assert "Check the voxel spacing" in message and "run on a machine with more memory" in message
    assert not COMMAND_LINE_OPTION.search(message), message


@pytest.mark.parametrize(
    "error, fix",
    [
        (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "set Device to CPU"),
        (MemoryError(), "close other programs"),
    ],
)
def test_out_of_memory_advice_is_said_in_module_words(error, fix):
    from MPUNetSegmentationLib.advice import module_advice

    from MPUNetCore.memory import memory_error_message

    line = memory_error_message(error, "volume 'ct'")
    assert "--batch-size" in line  # the command line's own advice, as `mpunet segment` prints it
    said = module_advice(line)
    assert said.startswith("volume 'ct' ran out of") and fix in said and "Crop Volume" in said
    assert not COMMAND_LINE_OPTION.search(said), said


def test_header_size_refusal_is_said_in_module_words(tmp_path, phantom):
    from MPUNetSegmentationLib.advice import module_advice

    from MPUNetCore.volume_io import VolumeError, read_volume

    source = save_like(sitk.GetArrayFromImage(phantom), phantom, tmp_path / "ct.nrrd")
    with pytest.raises(VolumeError) as caught:
        read_volume(source, max_memory="1K")
    assert "--max-memory" in str(caught.value)
    said = module_advice(str(caught.value))
    assert "run on a machine with more memory" in said and not COMMAND_LINE_OPTION.search(said), said
