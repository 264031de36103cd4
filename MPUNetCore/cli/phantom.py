"""`mpunet phantom`: write synthetic abdominal CT phantoms in the LiTS layout."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "phantom",
        help="write synthetic CT phantoms with liver/tumour labels (LiTS layout)",
        description="Write volume-N.nii.gz / segmentation-N.nii.gz synthetic abdominal CT phantoms: "
        "anatomical (liver with vessels and tumours among its neighbours, a drawn scanner protocol and "
        "contrast phase) or, with --legacy, the older geometric phantoms that the demo model 0.2.0 "
        "was trained on.",
    )
    parser.add_argument("outdir", type=Path, help="output folder")
    parser.add_argument("--cases", type=int, default=1, help="number of cases (default 1)")
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed; the same seed gives the same phantoms"
    )
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        metavar=("Z", "Y", "X"),
        default=None,
        help="array size in voxels (default: the generator's)",
    )
    parser.add_argument(
        "--synthseg-fraction",
        type=float,
        default=0.0,
        help="fraction of cases with randomised soft-tissue HU (domain randomisation; default 0)",
    )
    parser.add_argument("--legacy", action="store_true", help="the older geometric generator")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.cases < 1:
        raise ValueError("--cases must be at least 1")
    options = {"shape": tuple(args.shape)} if args.shape else {}
    if args.legacy:
        if args.synthseg_fraction:
            raise ValueError("--synthseg-fraction needs the anatomical generator; drop --legacy")
        from MPUNetCore.phantom import write_lits_folder
    else:
        from MPUNetCore.phantoms import write_lits_folder

        options["synthseg_fraction"] = args.synthseg_fraction
    pairs = write_lits_folder(
        args.outdir, cases=args.cases, seed=args.seed, overwrite=args.overwrite, **options
    )
    for volume, label in pairs:
        print(f"wrote {volume} and {label}")
    return 0
