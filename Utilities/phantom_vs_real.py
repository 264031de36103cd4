"""Draw ``docs/phantom-vs-real.png``: anatomical phantom slices beside the real CT slice, same window.

The real CT is the 3-slice abdominal series of ``Testing/data/dcmqi-liver-ct-3slice`` (0.81 mm
pixels). The phantoms are generated on the same 512x512 grid at 1 mm slices, one per contrast phase
plus a randomised-HU case, and the slice shown is where the phantom's liver is largest (near the dome,
like the real slice). All panels use the same window (W400/L40 by default); red is the liver label,
yellow the tumour label::

    python Utilities/phantom_vs_real.py [--seeds 3 5 8 13 21] [--output docs/phantom-vs-real.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
REAL = ROOT / "Testing" / "data" / "dcmqi-liver-ct-3slice"
PHASES = ("non_contrast", "arterial", "portal_venous", "delayed", "portal_venous")


def real_slice():
    """The middle slice of the real CT (HU) and its liver mask, or (None, None) when the data is absent."""
    import SimpleITK as sitk

    if not REAL.is_dir():
        return None, None
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(REAL)))
    image = sitk.GetArrayFromImage(reader.Execute())
    liver = sitk.GetArrayFromImage(sitk.ReadImage(str(REAL / "liver_seg.nrrd")))
    return image[1], liver[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs=5, default=[3, 5, 8, 13, 21])
    parser.add_argument("--window", type=float, nargs=2, default=[400, 40], metavar=("WIDTH", "LEVEL"))
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "phantom-vs-real.png")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import SimpleITK as sitk

    from MPUNetCore.phantoms import build_phantom

    width, level = args.window
    lo, hi = level - width / 2, level + width / 2
    real, real_liver = real_slice()
    fig, axes = plt.subplots(2, 3, figsize=(15, 10.4), facecolor="black")
    panels = [("real CT (dcmqi, 0.81 mm)", real, real_liver, None)]
    for k, seed in enumerate(args.seeds):
        case = build_phantom(
            seed, (40, 512, 512), spacing=(0.81, 0.81, 1.0), phase=PHASES[k], synthseg=k == 4
        )
        hu, label = sitk.GetArrayFromImage(case.image), sitk.GetArrayFromImage(case.label)
        z = int(np.argmax((label >= 1).sum((1, 2))))
        name = "randomised HU" if k == 4 else case.phase.replace("_", " ")
        panels.append((f"phantom seed {seed}, {name}", hu[z], label[z] >= 1, label[z] == 2))
    for ax, (title, hu, liver, tumour) in zip(axes.ravel(), panels):
        ax.set_axis_off()
        ax.set_title(title, color="white", fontsize=11)
        if hu is None:
            ax.text(0.5, 0.5, "real CT not found", color="white", ha="center", transform=ax.transAxes)
            continue
        ax.imshow(hu, cmap="gray", vmin=lo, vmax=hi, interpolation="bilinear")
        ax.contour(liver, [0.5], colors="red", linewidths=0.7)
        if tumour is not None and tumour.any():
            ax.contour(tumour, [0.5], colors="yellow", linewidths=0.7)
    fig.suptitle(f"Window W{width:.0f}/L{level:.0f}; red: liver label, yellow: tumour label", color="white")
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=60, facecolor="black")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
