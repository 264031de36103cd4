"""Benchmark: our inference engine vs MONAI's sliding_window_inference vs the released MPU-Net procedure.

Every variant runs in a fresh subprocess on the same synthetic CT and the same model (same seed), from
the HU array to a label map on the input grid, and reports wall time (inference only: volume and model
construction excluded), peak resident memory (``ru_maxrss`` of the whole process, so the input volume
is included; the baseline before inference is printed too) and the Dice agreement of its labels with
ours. All variants share our preprocessing (clip/scale + trilinear resampling), so what differs is the
windowing, blending and the way back to the input grid:

* ``ours``: ``MPUNetCore.inference.segment`` (``--overlap``, ``--blending``, evenly spaced windows,
  float32 accumulators at network resolution, chunked trilinear resampling of the probabilities +
  chunkwise argmax); ``ours-crop``: the same with ``crop_to_body=True`` (network on the body's box);
* ``monai``: ``monai.inferers.sliding_window_inference`` (``--ref-overlap``, ``--monai-mode``), then
  ``F.interpolate`` of the whole probability volume to the input grid and argmax (the usual recipe);
  ``monai-same``: the same with our ``--overlap`` and ``--blending``; ``monai-user``: the pipeline a MONAI
  user would write (SimpleITK resampling both ways, per class, see ``monai_user.py``);
* ``released``: the released code's test procedure, re-written from its description (background §3):
  z padded with zeros at the end until (z - 48) is a multiple of 24, 48-slice windows at stride 24 over
  the full in-plane extent, each window's output upsampled trilinearly to full in-plane resolution and
  concatenated, plain averaging with a count volume at full resolution, argmax.

The agreement numbers only mean something for a trained network: a randomly initialised MPU-Net
outputs near-uniform probabilities whose argmax flips with any change. Pass ``--weights``.

Examples:
    python benchmarks/bench_inference.py --size 200 512 512 --model tiny
    python benchmarks/bench_inference.py --size 200 512 512 --model released --weights best_model.pth
    python benchmarks/bench_inference.py --size 48 128 128 --variants ours,monai --overlap 0.25
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

VARIANTS = ("ours", "ours-crop", "monai", "monai-same", "monai-user", "released")


# ------------------------------------------------------------------------------------------- inputs


def synthetic_ct(shape: Tuple[int, int, int], seed: int) -> Tuple[np.ndarray, Tuple[float, float, float]]:
    """A CT-like float32 HU volume (z, y, x) and its (x, y, z) spacing.

    Uses ``MPUNetCore.phantom.make_phantom`` when present, else a simple generator: air, an elliptic
    body (40 HU), a liver ellipsoid (60 HU) with two tumours (110 HU), a spine (700 HU), noise 15 HU.
    Slices are 1 mm so the network grid has as many slices as the input (the released procedure needs
    that).
    """
    spacing = (0.75, 0.75, 1.0)
    try:
        import SimpleITK as sitk

        from MPUNetCore.phantom import make_phantom  # type: ignore[import-not-found]

        image, _ = make_phantom(seed, shape=shape, spacing=spacing)
        return sitk.GetArrayFromImage(image).astype(np.float32), tuple(image.GetSpacing())  # type: ignore
    except ImportError:
        pass
    nz, ny, nx = shape
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    body = (y / 0.7) ** 2 + (x / 0.9) ** 2 < 1
    spine = (y - 0.45) ** 2 + x**2 < 0.08**2
    tumours = [(0.45, -0.15, -0.35, 0.08), (0.6, 0.0, -0.5, 0.05)]  # (z, y, x, radius) in [-1, 1] units
    out = np.empty(shape, np.float32)
    for k in range(nz):
        z = 2.0 * k / max(1, nz - 1) - 1.0
        sl = np.where(body, 40.0, -1000.0).astype(np.float32)
        liver = ((z - 0.3) / 0.55) ** 2 + ((y + 0.05) / 0.45) ** 2 + ((x + 0.4) / 0.4) ** 2 < 1
        sl[liver] = 60.0
        for tz, ty, tx, r in tumours:
            sl[(z - tz) ** 2 + (y - ty) ** 2 + (x - tx) ** 2 < r**2] = 110.0
        sl[spine] = 700.0
        sl += rng.normal(0.0, 15.0, size=sl.shape).astype(np.float32) * body
        out[k] = sl
    return out, spacing


def build_model(args: argparse.Namespace):
    """The network to benchmark (eval mode; seeded random weights unless ``--weights``)."""
    import torch

    torch.manual_seed(args.seed)
    if args.model == "released":
        from MPUNetCore.networks import MPUNet  # imported lazily: not on every branch yet

        kwargs: Dict[str, Any] = {"out_channels": args.classes}
        if args.channels:
            kwargs["channels"] = tuple(args.channels)
        state = torch.load(args.weights, map_location="cpu", weights_only=True) if args.weights else None
        inner = state.get("net", state) if isinstance(state, dict) else state
        if isinstance(inner, dict) and "fusion.weight" in inner:
            kwargs["fusion"] = "learned"  # e.g. the bundled demo model 0.2.0
        model = MPUNet(preset="released", **kwargs)
        if args.weights:
            from MPUNetCore.networks import load_released_state_dict

            if isinstance(inner, dict) and set(inner) == set(model.state_dict()):
                model.load_state_dict(inner)  # saved from MPUNetCore's MPUNet
            else:
                load_released_state_dict(model, state)  # the authors' checkpoint
    else:
        model = TinyNet(args.classes, args.tiny_width)
    return model.eval()


def _tiny_net_class():
    import torch
    from torch import nn

    class _TinyNet(nn.Module):
        """A small 3-D encoder-decoder (1/8 bottleneck, like MPU-Net) plus an intensity-threshold head.

        The threshold head (liver 50-90 HU, tumour above) makes the output a confident segmentation;
        the seeded random encoder-decoder makes it depend on the window's context, as a real network's
        does. Returns softmax probabilities.
        """

        input_multiple = 8
        spatial_dims = 3

        def __init__(self, classes: int, width: int):
            super().__init__()
            w = width
            self.enc = nn.Sequential(nn.Conv3d(1, w, 3, padding=1), nn.PReLU(w))
            self.down = nn.Sequential(
                nn.Conv3d(w, 2 * w, 2, stride=2), nn.PReLU(2 * w),
                nn.Conv3d(2 * w, 4 * w, 2, stride=2), nn.PReLU(4 * w),
                nn.Conv3d(4 * w, 4 * w, 2, stride=2), nn.PReLU(4 * w),
                nn.Conv3d(4 * w, 4 * w, 3, padding=1), nn.PReLU(4 * w),
            )  # fmt: skip
            self.up = nn.ConvTranspose3d(4 * w, w, 8, stride=8)
            self.dec = nn.Conv3d(2 * w, classes, 3, padding=1)
            self.thr = nn.Conv3d(1, classes, 1)
            with torch.no_grad():
                k = 100.0
                lo, hi = 50.0 / 200.0, 90.0 / 200.0
                wts = torch.tensor([0.0, k, 2 * k] + [0.0] * (classes - 3))[:classes]
                bias = torch.tensor([0.0, -k * lo, -k * (lo + hi)] + [0.0] * (classes - 3))[:classes]
                self.thr.weight.copy_(wts.view(classes, 1, 1, 1, 1))
                self.thr.bias.copy_(bias)
                for p in self.dec.parameters():
                    p.mul_(0.5)

        def forward(self, x):
            e = self.enc(x)
            u = self.up(self.down(e))
            logits = self.dec(torch.cat([e, u], dim=1)) + self.thr(nn.functional.avg_pool3d(x, 3, 1, 1))
            return torch.softmax(logits, dim=1)

    return _TinyNet


def TinyNet(classes: int, width: int):  # noqa: N802 - a factory that reads like a class
    """Build the benchmark's tiny network (torch imported lazily)."""
    return _tiny_net_class()(classes, width)


# ------------------------------------------------------------------------------------------- variants


def run_ours(ct, spacing, model, args, crop=False):
    from MPUNetCore.inference import InferenceSettings, Preprocessing, segment

    settings = InferenceSettings(
        window=tuple(args.window),
        overlap=args.overlap,
        blending=args.blending,
        batch_size=args.batch_size,
        postprocess=args.postprocess,
        device="cpu",
        precision=args.precision,
        crop_to_body=crop,
    )
    return segment(ct, spacing, model, Preprocessing(), settings)


def run_ours_crop(ct, spacing, model, args):
    return run_ours(ct, spacing, model, args, crop=True)


def run_monai_same(ct, spacing, model, args):
    return run_monai(ct, spacing, model, args, overlap=args.overlap, mode=args.blending)


def run_monai(ct, spacing, model, args, overlap=None, mode=None):
    import torch
    import torch.nn.functional as F
    from monai.inferers import sliding_window_inference

    from MPUNetCore.inference import Preprocessing, to_network_space

    image, tr = to_network_space(ct, spacing, Preprocessing())
    with torch.inference_mode():
        probs = sliding_window_inference(
            image[None, None],
            tuple(args.window),
            args.batch_size,
            model,
            args.ref_overlap if overlap is None else overlap,
            mode or args.monai_mode,
        )
        probs = torch.as_tensor(probs)
        full = F.interpolate(probs, size=tr.input_shape, mode="trilinear", align_corners=False)
        return full[0].argmax(0).to(torch.uint8).numpy()


def run_monai_user(ct, spacing, model, args):
    from monai_user import run_monai_user as run  # benchmarks/ is the worker's script folder

    return run(ct, spacing, model, args)


def run_released(ct, spacing, model, args):
    import torch
    import torch.nn.functional as F

    from MPUNetCore.inference import Preprocessing, to_network_space

    image, tr = to_network_space(ct, spacing, Preprocessing())
    size, stride = args.window[0], int(round(args.window[0] * (1 - args.ref_overlap)))
    nz, ny, nx = image.shape
    if nz != tr.input_shape[0]:
        raise ValueError("the released procedure keeps the slices: use a 1 mm volume")
    if (ny, nx) != tuple(args.window[1:]):
        raise ValueError(f"the released procedure uses full in-plane windows: --window {size} {ny} {nx}")
    padded = max(nz, size)
    if (padded - size) % stride:
        padded += stride - (padded - size) % stride
    vol = torch.zeros((padded, ny, nx))  # zero padding at the end, as released
    vol[:nz] = image
    oy, ox = tr.input_shape[1:]
    result = None
    with torch.no_grad():
        for s in range(0, padded - size + 1, stride):
            out = model(vol[None, None, s : s + size])
            out = F.interpolate(out, size=(size, oy, ox), mode="trilinear", align_corners=False)
            result = out if result is None else torch.cat((result, out), dim=0)
        c = result.shape[1]
        full_prob = torch.zeros((c, padded, oy, ox))
        full_sum = torch.zeros((c, padded, oy, ox))
        for i in range(result.shape[0]):
            full_prob[:, i * stride : i * stride + size] += result[i]
            full_sum[:, i * stride : i * stride + size] += 1
        avg = full_prob / full_sum
        return avg[:, :nz].argmax(0).to(torch.uint8).numpy()


RUNNERS = {
    "ours": run_ours,
    "ours-crop": run_ours_crop,
    "monai": run_monai,
    "monai-same": run_monai_same,
    "monai-user": run_monai_user,
    "released": run_released,
}


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def worker(args: argparse.Namespace) -> None:
    """Run one variant in this (fresh) process; print a JSON line; save the labels."""
    import torch

    torch.set_num_threads(args.threads)
    ct, spacing = synthetic_ct(tuple(args.size), args.seed)
    model = build_model(args)
    import MPUNetCore.inference  # noqa: F401  (imports outside the timed region)

    if args.worker.startswith("monai"):
        import monai.inferers  # noqa: F401
    with torch.inference_mode():  # warm-up of the kernels' one-time initialisation
        model(torch.zeros((1, 1, 8, 16, 16)))
    base = _maxrss_mb()
    t0 = time.perf_counter()
    labels = RUNNERS[args.worker](ct, spacing, model, args)
    seconds = time.perf_counter() - t0
    if labels.shape != ct.shape:
        raise AssertionError(f"{args.worker}: output {labels.shape} != input {ct.shape}")
    np.save(args.out, labels)
    print(json.dumps({"variant": args.worker, "seconds": seconds, "peak_mb": _maxrss_mb(), "base_mb": base}))


# ------------------------------------------------------------------------------------------- driver


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(a, b).sum()) / s


def main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, nargs=3, default=[200, 512, 512], metavar=("Z", "Y", "X"))
    p.add_argument("--model", choices=("tiny", "released"), default="tiny")
    p.add_argument("--channels", type=int, nargs=5, default=None, help="MPU-Net widths, e.g. 4 8 16 32 64")
    p.add_argument("--weights", default=None, help="released checkpoint to load (default: random weights)")
    p.add_argument("--tiny-width", type=int, default=8)
    p.add_argument("--classes", type=int, default=3)
    p.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS)
    )
    p.add_argument("--window", type=int, nargs=3, default=None, help="default: 48 and the full network plane")
    p.add_argument("--overlap", type=float, default=0.25, help="ours")
    p.add_argument("--blending", default="gaussian", choices=("constant", "gaussian"), help="ours")
    p.add_argument("--ref-overlap", type=float, default=0.5, help="monai and released (0.5: stride 24 of 48)")
    p.add_argument("--monai-mode", default="constant", choices=("constant", "gaussian"))
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--precision", default="float32", choices=("auto", "float32", "bfloat16", "float16"))
    p.add_argument("--postprocess", action="store_true", help="ours: largest component (off: raw argmax)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.window is None:
        ny, nx = (int(round(v * 0.5)) for v in args.size[1:])
        args.window = [48, -(-ny // 8) * 8, -(-nx // 8) * 8]
    if args.worker:
        worker(args)
        return 0

    if args.model == "released":
        try:
            from MPUNetCore.networks import MPUNet  # noqa: F401
        except ImportError as exc:
            p.error(f"--model released needs MPUNetCore.networks.MPUNet ({exc}); use --model tiny")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        p.error(f"unknown variants {bad}; choose from {VARIANTS}")
    print(f"size (z,y,x)={tuple(args.size)} model={args.model} window={tuple(args.window)} "
          f"overlap ours={args.overlap} ref={args.ref_overlap} threads={args.threads}")  # fmt: skip
    results: Dict[str, Dict[str, Any]] = {}
    labels: Dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for v in variants:
            out = os.path.join(tmp, f"{v}.npy")
            cmd = [sys.executable, __file__, *argv, "--worker", v, "--out", out]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{v}: FAILED\n{proc.stderr[-3000:]}")
                continue
            results[v] = json.loads(proc.stdout.strip().splitlines()[-1])
            labels[v] = np.load(out)
    ref = labels.get("ours")
    head = ("variant", "time s", "peak MB", "base MB", "Dice liver", "Dice tumour")
    print(f"{head[0]:12s} {head[1]:>8s} {head[2]:>8s} {head[3]:>8s} {head[4]:>10s} {head[5]:>11s}")
    for v, r in results.items():
        dl = dt = float("nan")
        if ref is not None:
            dl = _dice(labels[v] >= 1, ref >= 1)
            dt = _dice(labels[v] == 2, ref == 2)
        print(f"{v:12s} {r['seconds']:8.2f} {r['peak_mb']:8.0f} {r['base_mb']:8.0f} {dl:10.4f} {dt:11.4f}")
    if "ours" in results:
        ours = results["ours"]
        for v in results:
            if v != "ours":
                speed, mem = results[v]["seconds"] / ours["seconds"], results[v]["peak_mb"] / ours["peak_mb"]
                print(f"ours vs {v}: {speed:.2f}x faster, {mem:.2f}x less peak memory")
        goals = {"released": 2.0, "monai": 1.2}
        for v, want in goals.items():
            if v in results and ref is not None:
                speed = results[v]["seconds"] / ours["seconds"]
                agree = _dice(labels[v] >= 1, ref >= 1)
                ok = speed >= want and agree >= 0.995
                print(f"goal vs {v}: >= {want}x at liver Dice >= 0.995: {speed:.2f}x, {agree:.4f} -> "
                      f"{'met' if ok else 'NOT met'}")  # fmt: skip
    return 0 if len(results) == len(variants) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
