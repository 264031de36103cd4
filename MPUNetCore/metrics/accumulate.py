"""Aggregating metrics over many cases: NaN-aware means and LiTS Dice per case / Dice global."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence

from .segmentation import LITS_CLASSES, METRIC_KEYS, label_metrics


class MeanMetrics(NamedTuple):
    """Result of :func:`mean_metrics`.

    Attributes:
        mean: Mean of every numeric key over the cases where it is a finite number (NaN if none).
        n_missing: How many cases had the key NaN or absent (e.g. distances with one empty mask).
        n_cases: Number of input dicts.
    """

    mean: Dict[str, float]
    n_missing: Dict[str, int]
    n_cases: int


def mean_metrics(per_case: Iterable[Mapping[str, Any]]) -> MeanMetrics:
    """Average metric dicts key by key, skipping NaN ("missing") values and counting them.

    Non-numeric entries (case ids, class names) and booleans are ignored. No warning is raised when a
    key is missing everywhere: its mean is NaN and its missing count equals the number of cases.

    Args:
        per_case: Metric dicts, e.g. from :func:`segmentation_metrics` or :meth:`DiceAccumulator.rows`.

    Returns:
        A :class:`MeanMetrics` (``mean``, ``n_missing``, ``n_cases``).
    """
    cases = list(per_case)
    keys: List[str] = []
    for case in cases:
        for key, value in case.items():
            if isinstance(value, Real) and not isinstance(value, bool) and key not in keys:
                keys.append(key)
    mean: Dict[str, float] = {}
    missing: Dict[str, int] = {}
    for key in keys:
        values = [float(case[key]) for case in cases if isinstance(case.get(key), Real)]
        finite = [v for v in values if not math.isnan(v)]
        mean[key] = math.fsum(finite) / len(finite) if finite else math.nan
        missing[key] = len(cases) - len(finite)
    return MeanMetrics(mean, missing, len(cases))


class DiceAccumulator:
    """Collects per-case label metrics and reports LiTS Dice per case and Dice global per class.

    Dice per case is the mean of the per-volume Dice scores; Dice global pools TP, FP and FN over all
    volumes: ``2*sum(TP) / (2*sum(TP) + sum(FP) + sum(FN))`` (1.0 when every volume is empty for that
    class).

    Example:
        >>> acc = DiceAccumulator()
        >>> acc.add("case-0", pred_labels, ref_labels, spacing=(1.0, 0.8, 0.8))
        >>> acc.dice_per_case()["liver"], acc.dice_global()["tumor"]
        >>> csv.DictWriter(f, fieldnames=acc.fieldnames()).writerows(acc.rows())

    Args:
        classes: Class name -> label values (default LiTS ``{"liver": [1, 2], "tumor": [2]}``).
    """

    def __init__(self, classes: Mapping[str, Sequence[int]] = LITS_CLASSES) -> None:
        self.classes = {str(k): tuple(v) for k, v in classes.items()}
        self.cases: Dict[str, Dict[str, Dict[str, float]]] = {}

    def __len__(self) -> int:
        return len(self.cases)

    def add(
        self, case_id: str, prediction: Any, reference: Any, spacing: Optional[Sequence[float]] = None
    ) -> Dict[str, Dict[str, float]]:
        """Compute and store :func:`label_metrics` for one case.

        Args:
            case_id: Unique case name.
            prediction: Predicted label map.
            reference: Reference label map of the same shape.
            spacing: Voxel spacing in mm in array axis order (``None``: 1 mm).

        Returns:
            The case's ``{class: metrics}``.
        """
        case_id = str(case_id)
        if case_id in self.cases:
            raise ValueError(f"case {case_id!r} was already added; case ids must be unique.")
        metrics = label_metrics(prediction, reference, spacing, self.classes)
        self.cases[case_id] = metrics
        return metrics

    def extend(self, cases: Mapping[str, Mapping[str, Dict[str, float]]]) -> None:
        """Add cases already scored elsewhere (``{case_id: {class: metrics}}``, e.g. by another process).

        Raises:
            ValueError: if a case id is already present.
        """
        for case_id, metrics in cases.items():
            if str(case_id) in self.cases:
                raise ValueError(f"case {case_id!r} was already added; case ids must be unique.")
            self.cases[str(case_id)] = {name: dict(values) for name, values in metrics.items()}

    def dice_per_case(self) -> Dict[str, float]:
        """Mean of the per-case Dice for each class (NaN when no case was added)."""
        return {
            name: (math.fsum(m[name]["dice"] for m in self.cases.values()) / len(self.cases))
            if self.cases
            else math.nan
            for name in self.classes
        }

    def dice_global(self) -> Dict[str, float]:
        """Dice of the TP/FP/FN counts pooled over all cases, per class (NaN when no case was added)."""
        result = {}
        for name in self.classes:
            tp = sum(int(m[name]["tp"]) for m in self.cases.values())
            errors = sum(int(m[name]["fp"]) + int(m[name]["fn"]) for m in self.cases.values())
            if not self.cases:
                result[name] = math.nan
            else:
                result[name] = 1.0 if tp + errors == 0 else 2 * tp / (2 * tp + errors)
        return result

    def mean_metrics(self) -> Dict[str, MeanMetrics]:
        """:func:`mean_metrics` of every class over the cases."""
        return {name: mean_metrics(m[name] for m in self.cases.values()) for name in self.classes}

    def summary(self) -> Dict[str, Dict[str, float]]:
        """Per class: ``dice_per_case``, ``dice_global``, ``n_cases`` and ``mean_<metric>`` values."""
        per_case, pooled = self.dice_per_case(), self.dice_global()
        out: Dict[str, Dict[str, float]] = {}
        for name, means in self.mean_metrics().items():
            row = {"dice_per_case": per_case[name], "dice_global": pooled[name], "n_cases": len(self)}
            row.update({f"mean_{k}": v for k, v in means.mean.items()})
            row.update({f"missing_{k}": float(v) for k, v in means.n_missing.items() if v})
            out[name] = row
        return out

    @staticmethod
    def fieldnames() -> List[str]:
        """CSV column names of :meth:`rows`."""
        return ["case_id", "class", *METRIC_KEYS]

    def rows(self) -> List[Dict[str, Any]]:
        """One flat dict per (case, class), columns :meth:`fieldnames`, in insertion order."""
        return [
            {"case_id": case_id, "class": name, **metrics[name]}
            for case_id, metrics in self.cases.items()
            for name in self.classes
        ]
