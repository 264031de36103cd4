"""Benchmark: the memory allocator under the network, in one interleaved run (issue 14, item 2).

Variants (each run in a fresh process, interleaved round-robin with a rotating start, ``--repeats``
times; median and spread reported, spread above 10 % flagged):

* ``glibc``: glibc's default malloc (``MPUNET_NO_ALLOCATOR_TUNING=1`` so that ``mpunet`` does not tune it);
* ``tunables``: what ``mpunet`` ships (``MPUNetCore.allocator.GLIBC_TUNABLES``); for the whole
  command the variable is not set by the benchmark: ``mpunet`` re-executes itself with it;
* ``tcmalloc``: ``LD_PRELOAD`` of Debian's ``libtcmalloc-minimal4`` (if installed);
* ``jemalloc``: ``LD_PRELOAD`` of Debian's ``libjemalloc2``, ``MALLOC_CONF`` as in the issue (if installed).

Workloads:

* ``forward``: ``--forwards`` forwards of the released-structure MPU-Net with the demo model's widths and
  weights on one ``--window`` window (the second and later forwards show the steady state);
* ``segment``: the whole ``mpunet segment`` of a phantom CT (``--ct-shape``) with the demo bundle.

Reported per run: wall seconds, user and system CPU seconds, minor page faults and peak RSS of the
child (``os.wait4``). Example::

    python benchmarks/bench_allocator.py --repeats 3 --workloads forward,segment --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from MPUNetCore.allocator import GLIBC_TUNABLES, MARKER, OPT_OUT  # noqa: E402

LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
JEMALLOC_CONF = "oversize_threshold:0,background_thread:true,dirty_decay_ms:-1,muzzy_decay_ms:-1"

FORWARD = """
import json, resource, sys, time, torch
sys.path.insert(0, {repo!r})
from MPUNetCore.networks import MPUNet
torch.set_num_threads({threads})
state = torch.load({weights!r}, map_location="cpu", weights_only=True)
state = state.get("net", state)
model = MPUNet(preset="released", out_channels=3, channels=(8, 16, 32, 48, 64), fusion="learned")
model.load_state_dict(state)
model.eval()
x = torch.randn(1, 1, *{window!r}, generator=torch.Generator().manual_seed(0))
out = []
for _ in range({forwards}):
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with torch.inference_mode():
        model(x)
    t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    out.append(dict(wall=t1 - t0, user=r1.ru_utime - r0.ru_utime, sys=r1.ru_stime - r0.ru_stime,
                    faults=r1.ru_minflt - r0.ru_minflt))
print(json.dumps(out))
"""


def variants(selected: List[str]) -> Dict[str, Optional[Dict[str, str]]]:
    """Environment additions per variant (None: not available here)."""
    tc, je = LIBDIR / "libtcmalloc_minimal.so.4", LIBDIR / "libjemalloc.so.2"
    table: Dict[str, Optional[Dict[str, str]]] = {
        "glibc": {OPT_OUT: "1"},
        "tunables": {},  # set below per workload
        "tcmalloc": {OPT_OUT: "1", "LD_PRELOAD": str(tc)} if tc.exists() else None,
        "jemalloc": {OPT_OUT: "1", "LD_PRELOAD": str(je), "MALLOC_CONF": JEMALLOC_CONF},
    }
    if not je.exists():
        table["jemalloc"] = None
    return {k: table[k] for k in selected}


def run_child(command: List[str], extra: Dict[str, str], threads: int) -> Dict[str, float]:
    """Run ``command`` with ``extra`` in the environment; wall, CPU, faults and peak RSS from wait4."""
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", MARKER, OPT_OUT, "LD_PRELOAD")}
    env.update(extra, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO))
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    if proc.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed ({proc.returncode}): {stderr[-2000:]}")
    return dict(
        wall=wall, user=usage.ru_utime, sys=usage.ru_stime, faults=usage.ru_minflt,
        rss_gib=usage.ru_maxrss / 2**20, stdout=stdout,
    )  # fmt: skip


def summary(values: List[float]) -> str:
    """'median (min-max, spread %)' with a flag when the spread exceeds 10 %."""
    med = statistics.median(values)
    spread = (max(values) - min(values)) / med * 100 if med else 0.0
    flag = " SPREAD>10%" if spread > 10 else ""
    if med >= 1000:  # page faults: thousands
        return f"{med / 1e3:.0f}k ({min(values) / 1e3:.0f}k-{max(values) / 1e3:.0f}k{flag})"
    return f"{med:.2f} ({min(values):.2f}-{max(values):.2f}, {spread:.0f}%{flag})"


def main() -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--variants", default="glibc,tunables,tcmalloc,jemalloc")
    parser.add_argument("--workloads", default="forward,segment")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--window", type=int, nargs=3, default=(48, 256, 256))
    parser.add_argument("--forwards", type=int, default=2)
    parser.add_argument("--ct-shape", type=int, nargs=3, default=(96, 512, 512))
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    args = parser.parse_args()

    table = variants(args.variants.split(","))
    missing = [k for k, v in table.items() if v is None]
    chosen = [k for k, v in table.items() if v is not None]
    tmp = Path(tempfile.mkdtemp(prefix="bench_alloc_"))
    weights = str(REPO / "MPUNetCore" / "models" / "demo-phantom.pt")
    commands: Dict[str, List[str]] = {}
    if "forward" in args.workloads:
        code = FORWARD.format(repo=str(REPO), threads=args.threads, weights=weights,
                              window=tuple(args.window), forwards=args.forwards)  # fmt: skip
        commands["forward"] = [sys.executable, "-c", code]
    if "segment" in args.workloads:
        import SimpleITK as sitk

        from MPUNetCore.phantom import make_phantom

        image, _ = make_phantom(0, tuple(args.ct_shape), (0.8, 0.8, 2.0))
        sitk.WriteImage(image, str(tmp / "ct.nii.gz"))
        io = [str(tmp / "ct.nii.gz"), "-o", str(tmp / "out.nii.gz"), "--overwrite"]
        options = ["--device", "cpu", "--progress", "none"]
        commands["segment"] = [sys.executable, "-m", "MPUNetCore", "segment", *io, *options]

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line), "?")
    print(f"CPU {cpu}, {os.cpu_count()} cores, {args.threads} threads, glibc {platform.libc_ver()[1]}, "
          f"load average {os.getloadavg()[0]:.1f} at start; not available: {missing or 'none'}")  # fmt: skip
    results: Dict[str, Dict[str, List[Dict[str, float]]]] = {w: {v: [] for v in chosen} for w in commands}
    for rep in range(args.repeats):
        for workload, command in commands.items():
            order = chosen[rep % len(chosen) :] + chosen[: rep % len(chosen)]
            for name in order:
                extra = dict(table[name] or {})
                if name == "tunables" and workload == "forward":
                    extra["GLIBC_TUNABLES"] = GLIBC_TUNABLES  # python -c: set it as the module does
                row = run_child(command, extra, args.threads)
                if workload == "forward":
                    forwards = json.loads(row.pop("stdout"))
                    row.update({f"fwd{i}_{k}": v for i, f in enumerate(forwards) for k, v in f.items()})
                else:
                    row.pop("stdout")
                results[workload][name].append(row)
                line = f"rep {rep} {workload:8s} {name:9s} wall {row['wall']:.1f}s sys {row['sys']:.1f}s"
                print(line, flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    for workload, per in results.items():
        keys = ["wall", "user", "sys", "faults", "rss_gib"]
        if workload == "forward":
            last = args.forwards - 1
            keys = [f"fwd{last}_wall", f"fwd{last}_sys", f"fwd{last}_faults", "rss_gib"]
        print(f"\n{workload} (median (min-max, spread) over {args.repeats} runs)")
        print("| variant | " + " | ".join(keys) + " |")
        print("|---" * (len(keys) + 1) + "|")
        for name, rows in per.items():
            print(f"| {name} | " + " | ".join(summary([r[k] for r in rows]) for k in keys) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
