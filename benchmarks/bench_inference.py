"""Benchmark: our inference engine vs MONAI's sliding_window_inference vs the released MPU-Net procedure.

Every run of a variant is a fresh subprocess on the same synthetic CT and the same model (same seed),
from the HU array to a label map on the input grid. The variants are interleaved (``--repeats`` rounds,
each round in an order rotated by one, so that none always runs first) and each is reported as the
median over its runs with the spread ``(max - min) / median``; a spread above 10 % is flagged. Per run:
wall time of inference only (volume and model construction excluded), its user and system CPU time and
minor page faults, and the peak resident memory (``ru_maxrss`` of the process, input volume included).
The labels of every variant are compared with ours (Dice of liver and tumour) and with its own earlier
runs (they must not change between runs). The header names the CPU, cores, threads and load averages.

* ``ours``: ``MPUNetCore.inference.segment`` (``--overlap``, ``--blending``, evenly spaced windows,
  float32 accumulators at network resolution, chunked trilinear resampling of the probabilities +
  chunkwise argmax); ``ours-crop``: the same with ``crop_to_body=True`` (network on the body's box);
* ``monai-user``: the pipeline a MONAI user would write (SimpleITK resampling both ways, per class, with
  our window, overlap and blending; see ``monai_user.py``): **the MONAI ratio**;
* ``monai-same``: our preprocessing, ``monai.inferers.sliding_window_inference`` with our window, overlap
  and blending, then ``F.interpolate`` of the whole probability volume to the input grid and argmax.
  It checks agreement (liver Dice >= 0.995 where MONAI places the windows as we do; the header prints
  both placements); its time is not a fair MONAI figure (the one-piece interpolation handicaps it);
* ``monai``: the same at ``--ref-overlap`` / ``--monai-mode`` (not in the default set);
* ``released``: the released code's test procedure, re-written from its description (background §3):
  z padded with zeros at the end until (z - 48) is a multiple of 24, 48-slice windows at stride 24 over
  the full in-plane extent, each window's output upsampled trilinearly to full in-plane resolution and
  concatenated, plain averaging with a count volume at full resolution, argmax.

Allocator: ``mpunet segment`` re-executes itself with glibc tunables (``MPUNetCore/allocator.py``),
while a MONAI user or the authors' script runs plain ``python``. So by default ``ours*`` run with the
tunables and the others without; a suffix picks explicitly: ``monai-user+tuned``, ``ours+plain``.
The goals compare ours with the plain ``monai-user`` and ``released`` (what their users get).

The agreement numbers only mean something for a trained network: a randomly initialised MPU-Net
outputs near-uniform probabilities whose argmax flips with any change. Pass ``--weights``.

Examples:
    python benchmarks/bench_inference.py --size 48 256 256 --model released --channels 8 16 32 48 64 \
        --weights MPUNetCore/models/demo-phantom.pt --threads 2 --repeats 3
    python benchmarks/bench_inference.py --size 200 512 512 --model tiny --variants ours,monai-user
    python benchmarks/bench_inference.py --size 400 512 512 --variants ours --repeats 1   # memory check
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
DEFAULT_VARIANTS = "ours,ours-crop,monai-same,monai-user,monai-user+tuned,released"
ALLOCATORS = ("tuned", "plain")
SPACING = (0.75, 0.75, 1.0)  # (x, y, z) mm of the synthetic CT


# ------------------------------------------------------------------------------------------- inputs


def synthetic_ct(shape: Tuple[int, int, int], seed: int) -> Tuple[np.ndarray, Tuple[float, float, float]]:
    """A CT-like float32 HU volume (z, y, x) and its (x, y, z) spacing.

    Uses ``MPUNetCore.phantom.make_phantom`` when present, else a simple generator: air, an elliptic
    body (40 HU), a liver ellipsoid (60 HU) with two tumours (110 HU), a spine (700 HU), noise 15 HU.
    Slices are 1 mm so the network grid has as many slices as the input (the released procedure needs
    that).
    """
    spacing = SPACING
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
    if args.ct:  # made once by the driver (the same array for every run)
        ct, spacing = np.load(args.ct), SPACING
    else:
        ct, spacing = synthetic_ct(tuple(args.size), args.seed)
    model = build_model(args)
    import MPUNetCore.inference  # noqa: F401  (imports outside the timed region)

    if args.worker.startswith("monai"):
        import monai.inferers  # noqa: F401
    with torch.inference_mode():  # warm-up of the kernels' one-time initialisation
        model(torch.zeros((1, 1, 8, 16, 16)))
    base = _maxrss_mb()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    labels = RUNNERS[args.worker](ct, spacing, model, args)
    seconds, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    if labels.shape != ct.shape:
        raise AssertionError(f"{args.worker}: output {labels.shape} != input {ct.shape}")
    np.save(args.out, labels)
    row = {"variant": args.worker, "seconds": seconds, "peak_mb": _maxrss_mb(), "base_mb": base}
    row.update(
        user=r1.ru_utime - r0.ru_utime, sys=r1.ru_stime - r0.ru_stime, faults=r1.ru_minflt - r0.ru_minflt
    )
    print(json.dumps(row))


# ------------------------------------------------------------------------------------------- driver


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(a, b).sum()) / s


def split_spec(spec: str) -> Tuple[str, str]:
    """``'monai-user+tuned'`` -> ``('monai-user', 'tuned')``; no suffix: ours* tuned, the others plain."""
    name, _, allocator = spec.partition("+")
    if name not in VARIANTS or allocator not in ("", *ALLOCATORS):
        raise ValueError(f"unknown variant {spec!r}: one of {VARIANTS}, optionally +tuned or +plain")
    return name, allocator or ("tuned" if name.startswith("ours") else "plain")


def child_environment(allocator: str, threads: int) -> Dict[str, str]:
    """This environment with the allocator set as ``mpunet`` sets it (tuned) or as plain python has it."""
    from MPUNetCore.allocator import MARKER, OPT_OUT, allocator_environment

    env = {k: v for k, v in os.environ.items() if k not in (MARKER, OPT_OUT)}
    kept = [t for t in env.pop("GLIBC_TUNABLES", "").split(":") if t and not t.startswith("glibc.malloc.")]
    if kept:
        env["GLIBC_TUNABLES"] = ":".join(kept)
    env.update(
        OMP_NUM_THREADS=str(threads),
        PYTHONPATH=os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH")))),
    )
    return allocator_environment(env) if allocator == "tuned" else env


def monai_starts(size: int, window: int, overlap: float) -> List[int]:
    """Window starts of ``sliding_window_inference`` along one axis (stride int(window x (1 - overlap)),
    the last window moved back to end at the volume's end)."""
    if window >= size:
        return [0]
    step = max(1, int(window * (1.0 - overlap)))
    n = -(-(size - window) // step) + 1
    return sorted({min(i * step, size - window) for i in range(n)})


def placement(args: argparse.Namespace) -> Tuple[bool, str]:
    """Whether ours and MONAI place the windows the same way on this case, and both placements."""
    from MPUNetCore.inference import Preprocessing
    from MPUNetCore.inference.preprocessing import plan_transform
    from MPUNetCore.inference.sliding_window import window_starts

    net = plan_transform(tuple(args.size), SPACING, Preprocessing()).network_shape
    ours = [window_starts(n, w, args.overlap) for n, w in zip(net, args.window)]
    monai = [monai_starts(n, w, args.overlap) for n, w in zip(net, args.window)]
    return ours == monai, f"network grid {tuple(net)}: window starts (z, y, x) ours {ours}, MONAI {monai}"


def run_once(argv: List[str], spec: str, out: str, threads: int) -> Dict[str, Any]:
    """One run of ``spec`` in a fresh process; its JSON row (or ``{'error': ...}``)."""
    name, allocator = split_spec(spec)
    cmd = [sys.executable, __file__, *argv, "--worker", name, "--out", out]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_environment(allocator, threads))
    if proc.returncode != 0:
        return {"error": proc.stderr[-3000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(args, specs, runs, labels, same_labels, same_place, where) -> Dict[str, Any]:
    """Print the table, the ratios and the goals; return the summary written by ``--json``."""
    import runstats

    ref = labels.get("ours")
    summary: Dict[str, Any] = {"variants": {}, "ratios": {}, "goals": {}}
    head = "| variant | allocator | time: median (min-max, spread) | sys s | peak MB | Dice liver / tumour"
    print(f"\n{head} vs ours | labels same each run |")
    print("|---|---|---|---|---|---|---|")  # fmt: skip
    for spec in specs:
        rows = [r for r in runs[spec] if "error" not in r]
        if not rows:
            print(f"| {spec} | FAILED in every run | | | | | |")
            continue
        secs = [r["seconds"] for r in rows]
        dl = dt = float("nan")
        if ref is not None and spec in labels:
            dl, dt = _dice(labels[spec] >= 1, ref >= 1), _dice(labels[spec] == 2, ref == 2)
        peak = sorted(r["peak_mb"] for r in rows)[len(rows) // 2]
        sys_s = sorted(r["sys"] for r in rows)[len(rows) // 2]
        summary["variants"][spec] = dict(runstats.describe(secs), peak_mb=peak, sys_s=sys_s, dice_liver=dl)
        summary["variants"][spec].update(dice_tumour=dt, same_labels=same_labels.get(spec), runs=rows)
        print(f"| {spec} | {split_spec(spec)[1]} | {runstats.text(secs)} | {sys_s:.1f} | {peak:.0f} | "
              f"{dl:.4f} / {dt:.4f} | {same_labels.get(spec)} |")  # fmt: skip
    ours = [r for r in runs.get("ours", [])]
    if ours:
        print("\nratios (median of the other / median of ours; range: per round, the same round's runs):")
        for spec in specs:
            if spec == "ours" or spec not in summary["variants"]:
                continue
            pairs = [
                o["seconds"] / u["seconds"]
                for o, u in zip(runs[spec], ours)
                if "error" not in o and "error" not in u
            ]
            med = summary["variants"][spec]["median"] / summary["variants"]["ours"]["median"]
            summary["ratios"][spec] = {"ratio": med, "per_round": pairs}
            word = "faster" if med >= 1 else "SLOWER"
            print(f"  ours vs {spec}: {med:.2f}x ({word}; rounds {min(pairs):.2f}-{max(pairs):.2f}x)")
    goals = [("monai-user", 2.0, "the pipeline a MONAI user would write, plain python"),
             ("released", 3.0, "the authors' released procedure, plain python")]  # fmt: skip
    for spec, want, what in goals:
        if spec in summary["ratios"]:
            got = summary["ratios"][spec]["ratio"]
            summary["goals"][spec] = {"want": want, "got": got, "met": got >= want}
            print(f"goal: ours >= {want}x {what}: {got:.2f}x -> {'met' if got >= want else 'NOT met'}")
    if "monai-same" in summary["variants"]:
        dl = summary["variants"]["monai-same"]["dice_liver"]
        how = "same placement" if same_place else "placements differ (see header)"
        summary["goals"]["monai-same"] = {"want": 0.995, "got": dl, "met": dl >= 0.995, "placement": where}
        verdict = "met" if dl >= 0.995 else "NOT met"
        print(f"goal: liver Dice ours vs monai-same >= 0.995 ({how}): {dl:.4f} -> {verdict}")
    unstable = [s for s, v in summary["variants"].items() if v["unstable"]]
    if unstable:
        print(f"UNSTABLE (spread > 10 %): {', '.join(unstable)}: the ratios above are not reliable")
    return summary


def main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, nargs=3, default=[200, 512, 512], metavar=("Z", "Y", "X"))
    p.add_argument("--model", choices=("tiny", "released"), default="tiny")
    p.add_argument("--channels", type=int, nargs=5, default=None, help="MPU-Net widths, e.g. 4 8 16 32 64")
    p.add_argument("--weights", default=None, help="released checkpoint to load (default: random weights)")
    p.add_argument("--tiny-width", type=int, default=8)
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help="comma-separated subset of "
                   + ",".join(VARIANTS) + ", each optionally +tuned or +plain (the allocator)")  # fmt: skip
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (each variant once per round)")
    p.add_argument("--window", type=int, nargs=3, default=None, help="default: 48 and the full network plane")
    p.add_argument("--overlap", type=float, default=0.25, help="ours, monai-same and monai-user")
    p.add_argument("--blending", default="gaussian", choices=("constant", "gaussian"), help="ours")
    p.add_argument("--ref-overlap", type=float, default=0.5, help="monai and released (0.5: stride 24 of 48)")
    p.add_argument("--monai-mode", default="constant", choices=("constant", "gaussian"))
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--precision", default="float32", choices=("auto", "float32", "bfloat16", "float16"))
    p.add_argument("--postprocess", action="store_true", help="ours: largest component (off: raw argmax)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write the summary and every run's figures here")
    p.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--ct", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.window is None:
        ny, nx = (int(round(v * 0.5)) for v in args.size[1:])
        args.window = [48, -(-ny // 8) * 8, -(-nx // 8) * 8]
    if args.worker:
        worker(args)
        return 0

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import runstats

    if args.model == "released":
        try:
            from MPUNetCore.networks import MPUNet  # noqa: F401
        except ImportError as exc:
            p.error(f"--model released needs MPUNetCore.networks.MPUNet ({exc}); use --model tiny")
    specs = [v.strip() for v in args.variants.split(",") if v.strip()]
    try:
        for spec in specs:
            split_spec(spec)
    except ValueError as exc:
        p.error(str(exc))
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    passed = [a for i, a in enumerate(argv) if a != "--json" and (i == 0 or argv[i - 1] != "--json")]
    same_place, where = placement(args)
    print(f"size (z,y,x)={tuple(args.size)} model={args.model} window={tuple(args.window)} "
          f"overlap ours={args.overlap} ref={args.ref_overlap} repeats={args.repeats}")  # fmt: skip
    print(runstats.machine(args.threads) + " (start)")
    print(
        ("same window placement as MONAI; " if same_place else "window placement differs from MONAI; ")
        + where
    )
    runs: Dict[str, List[Dict[str, Any]]] = {s: [] for s in specs}
    labels: Dict[str, np.ndarray] = {}
    same_labels: Dict[str, bool] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ct, spacing = synthetic_ct(tuple(args.size), args.seed)
        if tuple(spacing) != SPACING:
            raise AssertionError(f"synthetic CT spacing {spacing} != {SPACING}")
        np.save(os.path.join(tmp, "ct.npy"), ct)
        del ct
        passed += ["--ct", os.path.join(tmp, "ct.npy")]
        for rnd, order in enumerate(runstats.rotations(specs, args.repeats)):
            for spec in order:
                out = os.path.join(tmp, f"{spec}.npy")
                row = run_once(passed, spec, out, args.threads)
                runs[spec].append(row)
                if "error" in row:
                    print(f"round {rnd} {spec}: FAILED\n{row['error']}", flush=True)
                    continue
                got = np.load(out)
                if spec in labels:
                    same_labels[spec] = same_labels.get(spec, True) and bool(
                        np.array_equal(got, labels[spec])
                    )
                else:
                    labels[spec] = got
                print(f"round {rnd} {spec:18s} {row['seconds']:7.1f} s  sys {row['sys']:5.1f} s  "
                      f"peak {row['peak_mb']:6.0f} MB  load {runstats.load()}", flush=True)  # fmt: skip
                if args.json:  # every run so far, so that an interrupted benchmark still leaves its figures
                    row["load"] = runstats.load()
                    args.json.write_text(json.dumps({"argv": argv, "runs": runs}, indent=1, default=float))
    print(runstats.machine(args.threads) + " (end)")
    summary = report(args, specs, runs, labels, same_labels, same_place, where)
    if args.json:
        summary.update(machine=runstats.machine(args.threads), argv=argv)
        args.json.write_text(json.dumps(summary, indent=1, default=float))
    failed = any("error" in r for rows in runs.values() for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
