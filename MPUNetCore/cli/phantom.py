"""`mpunet phantom`: write synthetic abdominal CT phantoms in the LiTS layout."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "phantom",
        help="write synthetic CT phantoms with liver/tumour labels (LiTS layout)",
        description="Write volume-N.nii.gz / segmentation-N.nii.gz synthetic abdominal CT phantoms.",
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
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from MPUNetCore.phantom import write_lits_folder

    if args.cases < 1:
        raise ValueError("--cases must be at least 1")
    options = {"shape": tuple(args.shape)} if args.shape else {}
    pairs = write_lits_folder(
        args.outdir, cases=args.cases, seed=args.seed, overwrite=args.overwrite, **options
    )
    for volume, label in pairs:
        print(f"wrote {volume} and {label}")
    return 0
