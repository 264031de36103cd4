"""Segment the real 3-slice CT with a model and measure its liver Dice; optionally draw the result.

The CT is ``Testing/data/dcmqi-liver-ct-3slice`` (three axial slices, 0.81 mm pixels, 1 mm apart;
its liver segmented semi-automatically in 3D Slicer: ``liver_seg.nrrd``). It has no tumour, so every
tumour voxel the model finds is a false positive (reported as a count). Three slices are far too little
to rate a model: the Dice is a sanity check that the model finds the liver in a real scan, and the
figure shows what it found::

    python Utilities/eval_real_ct.py                                    # the bundled demo model
    python Utilities/eval_real_ct.py --model path/to/card.json --figure docs/real-ct-prediction.png
    python Utilities/eval_real_ct.py --run /work/runs/phantom_demo_v3   # a run's best checkpoint so far
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Dict, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
REAL = ROOT / "Testing" / "data" / "dcmqi-liver-ct-3slice"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def evaluate(card: Path, work: Path, device: str = "cpu", label: Optional[str] = None) -> Dict:
    """Segment the real CT with the bundle of ``card``; returns the scores and the arrays.

    ``label`` names the model in the scores and the figure (default: the card's name and version).
    """
    import SimpleITK as sitk

    from MPUNetCore.bundle import load_bundle
    from MPUNetCore.inference import select_device
    from MPUNetCore.pipeline import segment_file
    from MPUNetCore.registry import resolve_model

    bundle = load_bundle(resolve_model(str(card)), device=select_device(device))
    output = segment_file(REAL, work / "real-ct-prediction.nii.gz", bundle, overwrite=True, device=device)
    predicted = sitk.GetArrayFromImage(sitk.ReadImage(str(output)))
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(REAL / "liver_seg.nrrd"))) > 0
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(REAL)))
    ct = sitk.GetArrayFromImage(reader.Execute())
    scores = {
        "model": label or f"{bundle.card.name} {bundle.card.version}",
        "liver_dice": round(dice(predicted >= 1, reference), 4),
        "liver_dice_per_slice": [round(dice(p >= 1, r), 4) for p, r in zip(predicted, reference)],
        "reference_liver_voxels": int(reference.sum()),
        "predicted_liver_voxels": int((predicted >= 1).sum()),
        "predicted_tumour_voxels": int((predicted == 2).sum()),
    }
    return {"scores": scores, "ct": ct, "predicted": predicted, "reference": reference}


def draw(result: Dict, path: Path, window=(400.0, 40.0)) -> None:
    """The three slices at the window: reference liver green, predicted liver red, predicted tumour yellow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width, level = window
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.6), facecolor="black")
    for k, ax in enumerate(axes):
        ax.set_axis_off()
        ax.imshow(result["ct"][k], cmap="gray", vmin=level - width / 2, vmax=level + width / 2)
        ax.contour(result["reference"][k], [0.5], colors="lime", linewidths=0.8)
        if (result["predicted"][k] >= 1).any():
            ax.contour(result["predicted"][k] >= 1, [0.5], colors="red", linewidths=0.8)
        if (result["predicted"][k] == 2).any():
            ax.contour(result["predicted"][k] == 2, [0.5], colors="yellow", linewidths=0.8)
        ax.set_title(
            f"slice {k + 1}: liver Dice {result['scores']['liver_dice_per_slice'][k]:.3f}", color="white"
        )
    scores = result["scores"]
    fig.suptitle(
        f"{scores['model']} on the real CT (W{width:.0f}/L{level:.0f}); green: reference liver, "
        f"red: predicted liver, yellow: predicted tumour; liver Dice {scores['liver_dice']:.3f}",
        color="white",
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=60, facecolor="black")


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", default=None, help="card .json or registry name (default: bundled demo)")
    source.add_argument("--run", type=Path, help="a training run folder: its best checkpoint so far")
    parser.add_argument("--figure", type=Path, help="write the slices with the prediction to this PNG")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if not REAL.is_dir():
        print(f"the real CT is not at {REAL}: nothing to evaluate", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        card = args.model or str(ROOT / "MPUNetCore" / "models" / "demo-phantom.json")
        label = None
        if args.run:
            from Training.export import export_run
            from Training.runfolder import RunFolder
            from Training.trainer import load_checkpoint

            card = export_run(args.run, output=work / "bundle" / "run-best.json")
            epoch = load_checkpoint(RunFolder(args.run).best).get("epoch")
            label = f"run {args.run.name}, best checkpoint so far (epoch {epoch})"
        result = evaluate(Path(card), work, args.device, label)
    print(json.dumps(result["scores"]))
    if args.figure:
        draw(result, args.figure)
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
