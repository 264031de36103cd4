"""Inputs of the README's profile run: the demo weights as a bundle on the released grid, and a phantom CT.

    python benchmarks/profile_inputs.py OUT_DIR [--shape 200 512 512]
    python -m MPUNetCore segment OUT_DIR/ct.nii.gz -o out.nii.gz --model OUT_DIR/demo-released.json --profile

The bundle holds ``MPUNetCore/models/demo-phantom.pt`` (released structure, widths 8-64, learned fusion)
with the released preprocessing (HU [-200, 200] / 200, in-plane x0.5, 1 mm slices) and window
48 x 256 x 256, overlap 0.25; the CT is the phantom of seed 0 at 0.75 x 0.75 x 1 mm (as in bench_inference).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    import SimpleITK as sitk
    import torch

    from MPUNetCore.bundle import ModelCard, SegmentClass, build_network, save_bundle
    from MPUNetCore.phantom import make_phantom

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("--shape", type=int, nargs=3, default=(200, 512, 512))
    args = parser.parse_args()
    overrides = {"channels": [8, 16, 32, 48, 64], "fusion": "learned"}
    arch = dict(
        network="MPUNet",
        spatial_dims=3,
        in_channels=1,
        out_channels=3,
        preset="released",
        overrides=overrides,
    )
    model = build_network(arch)
    state = torch.load(
        REPO / "MPUNetCore" / "models" / "demo-phantom.pt", map_location="cpu", weights_only=True
    )
    model.load_state_dict(state.get("net", state))
    classes = [SegmentClass(0, "Background"), SegmentClass(1, "Liver"), SegmentClass(2, "Liver tumor")]
    prep = dict(hu_window=[-200, 200], scale=200, inplane_factor=0.5, target_spacing=None, slice_spacing=1.0)
    inference = dict(window=[48, 256, 256], overlap=0.25)
    card = ModelCard(
        name="demo-released-grid", architecture=arch, classes=classes, preprocessing=prep, inference=inference
    )
    save_bundle(model, card, args.out / "demo-released.json")
    image, _ = make_phantom(0, tuple(args.shape), (0.75, 0.75, 1.0))  # = bench_inference.synthetic_ct
    sitk.WriteImage(image, str(args.out / "ct.nii.gz"))
    print(f"wrote {args.out / 'demo-released.json'} and {args.out / 'ct.nii.gz'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
