"""Time of one anatomical phantom (``MPUNetCore.phantoms.build_phantom``) at a clinical size.

Each seed draws its own protocol (spacing, slice thickness, phase) and patient, so the times spread;
the goal (issue 13) is a 512x512x200 phantom in at most 5 s on the 2-core development machine. The old
geometric generator (``MPUNetCore.phantom``) is timed alongside for reference with ``--legacy``.

Usage:
    python benchmarks/bench_phantom.py [--shape 200 512 512] [--seeds 0 1 2 3 4] [--legacy]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from MPUNetCore.phantoms import build_phantom  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(200, 512, 512), metavar=("Z", "Y", "X"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--legacy", action="store_true", help="also time MPUNetCore.phantom.make_phantom")
    parser.add_argument("--goal", type=float, default=5.0, help="seconds per phantom (default 5)")
    args = parser.parse_args(argv)
    shape = tuple(args.shape)
    build_phantom(0, (16, 64, 64))  # imports and first-call costs out of the timing
    times = []
    for seed in args.seeds:
        start = time.perf_counter()
        case = build_phantom(seed, shape)
        times.append(time.perf_counter() - start)
        sp = case.scanner
        print(f"seed {seed}: {times[-1]:.2f} s  spacing {sp.spacing} thickness {sp.thickness:.2f} mm "
              f"{sp.phase}, {case.n_tumors} tumours")  # fmt: skip
    print(f"anatomical {shape}: median {statistics.median(times):.2f} s, max {max(times):.2f} s "
          f"(goal <= {args.goal:.1f} s: {'met' if max(times) <= args.goal else 'NOT met'})")  # fmt: skip
    if args.legacy:
        from MPUNetCore.phantom import make_phantom

        legacy = []
        for seed in args.seeds:
            start = time.perf_counter()
            make_phantom(seed, shape)
            legacy.append(time.perf_counter() - start)
        print(f"legacy {shape}: median {statistics.median(legacy):.2f} s, max {max(legacy):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
