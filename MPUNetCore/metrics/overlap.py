"""Confusion-matrix counts and the overlap metrics of the MPU-Net paper (eq. 20-25) plus LiTS extras.

Every ratio is computed from exact Python integers, so nothing overflows on huge volumes, and no
``0/0`` ever reaches NumPy (no NaN, no warning). Where a denominator is zero the value follows one rule:
the metric is 1 when the two masks agree exactly on the voxels it looks at and 0 otherwise.
"""

from __future__ import annotations

import math
from typing import Dict, NamedTuple

import numpy as np


class Confusion(NamedTuple):
    """Voxel counts of a binary prediction against a binary reference."""

    tp: int
    fp: int
    fn: int
    tn: int


def confusion_counts(prediction: np.ndarray, reference: np.ndarray) -> Confusion:
    """Count TP, FP, FN and TN voxels of two boolean masks of the same shape.

    Args:
        prediction: Boolean predicted mask.
        reference: Boolean reference mask.

    Returns:
        The four counts as Python integers.
    """
    n_pred = int(np.count_nonzero(prediction))
    n_ref = int(np.count_nonzero(reference))
    tp = int(np.count_nonzero(np.logical_and(prediction, reference)))
    fp = n_pred - tp
    fn = n_ref - tp
    tn = int(prediction.size) - tp - fp - fn
    return Confusion(tp, fp, fn, tn)


def _ratio(numerator: int, denominator: int, agree: bool) -> float:
    """``numerator / denominator``, or 1.0/0.0 (``agree``) when the denominator is zero."""
    if denominator == 0:
        return 1.0 if agree else 0.0
    return numerator / denominator


def matthews_correlation(counts: Confusion) -> float:
    """Matthews correlation coefficient (paper eq. 25) computed without overflow.

    Degenerate case (a row or column of the confusion matrix is empty, so the denominator is 0):
    1 if the prediction equals the reference, -1 if every voxel is wrong, otherwise 0.

    Args:
        counts: The confusion counts.

    Returns:
        MCC in [-1, 1].
    """
    tp, fp, fn, tn = counts
    denominator = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)  # exact Python int
    if denominator == 0:
        if fp + fn == 0:
            return 1.0
        return -1.0 if tp + tn == 0 else 0.0
    value = (tp * tn - fp * fn) / math.sqrt(float(denominator))
    return float(min(1.0, max(-1.0, value)))


def overlap_metrics(counts: Confusion) -> Dict[str, float]:
    """Overlap metrics from confusion counts.

    Definitions (P = predicted foreground, G = reference foreground):
    dice = 2TP/(2TP+FP+FN), iou = TP/(TP+FP+FN), precision = TP/(TP+FP), recall = TP/(TP+FN),
    specificity = TN/(TN+FP), accuracy = (TP+TN)/N, mcc (eq. 25), voe = 1 - iou,
    rvd = (|P| - |G|)/|G|.

    Zero denominators: both masks empty gives dice = iou = precision = recall = 1; exactly one empty
    gives 0 for all four. Specificity with no reference background is 1 if the prediction has no
    background either, else 0. ``rvd`` is 0 when both are empty and NaN ("missing": the relative
    difference to an empty reference is undefined) when only the reference is empty.

    Args:
        counts: The confusion counts.

    Returns:
        A dict with keys dice, iou, precision, recall, specificity, accuracy, mcc, voe, rvd.
    """
    tp, fp, fn, tn = counts
    n_pred, n_ref = tp + fp, tp + fn
    iou = _ratio(tp, tp + fp + fn, agree=True)
    if n_ref == 0:
        rvd = 0.0 if n_pred == 0 else math.nan
    else:
        rvd = (n_pred - n_ref) / n_ref
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, agree=True),
        "iou": iou,
        "precision": _ratio(tp, n_pred, agree=n_ref == 0),
        "recall": _ratio(tp, n_ref, agree=n_pred == 0),
        "specificity": _ratio(tn, tn + fp, agree=fn == 0),
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn, agree=True),
        "mcc": matthews_correlation(counts),
        "voe": 1.0 - iou,
        "rvd": rvd,
    }
