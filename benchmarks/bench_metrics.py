"""Time and peak memory of ``segmentation_metrics`` vs MONAI on a large pair of blobby masks.

Each contender runs in its own subprocess, so its peak RSS is its own. MONAI computes what our
function reports among its 17 values: ``compute_dice`` + ``compute_hausdorff_distance(percentile=95)`` +
``compute_average_surface_distance(symmetric=True)``, on float32 (B, C, D, H, W) tensors (its usual
input); ours gets NumPy bool masks and also computes the other metrics (MSD, RMSD, the confusion
matrix).

Usage:
    python benchmarks/bench_metrics.py [--shape 200 512 512] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SPACING = (1.0, 0.78, 0.78)  # (z, y, x) mm, a typical abdominal CT


def _ellipsoid(mask, centre, radii):
    """OR an ellipsoid into ``mask``, evaluating only inside its bounding box."""
    lo = [max(0, int(c - r) - 1) for c, r in zip(centre, radii)]
    hi = [min(s, int(c + r) + 2) for s, c, r in zip(mask.shape, centre, radii)]
    grid = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
    inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1
    mask[tuple(slice(a, b) for a, b in zip(lo, hi))] |= inside


def make_masks(shape, seed=0):
    """A liver-sized blob plus small blobs (reference), and a perturbed copy (prediction)."""
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    ref = np.zeros(shape, bool)
    pred = np.zeros(shape, bool)
    centre = np.array(shape) / 2
    big = np.array(shape) * np.array([0.35, 0.3, 0.25])
    _ellipsoid(ref, centre, big)
    _ellipsoid(pred, centre + rng.normal(0, 3, 3), big * rng.uniform(0.93, 1.05, 3))
    for _ in range(25):  # lobes, tumours, false positives
        c = rng.uniform(0.15, 0.85, 3) * shape
        r = rng.uniform(4, 25, 3) * np.array([0.5, 1, 1])
        target = ref if rng.random() < 0.6 else pred
        _ellipsoid(target, c, r)
        if rng.random() < 0.5:
            _ellipsoid(ref if target is pred else pred, c + rng.normal(0, 2, 3), r)
    return pred, ref


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_one(which, shape, threads):
    import SimpleITK as sitk
    import torch

    torch.set_num_threads(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    pred, ref = make_masks(shape)
    if which == "ours":
        sys.path.insert(0, str(REPO))
        from MPUNetCore.metrics import segmentation_metrics

        before = peak_rss_mb()
        start = time.perf_counter()
        m = segmentation_metrics(pred, ref, SPACING)
        seconds = time.perf_counter() - start
        values = {k: m[k] for k in ("dice", "hd95", "assd", "msd")}
    else:
        from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance

        p = torch.from_numpy(pred)[None, None].float()
        r = torch.from_numpy(ref)[None, None].float()
        del pred, ref
        before = peak_rss_mb()
        start = time.perf_counter()
        dice = compute_dice(p, r, include_background=True)
        hd95 = compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=SPACING)
        assd = compute_average_surface_distance(
            p, r, include_background=True, symmetric=True, spacing=SPACING
        )
        seconds = time.perf_counter() - start
        values = {"dice": float(dice), "hd95": float(hd95), "assd": float(assd)}
    peak = peak_rss_mb()
    print(json.dumps({"which": which, "seconds": seconds, "rss_before_mb": before, "peak_rss_mb": peak,
                      "extra_mb": peak - before, "values": values}))  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[200, 512, 512], help="z y x")
    parser.add_argument("--threads", type=int, default=1, help="torch and SimpleITK threads")
    parser.add_argument("--only", choices=["ours", "monai"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        run_one(args.only, args.shape, args.threads)
        return
    results = {}
    for which in ("ours", "monai"):
        cmd = [sys.executable, __file__, "--only", which, "--threads", str(args.threads), "--shape"]
        out = subprocess.run(cmd + [str(s) for s in args.shape], check=True, capture_output=True, text=True)
        results[which] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"shape (z,y,x) {tuple(args.shape)}, spacing {SPACING} mm, {args.threads} thread(s)")
    print(f"{'':6} {'time s':>8} {'extra RSS MB':>13} {'peak RSS MB':>12}  values")
    for which, r in results.items():
        vals = ", ".join(f"{k}={v:.4f}" for k, v in r["values"].items())
        print(f"{which:6} {r['seconds']:8.2f} {r['extra_mb']:13.0f} {r['peak_rss_mb']:12.0f}  {vals}")
    ours, monai = results["ours"], results["monai"]
    print(f"MONAI/ours: time x{monai['seconds'] / ours['seconds']:.1f}, "
          f"extra RSS x{monai['extra_mb'] / max(ours['extra_mb'], 1):.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
