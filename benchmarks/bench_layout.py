"""Network forward per window: plain layout vs channels-last, per model and window size (CPU).

Variants, run interleaved in one process (each round runs every variant once, in rotated order, with
a float32 GEMM in between as the machine's reference rate at the same moment):

* ``plain``: the model as loaded, NCDHW input (the independent reference);
* ``cl_load``: what was tried before: ``model.to(memory_format=channels_last_3d)`` and
  ``x.contiguous(memory_format=channels_last_3d)``, PyTorch's own kernel choice;
* ``channels_last``: the engine's channels-last forward (``MPUNetCore.inference.layout``: cached
  channels-last parameters, explicit channels-last input strides, oneDNN convolutions).

Models: ``demo`` (the shipped demo-phantom bundle, real weights) and ``full`` (the released preset at
full width, channels 16-256, 3 classes, seeded random weights). FLOPs are counted with
``torch.utils.flop_counter.FlopCounterMode`` on the ``meta`` device; the GEMM is a float32
``n x n x n`` product (``--gemm``) at the same thread count. Each variant's probabilities are
compared with ``plain`` (max |difference|, argmax agreement).

Under load, wall time mostly measures the share of the CPU the process got; each row is followed by
the same figures per CPU second of this process ("CPU time": GFLOP per CPU-second of the forward
against GFLOP per CPU-second of the GEMM), which time-slicing affects much less.

Run (the glibc allocator tuning of ``MPUNetCore.allocator`` is applied by re-executing once):
    python benchmarks/bench_layout.py --models demo full --sizes 16x128x128 16x256x256 48x256x256 \
        --repeat 3 --threads 2
    python benchmarks/bench_layout.py --models demo --sizes 16x128x128 --profile   # kernels per variant
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from MPUNetCore.allocator import reexec_with_tuned_allocator  # noqa: E402
from MPUNetCore.bundle import build_network, load_bundle  # noqa: E402
from MPUNetCore.inference.layout import layout_forward  # noqa: E402
from MPUNetCore.networks import MPUNet  # noqa: E402

DEMO = REPO / "MPUNetCore" / "models" / "demo-phantom.json"
VARIANTS = ("plain", "cl_load", "channels_last")


def build(name: str, device: str = "cpu") -> torch.nn.Module:
    if name == "demo":
        if device == "meta":
            arch = load_bundle(DEMO).card.architecture
            with torch.device("meta"):
                return build_network(arch).eval()
        return load_bundle(DEMO).model.eval()
    torch.manual_seed(0)
    with torch.device(device):
        return MPUNet(preset="released", out_channels=3).eval()


def count_flops(name: str, size) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    net, counter = build(name, "meta"), FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(torch.empty(1, 1, *size, device="meta"))
    return int(counter.get_total_flops())


def timed(fn) -> tuple:
    """(wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def gemm_rate(n: int) -> tuple:
    """float32 GEMM FLOP/s by wall time and per CPU second (of all threads)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    wall, cpu = timed(lambda: torch.mm(a, b, out=out))
    return 2 * n**3 / wall, 2 * n**3 / cpu


def runners(net: torch.nn.Module, x: torch.Tensor):
    cl_net = copy.deepcopy(net).to(memory_format=torch.channels_last_3d)  # the old load-time conversion
    x_cl = x.contiguous(memory_format=torch.channels_last_3d)
    fast = layout_forward(net, "channels_last")
    return {"plain": lambda: net(x), "cl_load": lambda: cl_net(x_cl), "channels_last": lambda: fast(x)}


def profile(run, label: str) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    with prof(activities=[ProfilerActivity.CPU]) as p:
        run()
    print(f"--- {label}")
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["demo", "full"], choices=["demo", "full"])
    parser.add_argument("--sizes", nargs="+", default=["16x128x128", "16x256x256", "48x256x256"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gemm", type=int, default=2048, help="GEMM size n for the reference rate")
    parser.add_argument("--profile", action="store_true", help="print the top kernels of each variant")
    args = parser.parse_args()
    reexec_with_tuned_allocator()
    torch.set_num_threads(args.threads)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"torch {torch.__version__}, {args.threads} threads, load average at start {' '.join(load)}")
    print(f"{'model':>5} {'window':>11} {'variant':>14} {'median s':>9} {'spread':>7} {'GFLOP/s':>8} "
          f"{'GEMM':>6} {'%GEMM':>6} {'vs plain':>8} {'max|dp|':>9} {'argmax=':>8}")  # fmt: skip
    for name in args.models:
        net = build(name)
        for text in args.sizes:
            size = tuple(int(s) for s in text.split("x"))
            gen = torch.Generator().manual_seed(1)
            x = torch.rand(1, 1, *size, generator=gen) * 2 - 1
            flops = count_flops(name, size)
            with torch.inference_mode():
                run = runners(net, x)
                ref = run["plain"]()
                diffs = {}
                for v in args.variants:
                    out = run[v]()
                    same = (out.argmax(1) == ref.argmax(1)).float().mean().item()
                    diffs[v] = ((out - ref).abs().max().item(), same)
                    if args.profile:
                        profile(run[v], f"{name} {text} {v}")
                times = {v: [] for v in args.variants}
                cpus = {v: [] for v in args.variants}
                gemms, gemms_cpu = [], []
                for r in range(args.repeat):
                    order = args.variants[r % len(args.variants) :] + args.variants[: r % len(args.variants)]
                    for v in order:
                        g_wall, g_cpu = gemm_rate(args.gemm)
                        gemms.append(g_wall)
                        gemms_cpu.append(g_cpu)
                        wall, cpu = timed(run[v])
                        times[v].append(wall)
                        cpus[v].append(cpu)
            gemm, gemm_cpu = statistics.median(gemms), statistics.median(gemms_cpu)
            base = statistics.median(times["plain"]) if "plain" in times else float("nan")
            base_cpu = statistics.median(cpus["plain"]) if "plain" in cpus else float("nan")
            for v, ts in times.items():
                med, med_cpu = statistics.median(ts), statistics.median(cpus[v])
                spread = (max(ts) - min(ts)) / med
                rate = flops / med
                flag = " !" if spread > 0.10 else ""
                print(
                    f"{name:>5} {text:>11} {v:>14} {med:>9.2f} {100 * spread:>6.0f}% {rate / 1e9:>8.1f} "
                    f"{gemm / 1e9:>6.1f} {100 * rate / gemm:>5.0f}% {base / med:>7.2f}x "
                    f"{diffs[v][0]:>9.1e} {diffs[v][1]:>8.5f}{flag}",
                    flush=True,
                )
                cpu_spread = (max(cpus[v]) - min(cpus[v])) / med_cpu
                print(
                    f"{'':>5} {'':>11} {'(CPU time)':>14} {med_cpu:>9.2f} {100 * cpu_spread:>6.0f}% "
                    f"{flops / med_cpu / 1e9:>8.1f} {gemm_cpu / 1e9:>6.1f} "
                    f"{100 * (flops / med_cpu) / gemm_cpu:>5.0f}% {base_cpu / med_cpu:>7.2f}x",
                    flush=True,
                )
            print(f"      {text}: {flops / 1e9:.1f} GFLOP per forward; wall {times}; cpu {cpus}", flush=True)
    with open("/proc/loadavg") as f:
        print(f"load average at end {' '.join(f.read().split()[:3])}")


if __name__ == "__main__":
    main()
