"""ONNX Runtime against the engine's channels-last PyTorch forward on one window of the demo model (CPU).

The issue's bar for adding ONNX Runtime as an optional backend: at least 1.3x faster than the
channels-last PyTorch path on the same window. This script measures it; the project does not depend
on ONNX Runtime (install it yourself: ``pip install onnxruntime onnx onnxscript``; ``--extra-path``
appends a folder such as a ``pip install --target`` one to ``sys.path``).

The demo bundle is exported once (``torch.onnx.export``, position attention through SDPA, which
exports as plain matrix products), the session runs with ``--threads`` intra-op threads and all
graph optimisations, and the three variants (plain PyTorch, channels-last PyTorch, ONNX Runtime) run
interleaved ``--repeat`` times. Reported: median wall and CPU seconds with their spread, and the
largest probability difference against plain PyTorch.

Run: python benchmarks/bench_onnx.py --size 48 256 256 --repeat 3 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from MPUNetCore.allocator import reexec_with_tuned_allocator  # noqa: E402
from MPUNetCore.bundle import build_network, load_bundle  # noqa: E402
from MPUNetCore.inference.layout import layout_forward  # noqa: E402

DEMO = REPO / "MPUNetCore" / "models" / "demo-phantom.json"


def timed(fn) -> tuple:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, nargs=3, default=[48, 256, 256])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--extra-path", help="folder appended to sys.path (where onnxruntime is installed)")
    args = parser.parse_args()
    reexec_with_tuned_allocator()
    if args.extra_path:
        sys.path.append(args.extra_path)
    import onnxruntime as ort  # lazily: not a dependency of the project

    torch.set_num_threads(args.threads)
    bundle = load_bundle(DEMO)
    arch = dict(bundle.card.architecture)
    arch["overrides"] = {**arch.get("overrides", {}), "attention_impl": "sdpa"}
    export_net = build_network(arch)
    export_net.load_state_dict(bundle.model.state_dict())
    export_net.eval()
    x = torch.rand(1, 1, *args.size, generator=torch.Generator().manual_seed(1)) * 2 - 1

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "demo.onnx")
        with torch.no_grad():
            torch.onnx.export(export_net, (x,), path, input_names=["image"], output_names=["probs"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    x_np = x.numpy()
    fast = layout_forward(bundle.model, "channels_last")
    runs = {
        "plain": lambda: bundle.model(x).numpy(),
        "channels_last": lambda: fast(x).numpy(),
        "onnxruntime": lambda: session.run(["probs"], {"image": x_np})[0],
    }
    names = list(runs)
    walls = {n: [] for n in names}
    cpus = {n: [] for n in names}
    with open("/proc/loadavg") as f:
        print(f"onnxruntime {ort.__version__}, torch {torch.__version__}, {args.threads} threads, "
              f"window {args.size}, load average {' '.join(f.read().split()[:3])}")  # fmt: skip
    with torch.inference_mode():
        ref = runs["plain"]()
        diffs = {n: float(np.abs(runs[n]() - ref).max()) for n in names}  # also the warm-up
        for r in range(args.repeat):
            for n in names[r % 3 :] + names[: r % 3]:
                wall, cpu, _ = timed(runs[n])
                walls[n].append(wall)
                cpus[n].append(cpu)
    cl_wall, cl_cpu = statistics.median(walls["channels_last"]), statistics.median(cpus["channels_last"])
    for n in names:
        w, c = statistics.median(walls[n]), statistics.median(cpus[n])
        ws, cs = (max(walls[n]) - min(walls[n])) / w, (max(cpus[n]) - min(cpus[n])) / c
        print(
            f"{n:>14}: wall {w:7.2f} s (spread {100 * ws:3.0f}%)  CPU {c:7.2f} s (spread {100 * cs:3.0f}%)  "
            f"channels-last / this: wall {cl_wall / w:.2f}x, CPU {cl_cpu / c:.2f}x  max|dp| {diffs[n]:.1e}"
        )
    print(f"wall {walls}\ncpu {cpus}")
    with open("/proc/loadavg") as f:
        print(f"load average at end {' '.join(f.read().split()[:3])}")


if __name__ == "__main__":
    main()
