"""Position attention: DANet's naive form versus MPUNetCore's, time and peak memory (CPU, no grad).

Shapes are those of MPU-Net's bottleneck: C = 256 value channels, query/key C/8 = 32, batch 1,
float32, no autograd; 1,536 / 6,144 / 24,576 tokens are the bottleneck of a 24 x 128 x 256,
48 x 256 x 256 and 96 x 512 x 256 window.

Implementations:
  naive    DANet as published: energy = bmm(Q^T, K) (N x N), softmax, bmm(V, attention^T)
  ours     MPUNetCore.networks.position_attention(impl="auto"): "chunked" on CPU
  sdpa     position_attention(impl="sdpa"): scaled_dot_product_attention with the value viewed as
           heads of the query width (selects the fused CPU flash kernel)
  chunkM   the chunked implementation with a fixed chunk of M query rows (``--chunk-sizes``)

Peak memory, method: every (implementation, token count) runs in a fresh Python process. It
allocates and fills Q, K, V and runs the implementation once on 256 tokens to initialise the
libraries (thread pools, kernels). Then it resets the kernel's peak-RSS counter (writing "5" to
/proc/self/clear_refs sets VmHWM to the current VmRSS, Linux >= 4.0), runs the case once and reads
VmHWM - VmRSS(before) from /proc/self/status: the extra peak resident memory of the call, output
included (N x 256 floats, 6.3 MB at 6,144 tokens, the same for every implementation), and whatever
BLAS allocates internally. Where clear_refs is unavailable it falls back to the growth of
``ru_maxrss``, which misses peaks below an earlier high-water mark (the script says which it used).
Time: median and minimum of ``--repeat`` further calls in the same process (``time.perf_counter``);
on a shared machine the minimum is the less disturbed figure.

Run:  python benchmarks/bench_attention.py [--tokens 1536 6144 24576] [--repeat 5] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from MPUNetCore.networks.attention import default_chunk_size, position_attention  # noqa: E402


def naive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """DANet: q, k (B, d, N), v (B, C, N) -> (B, C, N), materialising the N x N energy and attention."""
    energy = torch.bmm(q.permute(0, 2, 1), k)
    attention = torch.softmax(energy, dim=-1)
    return torch.bmm(v, attention.permute(0, 2, 1))


def ours(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, impl: str = "auto", chunk=None) -> torch.Tensor:
    """The library's attention on the same channel-major tensors (DANet's layout), same output layout."""
    b, c, n = v.shape
    out = position_attention(
        q.transpose(1, 2).unsqueeze(1), k.transpose(1, 2).unsqueeze(1), v.transpose(1, 2).unsqueeze(1),
        scale=1.0, impl=impl, chunk_size=chunk,
    )  # fmt: skip
    return out.squeeze(1).transpose(1, 2)


def function_for(name: str):
    if name == "naive":
        return naive
    if name == "ours":
        return ours
    if name == "sdpa":
        return lambda q, k, v: ours(q, k, v, impl="sdpa")
    if name.startswith("chunk"):
        return lambda q, k, v: ours(q, k, v, impl="chunked", chunk=int(name[5:]))
    raise ValueError(f"unknown implementation {name!r}")


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise KeyError(field)


class PeakMemory:
    """Extra peak resident memory of a block of code (see the module docstring for the method)."""

    def __enter__(self) -> PeakMemory:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.method, self.before = "VmHWM", _status_mb("VmRSS")
        except OSError:
            self.method = "ru_maxrss"
            self.before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        return self

    def __exit__(self, *exc) -> None:
        if self.method == "VmHWM":
            self.extra_mb = _status_mb("VmHWM") - self.before
        else:
            self.extra_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0 - self.before


def worker(name: str, tokens: int, channels: int, repeat: int) -> dict:
    """One case in this (fresh) process; returns extra peak memory and median time."""
    fn = function_for(name)
    gen = torch.Generator().manual_seed(0)
    qk = channels // 8

    def inputs(n):
        return (
            torch.randn(1, qk, n, generator=gen),
            torch.randn(1, qk, n, generator=gen),
            torch.randn(1, channels, n, generator=gen),
        )

    with torch.no_grad():
        fn(*inputs(256))  # library initialisation, not part of the measurement
        q, k, v = inputs(tokens)
        with PeakMemory() as mem:
            out = fn(q, k, v)
        del out
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn(q, k, v)
            times.append(time.perf_counter() - start)
    chunk = name[5:] if name.startswith("chunk") else (default_chunk_size(tokens) if name == "ours" else "")
    return {
        "peak_mb": mem.extra_mb,
        "method": mem.method,
        "time_s": statistics.median(times),
        "min_s": min(times),
        "chunk": chunk,
    }


def run_case(name: str, tokens: int, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        name,
        "--tokens",
        str(tokens),
        "--channels",
        str(args.channels),
    ]
    cmd += ["--repeat", str(args.repeat)]
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_equal(tokens: int, channels: int, names) -> None:
    """Outputs of every implementation against naive (float32) on a small case."""
    gen = torch.Generator().manual_seed(1)
    q, k = (
        torch.randn(1, channels // 8, tokens, generator=gen),
        torch.randn(1, channels // 8, tokens, generator=gen),
    )
    v = torch.randn(1, channels, tokens, generator=gen)
    with torch.no_grad():
        ref = naive(q, k, v)
        for name in names:
            err = (function_for(name)(q, k, v) - ref).abs().max().item()
            print(f"max |{name} - naive| at {tokens} tokens: {err:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, nargs="+", default=[1536, 6144, 24576])
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for the workers (0: default)")
    parser.add_argument("--impls", nargs="+", default=["naive", "ours", "sdpa"])
    parser.add_argument("--chunk-sizes", type=int, nargs="*", default=[], help="also time fixed chunk sizes")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.tokens[0], args.channels, args.repeat)))
        return

    names = list(args.impls) + [f"chunk{m}" for m in args.chunk_sizes]
    threads = args.threads or torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} thread(s), float32, batch 1, no grad")
    check_equal(700, args.channels, [n for n in names if n != "naive"])
    rows = {}
    for tokens in args.tokens:
        for name in names:
            rows[tokens, name] = run_case(name, tokens, args)
    method = next(iter(rows.values()))["method"]
    print(f"\nmedian (min) of {args.repeat} calls; peak = extra peak RSS of the first call ({method})")
    head = f"{'tokens':>7} {'impl':>9} {'chunk':>6} {'median ms':>10} {'(min ms)':>9} {'peak MB':>8}"
    print(f"{head} {'time/naive':>11} {'mem/naive':>10}")
    for tokens in args.tokens:
        base = rows.get((tokens, "naive"))
        for name in names:
            r = rows[tokens, name]
            ratio_t = f"{r['time_s'] / base['time_s']:.2f}" if base else "-"
            ratio_m = f"{r['peak_mb'] / base['peak_mb']:.3f}" if base else "-"
            times = f"{1e3 * r['time_s']:>10.1f} ({1e3 * r['min_s']:>7.1f})"
            row = f"{tokens:>7} {name:>9} {r['chunk']!s:>6} {times} {r['peak_mb']:>8.1f}"
            print(f"{row} {ratio_t:>11} {ratio_m:>10}")
    if (6144, "naive") in rows and (6144, "ours") in rows:
        n, o = rows[6144, "naive"], rows[6144, "ours"]
        ok = o["peak_mb"] <= n["peak_mb"] / 10 and o["time_s"] <= n["time_s"]
        less, speed = n["peak_mb"] / max(o["peak_mb"], 1e-9), n["time_s"] / o["time_s"]
        print(
            "\nDone-criterion at 6,144 tokens (peak <= 1/10 of naive and not slower, median times): "
            f"memory {less:.1f}x less, {speed:.2f}x the naive speed -> {'MET' if ok else 'NOT MET'}"
        )


if __name__ == "__main__":
    main()
