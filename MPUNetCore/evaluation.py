"""Evaluate predicted label maps against references: pairing by case, metrics, CSV/JSON/terminal tables.

Shared by `mpunet evaluate` and the Slicer batch script, so both report the same numbers.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np

from MPUNetCore.cases import Case, discover_cases
from MPUNetCore.fileutils import atomic_output
from MPUNetCore.metrics import LITS_CLASSES, DiceAccumulator

# LiTS and common tools name the CT "volume-N" and its label "segmentation-N"; match on "N".
_LABEL_AFFIXES = re.compile(
    r"^(volume|segmentation|labels?|seg|ct|image)[-_]|[-_](seg|label|labels|mpunet)$", re.IGNORECASE
)


def pairing_key(name: str) -> str:
    """The part of a case name that pairs a prediction with its reference (`segmentation-3` → `3`)."""
    return _LABEL_AFFIXES.sub("", name)


#: How a reference without a prediction is counted: refused (listed, exit 1), as an empty prediction
#: (the LiTS rule: a case the method did not segment scores Dice 0), or left out of the means.
MISSING_PREDICTION = ("error", "empty", "skip")
#: How a prediction without a reference is counted: refused (listed, exit 1) or left out.
MISSING_REFERENCE = ("error", "skip")


class UnmatchedCasesError(ValueError):
    """Cases on one side without a partner on the other, and no rule said how to count them.

    Attributes:
        missing_predictions: names of reference cases that have no prediction.
        missing_references: names of predictions that have no reference.
    """

    def __init__(self, message: str, missing_predictions: List[str], missing_references: List[str]):
        super().__init__(message)
        self.missing_predictions = missing_predictions
        self.missing_references = missing_references


@dataclass
class Evaluation:
    """The metrics of a prediction/reference pairing and what was left unpaired.

    Attributes:
        accumulator: per-case metrics (cases counted as empty predictions included).
        missing_predictions: reference cases without a prediction.
        missing_references: predictions without a reference (never counted).
        counted_empty: the subset of `missing_predictions` scored against an empty prediction.
    """

    accumulator: DiceAccumulator
    missing_predictions: List[str] = field(default_factory=list)
    missing_references: List[str] = field(default_factory=list)
    counted_empty: List[str] = field(default_factory=list)


def pair_cases(
    predictions: Sequence[Case], references: Sequence[Case]
) -> Tuple[List[Tuple[Case, Case]], List[Case], List[Case]]:
    """Pair predictions with references by exact case name, else by `pairing_key`.

    Returns:
        The pairs, sorted by prediction name; the predictions without a reference; the references
        without a prediction.
    """
    by_name = {r.name: r for r in references}
    by_key = {pairing_key(r.name): r for r in references}
    pairs, no_reference = [], []
    for prediction in predictions:
        reference = by_name.get(prediction.name) or by_key.get(pairing_key(prediction.name))
        if reference is None:
            no_reference.append(prediction)
        else:
            pairs.append((prediction, reference))
    used = {id(r) for _, r in pairs}
    return pairs, no_reference, [r for r in references if id(r) not in used]


def evaluate_pairs(
    pairs: Sequence[Tuple[Union[str, Path, None], Union[str, Path], str]],
    classes: Dict[str, Sequence[int]] = LITS_CLASSES,
) -> DiceAccumulator:
    """Metrics of every (prediction path, reference path, case name) with the reference's spacing.

    A prediction path of None counts as an empty prediction (all background) on the reference's grid.

    Raises:
        ValueError: a label map that cannot be read, or a pair whose grids differ.
    """
    from MPUNetCore.volume_io import read_label_map

    accumulator = DiceAccumulator(classes)
    for prediction_path, reference_path, name in pairs:
        reference = read_label_map(reference_path)
        if prediction_path is None:
            accumulator.add(
                name, np.zeros_like(reference.array), reference.array, spacing=tuple(reference.spacing)[::-1]
            )
            continue
        prediction = read_label_map(prediction_path)
        if prediction.array.shape != reference.array.shape or not _same_grid(prediction, reference):
            raise ValueError(
                f"{name}: the prediction {prediction_path} and the reference {reference_path} lie on "
                "different grids (size, spacing, origin or direction); resample one onto the other first"
            )
        accumulator.add(name, prediction.array, reference.array, spacing=tuple(reference.spacing)[::-1])
    return accumulator


def _same_grid(a, b, tolerance: float = 1e-3) -> bool:
    values = zip((*a.spacing, *a.origin, *a.direction), (*b.spacing, *b.origin, *b.direction))
    return all(abs(x - y) <= tolerance * max(1.0, abs(y)) for x, y in values)


def evaluate_paths(
    prediction: Union[str, Path],
    reference: Union[str, Path],
    missing_prediction: str = "error",
    missing_reference: str = "error",
) -> Evaluation:
    """Evaluate a prediction file or folder against a reference file or folder.

    Args:
        prediction: a predicted label map or a folder of them.
        reference: a reference label map or a folder of them.
        missing_prediction: a reference case without a prediction: "error" (refuse), "empty" (count it
            as an empty prediction, the LiTS rule) or "skip" (leave it out).
        missing_reference: a prediction without a reference: "error" or "skip".

    Returns:
        The metrics and what was left unpaired.

    Raises:
        UnmatchedCasesError: unpaired cases under an "error" rule (nothing is computed then).
        ValueError: an unknown rule, or nothing could be paired.
    """
    if missing_prediction not in MISSING_PREDICTION or missing_reference not in MISSING_REFERENCE:
        raise ValueError(
            f"missing_prediction must be one of {MISSING_PREDICTION} and missing_reference one of "
            f"{MISSING_REFERENCE}; got {missing_prediction!r}, {missing_reference!r}"
        )
    predictions, references = discover_cases(prediction), discover_cases(reference, kind="label")
    if len(predictions) == 1 and len(references) == 1 and Path(prediction).is_file():
        pairs, no_reference, no_prediction = [(predictions[0], references[0])], [], []
    else:
        pairs, no_reference, no_prediction = pair_cases(predictions, references)
    result = Evaluation(
        DiceAccumulator(LITS_CLASSES),
        missing_predictions=[r.name for r in no_prediction],
        missing_references=[p.name for p in no_reference],
    )
    refused = []
    if result.missing_predictions and missing_prediction == "error":
        refused.append(
            f"{len(no_prediction)} reference case(s) in {reference} have no prediction in {prediction}: "
            f"{_names(result.missing_predictions)}"
        )
    if result.missing_references and missing_reference == "error":
        refused.append(
            f"{len(no_reference)} prediction(s) in {prediction} have no reference in {reference}: "
            f"{_names(result.missing_references)}"
        )
    if refused:
        raise UnmatchedCasesError(
            "; ".join(refused) + ". Nothing was evaluated. Say how to count them: "
            "--missing-prediction empty (LiTS: a missing prediction scores as an empty segmentation) or "
            "skip (leave the case out), --missing-reference skip",
            result.missing_predictions,
            result.missing_references,
        )
    todo = [(p.path, r.path, p.name) for p, r in pairs]
    if missing_prediction == "empty":
        todo += [(None, r.path, r.name) for r in no_prediction]
        result.counted_empty = list(result.missing_predictions)
    if not todo:
        raise ValueError(
            f"no prediction in {prediction} has a reference in {reference} with a matching case name"
        )
    result.accumulator = evaluate_pairs(todo)
    return result


def _names(names: Sequence[str], shown: int = 10) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def summary_rows(accumulator: DiceAccumulator) -> List[Dict[str, object]]:
    """Rows "mean" (NaN-skipping means of every metric) and "global" (pooled Dice) for each class."""
    rows: List[Dict[str, object]] = []
    for name, summary in accumulator.summary().items():
        mean = {k[len("mean_") :]: v for k, v in summary.items() if k.startswith("mean_")}
        rows.append({"case_id": "mean", "class": name, **mean})
        rows.append({"case_id": "global", "class": name, "dice": summary["dice_global"]})
    return rows


def write_metrics(accumulator: DiceAccumulator, path: Union[str, Path], overwrite: bool = False) -> Path:
    """Write per-case metrics plus mean and global rows as CSV, or as JSON when `path` ends in .json."""
    path = Path(path)
    with atomic_output(path, overwrite) as tmp:
        if path.suffix.lower() == ".json":
            data = {"cases": accumulator.cases, "summary": accumulator.summary()}
            tmp.write_text(json.dumps(data, indent=2, default=_json_number) + "\n", encoding="utf-8")
        else:
            with open(tmp, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=accumulator.fieldnames(), restval="")
                writer.writeheader()
                writer.writerows(accumulator.rows() + summary_rows(accumulator))
    return path


def _json_number(value):
    return float(value)


def format_table(
    accumulator: DiceAccumulator, metrics: Sequence[str] = ("dice", "iou", "assd", "hd95")
) -> str:
    """A readable fixed-width table: one line per case, then mean and global Dice per class."""
    classes = list(accumulator.classes)
    header = f"{'case':<24}" + "".join(f"{c[:6] + ' ' + m:>14}" for c in classes for m in metrics)
    lines = [header, "-" * len(header)]

    def cell(value) -> str:
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        return f"{'n/a' if missing else f'{value:.4f}':>14}"

    for case_id, values in accumulator.cases.items():
        lines.append(f"{case_id[:24]:<24}" + "".join(cell(values[c][m]) for c in classes for m in metrics))
    summary = accumulator.summary()
    lines.append("-" * len(header))
    lines.append(
        f"{'mean':<24}" + "".join(cell(summary[c].get(f"mean_{m}")) for c in classes for m in metrics)
    )
    globals_ = "   ".join(f"{c} {summary[c]['dice_global']:.4f}" for c in classes)
    lines.append(f"Dice global (pooled over {len(accumulator)} case(s)): {globals_}")
    return "\n".join(lines)
