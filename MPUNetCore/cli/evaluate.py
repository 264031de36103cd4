"""`mpunet evaluate`: compare predicted label maps with reference labels (paper and LiTS metrics)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from MPUNetCore.evaluation import MISSING_PREDICTION, MISSING_REFERENCE


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
    parser.add_argument(
        "--out", type=Path, help="write the metrics to this .csv or .json file (never one of the inputs)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument(
        "--missing-prediction",
        choices=MISSING_PREDICTION,
        default="error",
        help="a reference case without a prediction: error (list them, exit 1; the default), empty (count "
        "it as an empty segmentation, the LiTS rule: Dice 0) or skip (leave it out of means and Dice global)",
    )
    parser.add_argument(
        "--missing-reference",
        choices=MISSING_REFERENCE,
        default="error",
        help="a prediction without a reference: error (list them, exit 1; the default) or skip",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from MPUNetCore.cases import discover_cases
    from MPUNetCore.evaluation import write_metrics
    from MPUNetCore.fileutils import check_writable
    from MPUNetCore.output_guard import input_files, refuse_outputs_onto_inputs, reserve_output

    if args.out is None:
        return 0 if _evaluate(args) is not None else 1
    cases = discover_cases(args.pred) + discover_cases(args.ref, kind="label")
    refuse_outputs_onto_inputs([args.out], input_files(case.path for case in cases))
    if args.out.suffix.lower() not in (".csv", ".json"):
        raise ValueError(f"--out {args.out}: name the metrics file with .csv or .json")
    check_writable(args.out, args.overwrite)
    with reserve_output(args.out):  # a second run writing the same file refuses at once
        accumulator = _evaluate(args)
        if accumulator is None:
            return 1
        print(f"wrote {write_metrics(accumulator, args.out, args.overwrite)}")
    return 0


def _evaluate(args: argparse.Namespace):
    """Print the table and what was left unpaired; None (after listing them) when cases are unpaired."""
    from MPUNetCore.evaluation import UnmatchedCasesError, evaluate_paths, format_table

    try:
        result = evaluate_paths(args.pred, args.ref, args.missing_prediction, args.missing_reference)
    except UnmatchedCasesError as error:
        print(f"mpunet evaluate: error: {error}", file=sys.stderr)
        return None
    print(format_table(result.accumulator))
    if result.counted_empty:
        print(f"counted as empty predictions (LiTS rule): {', '.join(result.counted_empty)}")
    elif result.missing_predictions:
        print(f"left out, no prediction: {', '.join(result.missing_predictions)}")
    if result.missing_references:
        print(f"left out, no reference: {', '.join(result.missing_references)}")
    return result.accumulator
