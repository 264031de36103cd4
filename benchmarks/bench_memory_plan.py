"""What a smaller window costs in labels: the memory planner's windows against the card's, on phantoms.

``--max-memory`` (``MPUNetCore.memory_plan``) makes the window smaller (depth first, then in-plane)
when a run would not fit its budget. This segments held-out phantoms with the demo model (trained
weights, its own card and grid) once with the card's window and once with each smaller window, and
prints the liver and tumour Dice of each smaller window's labels against the card window's labels
and against the phantom's truth.

Usage:
    python benchmarks/bench_memory_plan.py [--seeds 100 101] [--shape 160 512 512] \
        [--windows 16,96,96 16,64,64 8,0,0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from MPUNetCore.bundle import load_bundle  # noqa: E402
from MPUNetCore.inference import Preprocessing, segment  # noqa: E402
from MPUNetCore.phantom import make_phantom  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "MPUNetCore" / "models" / "demo-phantom.json"


def dice(a: np.ndarray, b: np.ndarray, value: int) -> float:
    """Dice of one label value (1.0 when both lack it)."""
    x, y = a == value, b == value
    total = int(x.sum()) + int(y.sum())
    return 1.0 if total == 0 else 2.0 * int((x & y).sum()) / total


def window(text: str):
    """A window written D,H,W (0: full extent)."""
    return tuple(int(v) or None for v in text.split(","))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEMO)
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101])
    parser.add_argument("--shape", type=int, nargs=3, default=(160, 512, 512), metavar=("Z", "Y", "X"))
    defaults = [window(w) for w in ("16,96,96", "16,64,64")]
    parser.add_argument("--windows", type=window, nargs="+", default=defaults)
    args = parser.parse_args(argv)
    bundle = load_bundle(args.model)
    prep = Preprocessing.from_dict(bundle.card.preprocessing)
    base = bundle.card.inference
    print(f"model {args.model.name}, card window {base.window}, phantoms {tuple(args.shape)}")
    for seed in args.seeds:
        image, truth = make_phantom(seed, tuple(args.shape))
        ct, ref = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(truth)
        labels = {}
        for win in [base.window, *args.windows]:
            start = time.perf_counter()
            labels[win] = segment(ct, image.GetSpacing(), bundle.model, prep, base.replace(window=win))
            seconds = time.perf_counter() - start
            card, got = labels[base.window], labels[win]
            print(
                f"seed {seed} window {win}: {seconds:.1f} s; vs card window liver "
                f"{dice(got, card, 1):.4f} tumour {dice(got, card, 2):.4f}, "
                f"{int((got != card).sum())} voxels differ; vs truth liver {dice(got, ref, 1):.4f} "
                f"tumour {dice(got, ref, 2):.4f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
