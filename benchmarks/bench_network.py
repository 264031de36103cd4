"""Forward time of the released MPU-Net on one window (CPU): float32 versus faster execution modes.

Every mode runs in a fresh Python process (so peak memory is per mode) on the same seeded weights
and input, saves its probabilities, and is compared with float32 eager by the Dice of the argmax
(foreground classes pooled; the done-criterion is Dice >= 0.999) and the largest probability
difference. The network's FLOPs are counted once on the ``meta`` device with
``torch.utils.flop_counter.FlopCounterMode`` (no computation), and this machine's float32 matmul
FLOP/s is measured on a 2048 x 2048 x 2048 product with the same thread count, so the achieved
FLOP/s of each mode can be read against it.

Modes: ``fp32`` (eager, NCDHW, default threads), ``threads1`` (one intra-op thread),
``channels_last`` (channels_last_3d model and input), ``bf16`` (``torch.autocast("cpu",
torch.bfloat16)``), ``compile`` (``torch.compile``, inductor; the first call compiles and is not
timed: see the "first s" column), and combinations joined by "+", e.g. ``compile+threads1``.

The weights are random (seeded) unless ``--weights`` gives a state dict for the released preset; with
random weights many voxels sit near a tie between the classes, which makes the Dice check stricter
than with a trained network.

Run:  python benchmarks/bench_network.py [--size 48 256 256] [--modes fp32 channels_last ...]
      python benchmarks/bench_network.py --size 16 64 64 --channels 4 8 16 32 64   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from MPUNetCore.networks import MPUNet  # noqa: E402

PARTS = ("fp32", "threads1", "channels_last", "bf16", "compile")
MODES = ("fp32", "threads1", "channels_last", "bf16", "compile", "compile+threads1")


def build(args, device: str = "cpu") -> MPUNet:
    torch.manual_seed(0)
    with torch.device(device):
        net = MPUNet(preset="released", channels=tuple(args.channels))
    if args.weights and device != "meta":
        net.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
    return net.eval()


def make_input(size) -> torch.Tensor:
    """A smooth synthetic CT-like window: a bright ellipsoid with a darker blob, plus noise."""
    gen = torch.Generator().manual_seed(1)
    axes = [torch.linspace(-1, 1, s) for s in size]
    z, y, x = torch.meshgrid(*axes, indexing="ij")
    organ = ((z / 0.8) ** 2 + (y / 0.6) ** 2 + ((x + 0.2) / 0.5) ** 2 < 1).float()
    lesion = ((z / 0.3) ** 2 + ((y - 0.1) / 0.2) ** 2 + ((x + 0.2) / 0.2) ** 2 < 1).float()
    image = 0.3 * organ - 0.2 * lesion + 0.05 * torch.randn(size, generator=gen)
    return image[None, None]


def count_flops(args) -> int:
    """Forward FLOPs (multiply-add = 2) of the network at ``args.size``, counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    net = build(args, "meta")
    x = torch.empty(1, 1, *args.size, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(x)
    return int(counter.get_total_flops())


def matmul_flops(threads: int, n: int = 2048, repeat: int = 5) -> float:
    """Best float32 GEMM FLOP/s of this machine with ``threads`` intra-op threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def worker(args) -> dict:
    """Run one mode in this process; save probabilities to args.out; return timings."""
    parts = set(args.worker.split("+"))
    if "threads1" in parts:
        torch.set_num_threads(1)
    net, x = build(args), make_input(args.size)
    if "channels_last" in parts:
        net = net.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    run = torch.compile(net) if "compile" in parts else net
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in parts)
    times, first = [], None
    with torch.no_grad(), autocast:
        for i in range(args.warmup + args.repeat):
            start = time.perf_counter()
            probs = run(x)
            elapsed = time.perf_counter() - start
            if i == 0:
                first = elapsed
            if i >= args.warmup:
                times.append(elapsed)
    np.save(args.out, probs.float().contiguous().numpy())
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024.0
    return {"times": times, "first_s": first, "threads": torch.get_num_threads(), "peak_rss_mb": hwm}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    denom = a.sum() + b.sum()
    return 1.0 if denom == 0 else float(2 * np.logical_and(a, b).sum() / denom)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, nargs=3, default=[48, 256, 256], metavar=("D", "H", "W"))
    parser.add_argument("--channels", type=int, nargs=5, default=[16, 32, 64, 128, 256])
    parser.add_argument("--modes", nargs="+", default=list(MODES), help=f"modes: {PARTS} joined by '+'")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per mode (compile: >= 1)")
    parser.add_argument("--repeat", type=int, default=1, help="timed calls per mode")
    parser.add_argument("--weights", help="state dict of MPUNet(preset='released') to use instead of random")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if any(s % MPUNet.input_multiple for s in args.size):
        parser.error(f"--size values must be multiples of {MPUNet.input_multiple}")
    bad = [m for m in args.modes if not set(m.split("+")) <= set(PARTS)]
    if bad:
        parser.error(f"unknown mode(s) {bad}; combine {PARTS} with '+'")
    if args.worker:
        print(json.dumps(worker(args)))
        return

    flops = count_flops(args)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}; {threads} threads; window 1x1x{'x'.join(map(str, args.size))}; ")
    print(f"channels {tuple(args.channels)}; forward FLOPs {flops / 1e9:.1f} G (FlopCounterMode)")
    gemm = {t: matmul_flops(t) for t in sorted({1, threads})}
    torch.set_num_threads(threads)
    print(
        "float32 GEMM 2048^3 on this machine: "
        + ", ".join(f"{v / 1e9:.1f} GFLOP/s ({t} thr)" for t, v in gemm.items())
    )

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            out = os.path.join(tmp, f"{mode}.npy")
            cmd = [sys.executable, __file__, "--worker", mode, "--out", out, "--size", *map(str, args.size)]
            cmd += ["--channels", *map(str, args.channels), "--warmup", str(args.warmup)]
            cmd += ["--repeat", str(args.repeat)] + (["--weights", args.weights] if args.weights else [])
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{mode}: failed\n{proc.stderr[-2000:]}")
                continue
            results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
            results[mode]["probs"] = np.load(out)
            print(f"  {mode}: {results[mode]['times']}", flush=True)

    if "fp32" not in results:
        print("no float32 baseline")
        return
    ref = results["fp32"]["probs"]
    ref_fg = ref.argmax(1) > 0
    base = min(results["fp32"]["times"])
    print(f"\n{'mode':>22} {'thr':>4} {'time s':>8} {'first s':>8} {'speed-up':>9} {'GFLOP/s':>8} "
          f"{'%GEMM':>6} {'peak GB':>8} {'Dice':>8} {'max|dp|':>9}")  # fmt: skip
    best = None
    for mode, r in results.items():
        t = min(r["times"])
        d = dice(r["probs"].argmax(1) > 0, ref_fg)
        dp = float(np.abs(r["probs"] - ref).max())
        rate = flops / t
        share = 100 * rate / gemm[r["threads"]] if r["threads"] in gemm else float("nan")
        timing = f"{t:>8.2f} {r['first_s']:>8.2f} {base / t:>8.2f}x"
        print(
            f"{mode:>22} {r['threads']:>4} {timing} {rate / 1e9:>8.1f} {share:>5.0f}% "
            f"{r['peak_rss_mb'] / 1024:>8.2f} {d:>8.5f} {dp:>9.2e}"
        )
        if d >= 0.999 and (best is None or t < best[1]):
            best = (mode, t)
    if best:
        print(f"\nfastest mode with Dice >= 0.999 vs float32: {best[0]}, {base / best[1]:.2f}x float32 eager")


if __name__ == "__main__":
    main()
