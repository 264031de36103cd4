"""The names of the metrics columns that training writes and evaluation, reports and plots read.

One place for them, so that a misspelt name fails here with the valid names instead of becoming a
silent column of NaN: validation writes ``metric_key("val", "liver", "dice")`` and the report reads the
same call. Metric names are those of ``MPUNetCore.metrics.METRIC_KEYS``.
"""

from __future__ import annotations

from typing import Dict, Tuple

from MPUNetCore.metrics import METRIC_KEYS

#: The paper's six metrics (eq. 20-25), in the order of its tables and figures.
PAPER_METRICS: Tuple[str, ...] = ("dice", "accuracy", "precision", "specificity", "iou", "mcc")
#: The LiTS metrics added to the paper's in the evaluation tables.
LITS_METRICS: Tuple[str, ...] = ("recall", "voe", "rvd", "assd", "msd", "rmsd", "hd95")
#: Metrics of the training patches, per epoch (from summed confusion counts: no distances).
TRAIN_METRICS: Tuple[str, ...] = ("dice", "iou", "precision", "recall", "specificity", "accuracy", "mcc")
#: Display names in tables and figures.
LABELS: Dict[str, str] = {
    "dice": "Dice", "accuracy": "Accuracy", "precision": "Precision", "specificity": "Specificity",
    "iou": "IOU", "mcc": "MCC", "recall": "Recall", "voe": "VOE", "rvd": "RVD", "assd": "ASSD (mm)",
    "msd": "MSD (mm)", "rmsd": "RMSD (mm)", "hd95": "HD95 (mm)",
}  # fmt: skip
#: Per-epoch columns of metrics.csv besides the metrics.
EPOCH = "epoch"
BEST_EPOCH = "best_epoch"
TRAIN_LOSS = "train_loss"
TRAIN_TIME = "train_time_s"
VAL_TIME = "val_time_s"
EPOCH_TIME = "epoch_time_s"
MEAN_DICE = "mean_dice"  # val_mean_dice: the mean of the classes' Dice
DICE_GLOBAL = "dice_global"  # pooled over cases (validation only)
PARTS = ("train", "val")


def metric_key(part: str, cls: str, metric: str) -> str:
    """The metrics.csv column of ``metric`` for class ``cls`` on ``part`` ("train" or "val").

    Raises:
        ValueError: an unknown part or metric name (the valid ones are named).
    """
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}: use one of {', '.join(PARTS)}")
    if metric not in METRIC_KEYS and metric != DICE_GLOBAL:
        raise ValueError(f"unknown metric {metric!r}: use one of {', '.join((*METRIC_KEYS, DICE_GLOBAL))}")
    return f"{part}_{cls}_{metric}"


def val_key(name: str) -> str:
    """The validation column of a ``train.best_metric`` value such as "liver_dice" or "mean_dice"."""
    return f"val_{name}"
