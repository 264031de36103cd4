"""Tests of Training/: configs, data discovery, the training loop, exact resume, DDP, evaluate/export/report.

Everything runs for real on a few small phantoms (MPUNetCore.phantom) with a reduced-width MPU-Net
and tiny patches; one training process is killed with SIGKILL and resumed.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from Testing.child_env import child_env
from Training.config import ConfigError, load_config, save_config
from Training.data import discover_pairs, split_cases

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("lits_mpunet_released", "lits_mpunet_paper", "lits_unet", "phantom_demo", "phantom_demo_v02")

SMALL = """
[experiment]
name = "small"
output_dir = "{out}"
seed = 3
[data]
root = "{root}"
task = "liver_tumor"
split = [4, 1, 1]
min_slices = 4
crop_margin = 2
[preprocessing]
inplane_factor = 0.5
slice_spacing = "none"
[model]
network = "MPUNet"
channels = [4, 8, 16, 32, 64]
[train]
epochs = {epochs}
samples_per_epoch = 4
batch_size = 2
patch = [16, 32, 32]
lr = 1e-3
scheduler = "step"
step_size = 2
threads = 1
[augment]
rotate_prob = 0.5
intensity_prob = 0.5
[inference]
window = [16, 0, 0]
"""


@pytest.fixture(scope="module")
def lits_dir(tmp_path_factory) -> Path:
    """Six phantom cases in the LiTS naming, plus a pair on different grids and an unpaired volume."""
    from MPUNetCore.phantom import write_lits_folder

    folder = tmp_path_factory.mktemp("lits")
    write_lits_folder(folder, cases=6, seed=0, shape=(32, 64, 64))
    shutil.copy(folder / "volume-0.nii.gz", folder / "volume-6.nii.gz")
    label = sitk.ReadImage(str(folder / "segmentation-0.nii.gz"))
    label.SetSpacing([s * 1.5 for s in label.GetSpacing()])
    sitk.WriteImage(label, str(folder / "segmentation-6.nii.gz"))
    shutil.copy(folder / "volume-1.nii.gz", folder / "volume-7.nii.gz")
    return folder


def _config_file(tmp: Path, root: Path, epochs: int) -> Path:
    path = tmp / f"small_{epochs}.toml"
    path.write_text(SMALL.format(out=tmp / "runs", root=root, epochs=epochs), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------- configs


def test_bundled_configs_load_and_build(tmp_path):
    from MPUNetCore.bundle import build_network
    from Training.models import architecture

    for name in CONFIGS:
        config = load_config(name, [f"data.root={tmp_path}"])
        model = build_network(architecture(config))
        for size in (*config.train.patch, *(w for w in config.inference.window if w)):
            assert size % model.input_multiple == 0, (name, size)
    demo = load_config("phantom_demo")
    assert demo.data.phantom_cases > 0 and demo.data.task == "liver_tumor"


def test_overrides_are_typed_and_validated(tmp_path):
    from Training.models import make_loss

    config = load_config(
        "lits_unet",
        [f"data.root={tmp_path}", "train.epochs=7", "train.lr=3e-4", "train.patch=16,32,32",
         "preprocessing.slice_spacing=none", "inference.postprocess=false", "model.channels=[4, 8, 16, 32]"],
    )  # fmt: skip
    assert config.train.epochs == 7 and isinstance(config.train.epochs, int)
    assert config.train.lr == pytest.approx(3e-4) and config.train.patch == (16, 32, 32)
    assert config.preprocessing.slice_spacing is None and config.inference.postprocess is False
    assert config.model.channels == (4, 8, 16, 32)
    saved = save_config(config, tmp_path / "resolved.toml")  # the round trip is exact
    assert load_config(saved) == config
    with pytest.raises(ConfigError, match="valid keys of \\[train\\]: epochs, batch_size"):
        load_config("lits_unet", [f"data.root={tmp_path}", "train.epoch=3"])
    with pytest.raises(ConfigError, match="unknown section \\[trian\\]; valid sections: experiment"):
        load_config("lits_unet", [f"data.root={tmp_path}", "trian.epochs=3"])
    with pytest.raises(ConfigError, match="train.epochs = '1.5' is invalid"):
        load_config("lits_unet", [f"data.root={tmp_path}", "train.epochs=1.5"])
    with pytest.raises(ConfigError, match="not one of auto, float32, bfloat16, float16"):
        load_config("lits_unet", [f"data.root={tmp_path}", "train.amp=half"])
    for fusion, tversky_on in (("mean", "mean"), ("learned", "last")):  # Tversky on what is predicted
        assert make_loss(load_config("phantom_demo", [f"model.fusion={fusion}"])).tversky_on == tversky_on
    with pytest.raises(ConfigError, match="model.fusion must be"):
        load_config("phantom_demo", ["model.fusion=max"])
    weighted = load_config("phantom_demo", ["loss.class_weight_values=1,1,4"])
    assert make_loss(weighted)._fixed_class_weights.tolist() == [1.0, 1.0, 4.0]
    with pytest.raises(ConfigError, match="needs 3 weights >= 0"):
        load_config("phantom_demo", ["loss.class_weight_values=1,4"])
    with pytest.raises(ConfigError, match="data.root is empty"):
        load_config("lits_unet")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


# -------------------------------------------------------------------------------------------- data


def test_discovery_lits_and_msd_layouts(lits_dir, tmp_path):
    pairs, problems = discover_pairs(lits_dir)
    assert [p.name for p in pairs] == [f"volume-{k}" for k in range(7)]
    assert len(problems) == 1 and "volume-7.nii.gz has no segmentation-7" in problems[0]
    msd = tmp_path / "Task03_Liver"
    (msd / "imagesTr").mkdir(parents=True)
    (msd / "labelsTr").mkdir()
    for k in range(3):
        shutil.copy(lits_dir / f"volume-{k}.nii.gz", msd / "imagesTr" / f"liver_{k}.nii.gz")
        shutil.copy(lits_dir / f"segmentation-{k}.nii.gz", msd / "labelsTr" / f"liver_{k}.nii.gz")
    (msd / "imagesTr" / "._liver_0.nii.gz").write_bytes(b"macOS resource fork")
    shutil.copy(lits_dir / "volume-3.nii.gz", msd / "imagesTr" / "liver_3.nii.gz")
    pairs, problems = discover_pairs(msd)
    assert [p.name for p in pairs] == ["liver_0", "liver_1", "liver_2"]
    assert pairs[1].label == msd / "labelsTr" / "liver_1.nii.gz"
    assert len(problems) == 1 and "liver_3.nii.gz has no label" in problems[0]
    with pytest.raises(ValueError, match="neither the LiTS naming"):
        discover_pairs(tmp_path / "Task03_Liver" / "labelsTr")


def test_split_is_seeded_and_proportional():
    names = [f"case-{k}" for k in range(130)]
    split = split_cases(names, (88, 22, 20), seed=0)
    assert [len(split[p]) for p in ("train", "val", "test")] == [88, 22, 20]
    assert sorted(sum(split.values(), [])) == sorted(names)
    assert split == split_cases(list(reversed(names)), (88, 22, 20), seed=0)
    assert split != split_cases(names, (88, 22, 20), seed=1)


class _ArrayCase:
    """An in-memory case with the three arrays PatchSampler reads (instead of a cache on disk)."""

    def __init__(self, label: np.ndarray) -> None:
        self._label = label

    def image(self) -> np.ndarray:
        return self._label.astype(np.float32)

    def label(self) -> np.ndarray:
        return self._label

    def foreground(self) -> dict:
        return {"liver": np.argwhere(self._label >= 1), "tumor": np.argwhere(self._label == 2)}


def test_tumor_prob_steers_foreground_patches_to_tumours():
    from Training.config import AugmentConfig
    from Training.sampling import PatchSampler

    label = np.zeros((32, 64, 64), np.uint8)
    label[2:30, 4:60, 4:60] = 1
    label[24:27, 50:54, 50:54] = 2  # one small tumour in a corner of a large liver
    augment = AugmentConfig(flip_prob=0.0, rotate_prob=0.0, intensity_prob=0.0)

    def tumour_share(tumor_prob: float) -> float:
        sampler = PatchSampler(
            [_ArrayCase(label)], (8, 16, 16), "liver_tumor", augment, 1.0, 0.0, 5, tumor_prob
        )
        hits = [bool((sampler.sample(0, k, 0)[1] == 2).any()) for k in range(60)]
        return sum(hits) / len(hits)

    assert tumour_share(1.0) == 1.0  # every patch is centred (with jitter) on a tumour voxel
    assert tumour_share(0.0) < 0.2  # liver-centred patches rarely reach the corner
    assert 0.35 < tumour_share(0.5) < 0.85


def test_patches_of_a_thin_case_repeat_its_edge_slices_along_z_and_air_in_plane():
    """A 3-slice case in a 9-slice patch: every patch slice is one of the case's slices (the nearest
    one beyond its ends), image and label alike, as inference pads windows; in-plane the patch is
    larger than the case and the rest is air (pad_value) with background label."""
    from Training.config import AugmentConfig
    from Training.sampling import PatchSampler

    label = np.zeros((3, 6, 6), np.uint8)
    label[:, 1:5, 1:5] = 1
    label[0, 2, 2], label[2, 3, 3] = 2, 2  # the first and last slices differ
    case = _ArrayCase(label)
    augment = AugmentConfig(flip_prob=0.0, rotate_prob=0.0, intensity_prob=0.0)
    sampler = PatchSampler([case], (9, 10, 10), "liver_tumor", augment, 0.0, -7.0, 3)
    for position in range(5):
        x, y = sampler.sample(0, position, 0)
        x, y = x[0].numpy(), y.numpy()
        inside = np.argwhere((y == 1).any(axis=0))
        y0, x0 = inside.min(axis=0) - 1  # where the case's in-plane origin landed in the patch
        z_of_case = [
            next(k for k in range(3) if (x[i, y0 : y0 + 6, x0 : x0 + 6] == label[k]).all()) for i in range(9)
        ]
        # the case starts at patch slice k: k + 1 copies of its first slice, its middle one, then its last
        k = z_of_case.count(0) - 1
        assert z_of_case == [0] * (k + 1) + [1] + [2] * (7 - k)
        assert (y[:, y0 : y0 + 6, x0 : x0 + 6] == label[z_of_case]).all()
        outside = np.ones((10, 10), bool)
        outside[max(y0, 0) : y0 + 6, max(x0, 0) : x0 + 6] = False
        assert (x[:, outside] == -7.0).all() and (y[:, outside] == 0).all()


# --------------------------------------------------------------------------------- train and resume


def _wait_and_kill(process: subprocess.Popen, metrics: Path, rows: int, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.exists() and len(metrics.read_text().strip().splitlines()) - 1 >= rows:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait(timeout=60)


@pytest.mark.slow
def test_train_kill_resume_evaluate_export_report(lits_dir, tmp_path):
    from MPUNetCore.bundle import load_bundle
    from MPUNetCore.pipeline import segment_volume
    from MPUNetCore.volume_io import read_label_map, read_volume
    from Training.cli import main
    from Training.trainer import train

    epochs = 6
    config_file = _config_file(tmp_path, lits_dir, epochs)
    # An uninterrupted run, in this process.
    full = train(load_config(config_file), tmp_path / "runs" / "full", progress="none")
    # The same run in a child process, killed (SIGKILL) after its second epoch, then resumed.
    killed_dir = tmp_path / "runs" / "killed"
    child = subprocess.Popen(
        [sys.executable, "-m", "Training", "train", "--config", str(config_file),
         "--run-dir", str(killed_dir), "--progress", "none"],
        cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    _wait_and_kill(child, killed_dir / "metrics.csv", rows=2)
    assert child.returncode == -signal.SIGKILL, child.stdout.read().decode()[-2000:]
    stopped_after = torch.load(killed_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"]
    assert 1 <= stopped_after < epochs  # metrics.csv row 2 is written just before checkpoint 2
    assert main(["train", "--resume", "--run-dir", str(killed_dir), "--progress", "none"]) == 0

    a = torch.load(full / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(killed_dir / "checkpoints" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == epochs
    assert a["model"].keys() == b["model"].keys()
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), f"{key} differs after kill + resume"
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]

    # The data report names the pair on different grids; the split holds only usable cases.
    report = (full / "data_report.json").read_text()
    assert "volume-6" in report and "differs from label spacing" in report and "volume-7" in report
    split = json.loads((full / "split.json").read_text())
    assert sorted(split["train"] + split["val"] + split["test"]) == [f"volume-{k}" for k in range(6)]

    # Validation ran every epoch with every metric; the CSV has one row per epoch.
    lines = (full / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    for column in ("val_liver_dice", "val_liver_hd95", "val_tumor_assd", "train_liver_mcc", "epoch_time_s"):
        assert column in header
    assert len(lines) == epochs + 1
    dice = float(lines[-1].split(",")[header.index("val_liver_dice")])
    assert 0.0 <= dice <= 1.0

    # evaluate: per-case test metrics on the original grid, checked against SimpleITK's Dice.
    assert main(["evaluate", str(full), "--progress", "none"]) == 0
    rows = (full / "evaluation" / "test_cases.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * len(split["test"])  # liver and tumour per case
    assert (full / "evaluation" / "test.md").read_text(encoding="utf-8").count("paper Table 8") == 2

    # export: a bundle that load_bundle accepts and that segments a CT on its own grid.
    assert main(["export", str(full)]) == 0
    card = full / "export" / "small.json"
    bundle = load_bundle(card)
    assert [c.name for c in bundle.card.classes] == ["Background", "Liver", "Liver tumor"]
    assert "test" in bundle.card.metrics
    assert bundle.card.training["checkpoint"] == "best"

    # export --checkpoint last: the end-of-schedule weights; test metrics only once evaluate measured them.
    last_card = tmp_path / "last" / "small.json"
    assert main(["export", str(full), "--checkpoint", "last", "--output", str(last_card)]) == 0
    last = load_bundle(last_card)
    assert last.card.training["checkpoint"] == "last" and last.card.training["checkpoint_epoch"] == epochs
    assert "test" not in last.card.metrics and "validation_last_epoch" in last.card.metrics
    for key, value in a["model"].items():  # a: the last checkpoint of this run
        assert torch.equal(last.model.state_dict()[key].cpu(), value), key
    assert main(["evaluate", str(full), "--checkpoint", "last", "--progress", "none"]) == 0
    assert main(["export", str(full), "--checkpoint", "last", "--output", str(last_card), "--overwrite"]) == 0
    assert "test" in load_bundle(last_card).card.metrics

    case = split["test"][0]
    volume = read_volume(lits_dir / f"{case}.nii.gz")
    labels = segment_volume(volume, bundle, device="cpu")
    assert labels.shape == volume.array.shape and set(np.unique(labels)) <= {0, 1, 2}
    reference = read_label_map(lits_dir / f"{case.replace('volume', 'segmentation')}.nii.gz").array
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    pred_liver = (labels >= 1).astype(np.uint8)
    if pred_liver.any():
        overlap.Execute(
            sitk.GetImageFromArray(pred_liver), sitk.GetImageFromArray((reference >= 1).astype(np.uint8))
        )
        expected = overlap.GetDiceCoefficient()
    else:
        expected = 0.0
    liver_row = next(r for r in rows[1:] if r.startswith(f"{case},liver,"))
    assert float(liver_row.split(",")[2]) == pytest.approx(expected, abs=1e-4)

    # report: PNG figures and the Markdown tables of both runs.
    out = tmp_path / "report"
    assert main(["report", str(full), str(killed_dir), "--output", str(out)]) == 0
    pngs = sorted(out.glob("*.png"))
    assert {"convergence_liver.png", "radar_liver.png"} <= {p.name for p in pngs}
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "paper Table 6" in text and "paper Table 7" in text and "Table 9" in text


@pytest.mark.slow
def test_channels_last_training_computes_the_same(lits_dir, tmp_path):
    from Training.cli import main
    from Training.config import load_config
    from Training.models import make_loss, make_network, memory_format
    from Training.runfolder import read_csv

    config_file = _config_file(tmp_path, lits_dir, epochs=1)
    # One training step in both memory layouts, against a float64 reference of the same step. The loss
    # agrees to float32 rounding. Gradients do too in the default layout (1.5e-5 of the largest gradient
    # norm), but channels-last CPU kernels reduce less accurately: conv weights in front of a batch norm
    # were off by up to 1.8e-2 of it with 1 thread (2.4e-4 with 2), so the bound here is loose - it
    # catches a wrong layout (errors of order 1), not rounding. No dropout: its masks follow the layout.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = {}
        for layout, dtype in (("false", torch.float64), ("false", torch.float32), ("true", torch.float32)):
            config = load_config(config_file, [f"train.channels_last={layout}", "model.dropout=0"])
            fmt = memory_format(config)
            model = make_network(config).to(dtype=dtype, memory_format=fmt)
            x = torch.randn(2, 1, 16, 32, 32, generator=torch.Generator().manual_seed(0))
            y = (x[:, 0] > 0.5).long() + (x[:, 0] > 1.5).long()
            loss = make_loss(config)(model(x.to(dtype).contiguous(memory_format=fmt)), y)
            loss.backward()
            results[layout, dtype] = (
                float(loss.detach()),
                {k: p.grad.double() for k, p in model.named_parameters()},
            )
    finally:
        torch.set_num_threads(threads)
    ref_loss, ref_grads = results["false", torch.float64]
    scale = max(float(g.norm()) for g in ref_grads.values())
    for key, bound in ((("false", torch.float32), 1e-4), (("true", torch.float32), 5e-2)):
        loss, grads = results[key]
        assert loss == pytest.approx(ref_loss, rel=1e-5)
        worst = max(float((grads[k] - g).norm()) for k, g in ref_grads.items()) / scale
        assert worst < bound, (key, worst)
    # The trainer honours the option; a run's loss stays close (Adam's first steps amplify rounding).
    runs = {layout: tmp_path / "runs" / f"channels_last_{layout}" for layout in ("false", "true")}
    for layout, run in runs.items():
        options = ["--run-dir", str(run), "--progress", "none", "--set", f"train.channels_last={layout}"]
        assert main(["train", "--config", str(config_file), *options]) == 0
    default, channels_last = (read_csv(run / "metrics.csv")[-1] for run in runs.values())
    assert channels_last["train_loss"] == pytest.approx(default["train_loss"], rel=0.02)
    weights = torch.load(runs["true"] / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert weights["encoders.1.layers.0.weight"].is_contiguous(memory_format=torch.channels_last_3d)


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(lits_dir, tmp_path):
    from MPUNetCore.bundle import load_bundle
    from Training.cli import main

    config_file = _config_file(tmp_path, lits_dir, epochs=2)
    run = tmp_path / "runs" / "ddp"
    command = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "Training", "train"]
    options = ["--run-dir", str(run), "--progress", "none", "--set", "data.split=3,2,1"]  # 2 val cases
    result = subprocess.run(
        [sys.executable, *command, "--config", str(config_file), *options],
        cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    info = json.loads((run / "run_info.json").read_text())
    assert info["world_size"] == 2
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and len(state["history"]) == 2
    # Validation was sharded (one case per process); its scores equal one process validating both.
    from Training import distributed
    from Training.config import load_config
    from Training.models import make_network
    from Training.prepare import prepare_data
    from Training.runfolder import RunFolder, read_csv
    from Training.validation import validate

    config = load_config(run / "config.toml")
    data = prepare_data(config, RunFolder(run), distributed.Context(), progress="none")
    assert len(data.parts["val"]) == 2
    model = make_network(config)
    model.load_state_dict(state["model"])
    expected, rows = validate(model, data.parts["val"], config, torch.device("cpu"))
    logged = read_csv(run / "metrics.csv")[-1]
    for key, value in expected.items():
        assert logged[key] == pytest.approx(value, rel=1e-5, abs=1e-6, nan_ok=True), key
    cases = read_csv(run / "val_cases.csv")
    per_class = [name for name in data.split["val"] for _ in ("liver", "tumor")]
    assert [r["case_id"] for r in cases] == [r["case_id"] for r in rows] == per_class
    for logged_row, row in zip(cases, rows):
        for key in ("tp", "fp", "fn", "dice", "hd95"):
            assert logged_row[key] == pytest.approx(row[key], rel=1e-5, abs=1e-6, nan_ok=True), key
    assert main(["export", str(run)]) == 0
    bundle = load_bundle(run / "export" / "small.json")
    for key, value in bundle.model.state_dict().items():
        assert torch.equal(
            value, torch.load(run / "checkpoints" / "best.pt", weights_only=True)["model"][key]
        )


def test_phantom_demo_generates_anatomical_phantoms_into_the_given_folder(tmp_path):
    from MPUNetCore.phantoms import write_lits_folder as anatomical
    from Training.prepare import make_phantoms

    overrides = ["data.phantom_cases=2", "data.phantom_shape=12,64,64", "data.phantom_slabs=0.5"]
    config = load_config("phantom_demo", overrides)
    assert config.data.phantom_generator == "anatomical"
    make_phantoms(config, tmp_path / "run" / "phantoms")
    data = config.data
    assert data.phantom_recess and data.phantom_steatosis > 0  # the recipe asks for both
    expected = anatomical(
        tmp_path / "ref", 2, seed=0, shape=(12, 64, 64), synthseg_fraction=data.phantom_synthseg,
        slab_fraction=0.5, recess=tuple(data.phantom_recess), steatosis=data.phantom_steatosis,
    )  # fmt: skip
    for volume, label in expected:
        for path in (volume, label):
            ours = sitk.ReadImage(str(tmp_path / "run" / "phantoms" / path.name))
            np.testing.assert_array_equal(
                sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
            )
    assert sorted(p.name for p in (tmp_path / "run").rglob("*.nii.gz")) == sorted(
        p.name for pair in expected for p in pair
    )
