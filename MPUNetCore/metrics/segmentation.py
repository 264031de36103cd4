"""Per-case metrics: one binary mask pair (:func:`segmentation_metrics`) or one label-map pair
(:func:`label_metrics`, LiTS classes)."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from ._inputs import binary_pair, check_spacing, label_pair
from .overlap import confusion_counts, overlap_metrics
from .surface import directed_distances, summarize_distances

METRIC_KEYS = (
    "dice", "iou", "precision", "recall", "specificity", "accuracy", "mcc", "voe", "rvd",
    "assd", "msd", "rmsd", "hd95", "tp", "fp", "fn", "tn",
)  # fmt: skip
"""Keys of :func:`segmentation_metrics`, in a stable order for CSV columns."""

LITS_CLASSES: Mapping[str, Sequence[int]] = {"liver": (1, 2), "tumor": (2,)}
"""LiTS evaluation classes: liver = labels 1 and 2 (label >= 1), tumour = label 2."""


def segmentation_metrics(
    prediction: Any, reference: Any, spacing: Optional[Sequence[float]] = None
) -> Dict[str, float]:
    """Overlap and surface-distance metrics of a binary prediction against a binary reference.

    Overlap metrics follow the MPU-Net paper (eq. 20-25) plus recall, VOE and RVD; see
    :func:`MPUNetCore.metrics.overlap.overlap_metrics`. Surface metrics (mm) are defined in
    :mod:`MPUNetCore.metrics.surface` (face-connected surface voxels, HD95 as in MONAI).

    Empty masks: both empty gives overlap metrics 1, rvd 0 and distances 0; exactly one empty gives
    dice/iou/precision/recall 0 (specificity, accuracy and mcc still follow from the counts) and
    assd/msd/rmsd/hd95 = NaN, meaning "missing" (:func:`mean_metrics` skips and counts them). rvd is
    NaN when only the reference is empty. No other value is ever NaN.

    Example:
        >>> m = segmentation_metrics(pred_zyx, ref_zyx, spacing=(2.5, 0.8, 0.8))
        >>> m["dice"], m["hd95"]

    Args:
        prediction: Binary mask (NumPy array or torch tensor, 2D or 3D; bool, integer or float with
            only 0 and 1).
        reference: Binary reference mask of the same shape.
        spacing: Voxel spacing in mm in ARRAY axis order, i.e. ``image.GetSpacing()[::-1]`` for an
            array from ``sitk.GetArrayFromImage``. ``None`` means 1 mm on every axis.

    Returns:
        A dict with the float values of :data:`METRIC_KEYS` (tp, fp, fn, tn are voxel counts).

    Raises:
        ValueError: On a shape mismatch, non-binary values, or a spacing of the wrong length.
    """
    pred, ref = binary_pair(prediction, reference)
    spacing_t = check_spacing(spacing, pred.ndim)
    counts = confusion_counts(pred, ref)
    result = overlap_metrics(counts)
    both_empty = counts.tp + counts.fp + counts.fn == 0
    result.update(summarize_distances(directed_distances(pred, ref, spacing_t), both_empty))
    result.update({key: float(value) for key, value in counts._asdict().items()})
    return {key: result[key] for key in METRIC_KEYS}


def _check_classes(classes: Mapping[str, Sequence[int]]) -> Dict[str, tuple]:
    if not classes:
        raise ValueError("classes is empty; give e.g. {'liver': [1, 2], 'tumor': [2]}.")
    checked = {}
    for name, labels in classes.items():
        values = tuple(int(v) for v in np.atleast_1d(np.asarray(labels)).ravel())
        if not values:
            raise ValueError(f"class {name!r} has no labels; give the label values that form it.")
        checked[str(name)] = values
    return checked


def _class_mask(label_map: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    mask = label_map == labels[0]
    for value in labels[1:]:
        mask |= label_map == value
    return mask


def label_metrics(
    prediction: Any,
    reference: Any,
    spacing: Optional[Sequence[float]] = None,
    classes: Mapping[str, Sequence[int]] = LITS_CLASSES,
) -> Dict[str, Dict[str, float]]:
    """:func:`segmentation_metrics` for each class of a pair of label maps.

    Args:
        prediction: Integer label map (NumPy array or torch tensor, 2D or 3D).
        reference: Reference label map of the same shape.
        spacing: Voxel spacing in mm in array axis order (see :func:`segmentation_metrics`).
        classes: Class name -> label values that form its binary mask. The default is LiTS:
            ``{"liver": [1, 2], "tumor": [2]}`` (liver = label >= 1 with labels 0/1/2).

    Returns:
        ``{class_name: segmentation_metrics(...)}``.

    Raises:
        ValueError: On a shape mismatch, non-integer labels, a bad spacing or an empty class list.
    """
    pred, ref = label_pair(prediction, reference)
    spacing_t = check_spacing(spacing, pred.ndim)
    checked = _check_classes(classes)
    return {
        name: segmentation_metrics(_class_mask(pred, labels), _class_mask(ref, labels), spacing_t)
        for name, labels in checked.items()
    }
