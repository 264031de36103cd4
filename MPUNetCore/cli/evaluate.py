"""`mpunet evaluate`: compare predicted label maps with reference labels (paper and LiTS metrics)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "evaluate",
        help="metrics of predictions against reference labels",
        description=(
            "Per-case metrics of every class (liver = labels 1 and 2, tumour = label 2, as LiTS), their "
            "means, and Dice global. Folders are paired by case name (volume-N ~ segmentation-N)."
        ),
    )
    parser.add_argument("--pred", type=Path, required=True, help="predicted label map file or folder")
    parser.add_argument("--ref", type=Path, required=True, help="reference label map file or folder")
    parser.add_argument("--out", type=Path, help="write the metrics to this .csv or .json file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from MPUNetCore.evaluation import evaluate_paths, format_table, write_metrics
    from MPUNetCore.fileutils import check_writable

    if args.out:
        check_writable(args.out, args.overwrite)
    accumulator, unmatched = evaluate_paths(args.pred, args.ref)
    print(format_table(accumulator))
    if unmatched:
        print(f"no reference for: {', '.join(unmatched)} (skipped)", file=sys.stderr)
    if args.out:
        print(f"wrote {write_metrics(accumulator, args.out, args.overwrite)}")
    return 0
