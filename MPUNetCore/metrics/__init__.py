"""Segmentation metrics: overlap (MPU-Net paper eq. 20-25, LiTS VOE/RVD) and surface distances in mm.

Public API:
    segmentation_metrics(prediction, reference, spacing) -> dict   (binary masks)
    label_metrics(prediction, reference, spacing, classes) -> {class: dict}   (label maps, LiTS classes)
    DiceAccumulator: Dice per case and Dice global over many cases, CSV rows.
    mean_metrics(list_of_dicts) -> MeanMetrics (NaN-skipping means and missing counts).
"""

from __future__ import annotations

from .accumulate import DiceAccumulator, MeanMetrics, mean_metrics
from .overlap import Confusion, confusion_counts, matthews_correlation, overlap_metrics
from .segmentation import LITS_CLASSES, METRIC_KEYS, label_metrics, segmentation_metrics
from .surface import SURFACE_KEYS, summarize_distances, surface_distances

__all__ = [
    "LITS_CLASSES",
    "METRIC_KEYS",
    "SURFACE_KEYS",
    "Confusion",
    "DiceAccumulator",
    "MeanMetrics",
    "confusion_counts",
    "label_metrics",
    "matthews_correlation",
    "mean_metrics",
    "overlap_metrics",
    "segmentation_metrics",
    "summarize_distances",
    "surface_distances",
]
