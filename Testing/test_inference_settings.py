"""InferenceSettings: one validated type for the card, the command line, the worker and the Slicer module."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MPUNetCore.cli import main
from MPUNetCore.inference.settings import (
    Blending,
    DeviceKind,
    InferenceSettings,
    InferenceSettingsError,
    Precision,
    parse_device,
)
from MPUNetCore.model_card import BundleError, read_card

ROOT = Path(__file__).resolve().parents[1]
DEMO_CARD = ROOT / "MPUNetCore" / "models" / "demo-phantom.json"


def _card_with_inference(tmp_path: Path, **changes) -> Path:
    data = json.loads(DEMO_CARD.read_text(encoding="utf-8"))
    data["inference"].update(changes)
    path = tmp_path / "card.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_the_demo_card_loads_unchanged_with_its_json_values() -> None:
    raw = json.loads(DEMO_CARD.read_text(encoding="utf-8"))["inference"]
    settings = read_card(DEMO_CARD).inference
    assert list(settings.window) == raw["window"]  # [16, null, null]: null is the full extent
    assert (settings.overlap, settings.blending.value, settings.batch_size) == (
        raw["overlap"],
        raw["blending"],
        raw["batch_size"],
    )
    # keys the card leaves out keep the engine's documented defaults
    assert settings.tta is False and settings.postprocess is True and settings.device == "auto"
    assert settings.precision is Precision.AUTO and settings.crop_to_body is False


def test_a_misspelt_card_key_is_one_line_naming_the_card_the_key_and_the_valid_keys(tmp_path, capsys) -> None:
    path = _card_with_inference(tmp_path, windw=[16, None, None])
    with pytest.raises(BundleError) as caught:
        read_card(path)
    message = str(caught.value)
    assert str(path) in message and "'windw'" in message and "did you mean 'window'" in message
    assert all(key in message for key in InferenceSettings.keys())
    assert main(["info", str(path)]) == 2  # the command line: exit code 2, one line, no traceback
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "windw" in err[0] and "Traceback" not in err[0]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("blending", "linear"),
        ("overlap", 1.0),
        ("overlap", -0.1),
        ("batch_size", 0),
        ("batch_size", 1.5),
        ("window", [16, -8, 8]),
        ("window", "16x16"),
        ("device", "tpu"),
        ("precision", "fp8"),
        ("tta", "yes"),
        ("postprocess", "no"),
        ("body_margin", -1),
    ],
)
def test_bad_values_name_the_source_and_the_key(key, value) -> None:
    with pytest.raises(InferenceSettingsError) as caught:
        InferenceSettings.from_dict({key: value}, source="cases/card.json")
    assert str(caught.value).startswith("cases/card.json: ") and key in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_json_round_trip_and_enum_values() -> None:
    settings = InferenceSettings(
        window=(32, None, 64),
        overlap=0.5,
        blending="constant",
        tta=[[0], [1, 2]],
        device="GPU:1",
        precision="bfloat16",
        click_window=(16, 0, 0),
    )
    assert settings.blending is Blending.CONSTANT and settings.precision is Precision.BFLOAT16
    assert settings.device == "cuda:1" and settings.device_kind is DeviceKind.CUDA
    assert settings.tta == ((0,), (1, 2)) and settings.click_window == (16, None, None)
    text = json.dumps(settings.to_dict())
    assert InferenceSettings.from_dict(json.loads(text)) == settings
    assert json.loads(text)["window"] == [32, None, 64] and json.loads(text)["blending"] == "constant"
    with pytest.raises(AttributeError):
        settings.overlap = 0.1  # frozen
    assert parse_device("cuda:0") == (DeviceKind.CUDA, 0) and parse_device("auto") == (DeviceKind.AUTO, None)


def test_replace_validates_and_names_unknown_keys() -> None:
    base = InferenceSettings()
    assert base.replace(tta=True).tta is True and base.tta is False  # a copy
    with pytest.raises(InferenceSettingsError, match="'overlpa' \\(did you mean 'overlap'\\?\\)"):
        base.replace(overlpa=0.5)
    with pytest.raises(InferenceSettingsError, match="overlap must be in"):
        base.replace(overlap=2)


def test_the_settings_module_and_the_card_import_no_torch() -> None:
    code = (
        "import sys, MPUNetCore.inference.settings, MPUNetCore.model_card; "
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_the_worker_applies_request_settings_and_names_an_unknown_one(tmp_path) -> None:
    from MPUNetCore.phantom import make_phantom
    from MPUNetCore.worker import ModelWorker

    image, _ = make_phantom(5, shape=(16, 64, 64))
    sitk.WriteImage(image, str(tmp_path / "ct.nrrd"))
    worker = ModelWorker(str(DEMO_CARD), device="cpu", out=io.StringIO())
    assert worker.settings == read_card(DEMO_CARD).inference.replace(device="cpu", postprocess=False)
    requests = [
        {"id": 1, "op": "segment", "input": str(tmp_path / "ct.nrrd"), "output": str(tmp_path / "a.nrrd")},
        {"id": 2, "op": "segment", "input": str(tmp_path / "ct.nrrd"), "output": str(tmp_path / "b.nrrd"),
         "windw": [16, 64, 64]},
        {"id": 3, "op": "segment", "input": str(tmp_path / "ct.nrrd"), "output": str(tmp_path / "c.nrrd"),
         "window": [16, 0, 0], "overlap": 0.5},
    ]  # fmt: skip
    worker.serve(io.StringIO("".join(json.dumps(r) + "\n" for r in requests)))
    events = [json.loads(line) for line in worker.out.getvalue().splitlines()][1:]
    assert [e["event"] for e in events] == ["done", "error", "done"]
    assert "request 2: unknown inference setting(s) 'windw'" in events[1]["message"]
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "a.nrrd")))
    c = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "c.nrrd")))
    assert a.shape == c.shape == (16, 64, 64) and not (tmp_path / "b.nrrd").exists()
    assert np.isin(a, [0, 1, 2]).all()


def test_slicer_options_carry_the_settings_into_the_command_line() -> None:
    from MPUNetSegmentationLib.process import SegmentationOptions

    options = SegmentationOptions.create("demo-phantom", device="GPU", tta=True, postprocess=False)
    assert options.settings == InferenceSettings(device="cuda", tta=True, postprocess=False)
    args = options.command("python", Path("in.nrrd"), Path("out.nrrd"))
    assert args[args.index("--device") + 1] == "cuda" and "--tta" in args and "--no-postprocess" in args
    plain = SegmentationOptions.create().command("python", Path("in.nrrd"), Path("out.nrrd"))
    assert "--tta" not in plain and "--no-postprocess" not in plain
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda"):
        SegmentationOptions.create(device="tpu")
