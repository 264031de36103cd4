"""One GPU check in one call (issue 14, item 8): whole-command speed, half precision, compile, training.

Sections (each timed, each failure recorded without stopping the others; the summary is rewritten
after every section, so a run cut short still leaves what it measured in ``--out``):

1. ``segment``: ``mpunet segment --profile`` of a 512 x 512 x 400 phantom CT (0.8 x 0.8 x 1 mm) with the
   full-width released MPU-Net (random weights; released grid: in-plane x0.5, 1 mm slices; window
   48 x 256 x 256, overlap 0.25) on ``--device``: whole-command wall time and the profile's stages.
2. ``precision``: the demo weights in the released structure (bench_inference's set-up) on the same CT,
   float32 against bfloat16 and float16 autocast: liver and tumour Dice of the labels (goal >= 0.999).
3. ``compile`` (run last: compiling can take minutes): ``torch.compile`` of the full-width model,
   first (compiling) and second run of the network against eager, and the largest probability
   difference.
4. ``train``: one epoch of 88 patches (48 x 256 x 256, batch 1, Adam: the paper's settings) of the
   released structure on anatomical phantoms, ``python -m Training train``; ``train_time_s`` from the
   run's metrics (the paper: 107 s per epoch on a Quadro RTX 6000).

``--tiny`` shrinks every size so that the CPU path runs in a minute (to know the script works).
Example: ``python benchmarks/gpu_check.py --device cuda --out $OUT``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FULL = dict(
    ct=(400, 512, 512),
    window=(48, 256, 256),
    channels=None,
    train_shape=(64, 512, 512),
    patch=(48, 256, 256),
    samples=88,
    cases=6,
)
TINY = dict(
    ct=(24, 64, 64),
    window=(16, 32, 32),
    channels=(4, 8, 16, 32, 64),
    train_shape=(24, 64, 64),
    patch=(16, 32, 32),
    samples=2,
    cases=3,
)
DEMO_WEIGHTS = REPO / "MPUNetCore" / "models" / "demo-phantom.pt"


def env() -> Dict[str, str]:
    """This environment with the repository importable."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join((str(REPO), os.environ.get("PYTHONPATH", ""))))


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def info(args: argparse.Namespace, work: Path, size: dict) -> Dict[str, Any]:
    import torch

    out: Dict[str, Any] = dict(torch=torch.__version__, python=platform.python_version(), device=args.device)
    if args.device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out.update(
            gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda
        )
    out["cpu_count"] = os.cpu_count()
    return out


def make_inputs(work: Path, size: dict) -> None:
    """The phantom CT and the full-width released bundle with random weights."""
    import SimpleITK as sitk
    import torch

    from MPUNetCore.bundle import ModelCard, SegmentClass, build_network, save_bundle
    from MPUNetCore.phantom import make_phantom

    image, label = make_phantom(0, size["ct"], (0.8, 0.8, 1.0))
    sitk.WriteImage(image, str(work / "ct.nii.gz"))
    arch = dict(network="MPUNet", spatial_dims=3, in_channels=1, out_channels=3, preset="released")
    if size["channels"]:
        arch["overrides"] = {"channels": list(size["channels"])}
    classes = [SegmentClass(0, "Background"), SegmentClass(1, "Liver"), SegmentClass(2, "Liver tumor")]
    prep = dict(hu_window=[-200, 200], scale=200, inplane_factor=0.5, target_spacing=None, slice_spacing=1.0)
    card = ModelCard(
        name="released-random",
        architecture=arch,
        classes=classes,
        preprocessing=prep,
        inference=dict(window=list(size["window"]), overlap=0.25),
    )
    torch.manual_seed(0)
    save_bundle(build_network(arch), card, work / "released" / "released.json")


def segment(args: argparse.Namespace, work: Path, size: dict) -> Dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "MPUNetCore",
        "segment",
        str(work / "ct.nii.gz"),
        "-o",
        str(work / "out.nii.gz"),
        "--overwrite",
        "--model",
        str(work / "released" / "released.json"),
        "--device",
        args.device,
        "--profile",
        "--progress",
        "none",
    ]
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env(), capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    stages = {}
    for line in done.stderr.splitlines():
        m = re.match(r"^([a-z][a-z +\-]+?)(?: \(x\d+\))?\s+(\d+\.\d+)\s+(\d+\.\d)%", line)
        if m:
            stages[m.group(1).strip()] = float(m.group(2))
    return dict(command_wall_s=round(wall, 2), stages_s=stages, profile=done.stderr[-3000:])


def _demo_model(channels: Any):
    import torch

    from MPUNetCore.networks import MPUNet

    model = MPUNet(preset="released", out_channels=3, channels=(8, 16, 32, 48, 64), fusion="learned")
    state = torch.load(DEMO_WEIGHTS, map_location="cpu", weights_only=True)
    model.load_state_dict(state.get("net", state))
    return model.eval()


def _ct():
    import SimpleITK as sitk

    image = sitk.ReadImage(str(WORK / "ct.nii.gz"))
    return sitk.GetArrayFromImage(image).astype("float32"), image.GetSpacing()


def _dice(a, b, value) -> float:
    x, y = a >= value, b >= value
    total = int(x.sum()) + int(y.sum())
    return 1.0 if total == 0 else 2.0 * int((x & y).sum()) / total


def precision(args: argparse.Namespace, work: Path, size: dict) -> Dict[str, Any]:
    from MPUNetCore.inference import InferenceSettings, Preprocessing, segment

    ct, spacing = _ct()
    model = _demo_model(size["channels"])
    out: Dict[str, Any] = {}
    labels = {}
    for name in ("float32", "bfloat16", "float16"):
        settings = InferenceSettings(window=size["window"], overlap=0.25, device=args.device, precision=name)
        try:
            t0 = time.perf_counter()
            labels[name] = segment(ct, spacing, model, Preprocessing(), settings)
            sync(args.device)
            out[f"{name}_s"] = round(time.perf_counter() - t0, 2)
        except Exception as error:  # e.g. float16 autocast not supported on this CPU
            out[f"{name}_error"] = f"{type(error).__name__}: {error}"[:300]
    for name in ("bfloat16", "float16"):
        if name in labels and "float32" in labels:
            out[f"{name}_liver_dice"] = round(_dice(labels["float32"], labels[name], 1), 6)
            out[f"{name}_tumour_dice"] = round(_dice(labels["float32"], labels[name], 2), 6)
    out["liver_voxels_fp32"] = int((labels.get("float32", ct[:0]) >= 1).sum())
    return out


def compile_check(args: argparse.Namespace, work: Path, size: dict) -> Dict[str, Any]:
    import torch

    from MPUNetCore.bundle import load_bundle
    from MPUNetCore.inference import InferenceSettings, Preprocessing
    from MPUNetCore.inference.engine import predict_network_probabilities

    ct, spacing = _ct()
    model = load_bundle(work / "released" / "released.json").model
    settings = InferenceSettings(window=size["window"], overlap=0.25, device=args.device)

    def run(m) -> tuple:
        t0 = time.perf_counter()
        probs, _ = predict_network_probabilities(ct, spacing, m, Preprocessing(), settings)
        sync(args.device)
        return probs, time.perf_counter() - t0

    eager, t_eager1 = run(model)
    _, t_eager2 = run(model)
    compiled = torch.compile(model)
    got, t_first = run(compiled)
    _, t_second = run(compiled)
    return dict(
        eager_s=[round(t_eager1, 2), round(t_eager2, 2)],
        compiled_first_s=round(t_first, 2),
        compiled_second_s=round(t_second, 2),
        max_abs_prob_diff=float((eager - got).abs().max()),
    )


def train(args: argparse.Namespace, work: Path, size: dict) -> Dict[str, Any]:
    import csv

    run_dir = work / "train-run"
    overrides = [
        f"data.phantom_cases={size['cases']}",
        f"data.phantom_shape={list(size['train_shape'])}",
        "data.phantom_generator=anatomical",
        f"data.split=[{size['cases'] - 2},1,1]",
        "data.min_slices=1",
        f"train.samples_per_epoch={size['samples']}",
        f"train.patch={list(size['patch'])}",
        "train.epochs=1",
        f"train.device={args.device}",
        "train.val_every=1",
    ]
    if size is TINY:
        overrides.append("model.channels=[4,8,16,32,64]")
    command = [
        sys.executable,
        "-m",
        "Training",
        "train",
        "--config",
        "lits_mpunet_released",
        "--run-dir",
        str(run_dir),
        "--progress",
        "none",
        "--overwrite",
    ]
    for item in overrides:
        command += ["--set", item]
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env(), capture_output=True, text=True, timeout=args.timeout, cwd=work)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    with open(run_dir / "metrics.csv", newline="") as f:
        row = list(csv.DictReader(f))[-1]
    keep = ("train_time_s", "val_time_s", "epoch_time_s", "train_cpu_s")
    return dict(command_wall_s=round(wall, 1), patches=size["samples"], **{k: row.get(k) for k in keep})


WORK = Path(".")


def main() -> int:
    global WORK
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="small sizes (a quick check of the CPU path)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_check_out")))
    parser.add_argument("--sections", default="segment,precision,train,compile")  # compile last: slowest
    parser.add_argument("--timeout", type=int, default=400, help="seconds per subprocess")
    args = parser.parse_args()
    size = TINY if args.tiny else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    WORK = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    summary: Dict[str, Any] = {"size": "tiny" if args.tiny else "full"}
    sections: Dict[str, Callable] = dict(
        info=info,
        inputs=lambda a, w, s: make_inputs(w, s),
        segment=segment,
        precision=precision,
        compile=compile_check,
        train=train,
    )
    chosen = ["info", "inputs"] + args.sections.split(",")
    for name in chosen:
        t0 = time.perf_counter()
        try:
            result = sections[name](args, WORK, size)
            summary[name] = {"ok": True, "seconds": round(time.perf_counter() - t0, 1), **(result or {})}
        except Exception as error:
            summary[name] = {
                "ok": False,
                "seconds": round(time.perf_counter() - t0, 1),
                "error": f"{type(error).__name__}: {error}"[-3000:],
                "trace": traceback.format_exc()[-2000:],
            }
        print(
            f"{name}: {'ok' if summary[name]['ok'] else 'FAILED'} ({summary[name]['seconds']} s)", flush=True
        )
        (args.out / "gpu_check.json").write_text(json.dumps(summary, indent=1))
    lines = ["# GPU check", "", f"size: {summary['size']}", ""]
    for name in chosen:
        entry = {k: v for k, v in summary[name].items() if k not in ("profile", "trace")}
        lines.append(f"- **{name}**: `{json.dumps(entry)}`")
    if summary.get("segment", {}).get("profile"):
        lines += ["", "```", summary["segment"]["profile"], "```"]
    (args.out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(summary[n]["ok"] for n in chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
