"""Evaluate predicted label maps against references: pairing by case, metrics, CSV/JSON/terminal tables.

Shared by `mpunet evaluate` and the Slicer batch script, so both report the same numbers.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

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


def pair_cases(
    predictions: Sequence[Case], references: Sequence[Case]
) -> Tuple[List[Tuple[Case, Case]], List[str]]:
    """Pair predictions with references by exact case name, else by `pairing_key`.

    Returns:
        The pairs, sorted by prediction name, and the names of predictions without a reference.
    """
    by_name = {r.name: r for r in references}
    by_key = {pairing_key(r.name): r for r in references}
    pairs, unmatched = [], []
    for prediction in predictions:
        reference = by_name.get(prediction.name) or by_key.get(pairing_key(prediction.name))
        if reference is None:
            unmatched.append(prediction.name)
        else:
            pairs.append((prediction, reference))
    return pairs, unmatched


def evaluate_pairs(
    pairs: Sequence[Tuple[Union[str, Path], Union[str, Path], str]],
    classes: Dict[str, Sequence[int]] = LITS_CLASSES,
) -> DiceAccumulator:
    """Metrics of every (prediction path, reference path, case name) with the reference's spacing.

    Raises:
        ValueError: a label map that cannot be read, or a pair whose grids differ.
    """
    from MPUNetCore.volume_io import read_label_map

    accumulator = DiceAccumulator(classes)
    for prediction_path, reference_path, name in pairs:
        prediction, reference = read_label_map(prediction_path), read_label_map(reference_path)
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
    prediction: Union[str, Path], reference: Union[str, Path]
) -> Tuple[DiceAccumulator, List[str]]:
    """Evaluate a prediction file or folder against a reference file or folder.

    Returns:
        The accumulator and the names of predictions that had no reference (skipped).

    Raises:
        ValueError: nothing could be paired.
    """
    predictions, references = discover_cases(prediction), discover_cases(reference, kind="label")
    if len(predictions) == 1 and len(references) == 1 and Path(prediction).is_file():
        pairs, unmatched = [(predictions[0], references[0])], []
    else:
        pairs, unmatched = pair_cases(predictions, references)
    if not pairs:
        raise ValueError(
            f"no prediction in {prediction} has a reference in {reference} with a matching case name"
        )
    return evaluate_pairs([(p.path, r.path, p.name) for p, r in pairs]), unmatched


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
