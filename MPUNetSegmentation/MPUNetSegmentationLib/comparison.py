"""Compare a predicted label map with a reference one, per segment, into a ``vtkMRMLTableNode``.

The numbers come from ``MPUNetCore.metrics.segmentation_metrics`` (imported when first needed, so that
this module imports without torch); this module only picks the binary masks per segment (LiTS
convention by default: liver = label >= 1, tumour = label 2), adds volumes in millilitres and lays the
results out as a table: one row per segment, one column per metric, units in the column metadata.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

# LiTS: liver is every labelled voxel (tumours lie in the liver), tumour is label 2.
LITS_SEGMENTS: Dict[str, Tuple[int, ...]] = {"Liver": (1, 2), "Liver tumor": (2,)}

# (metric key, column name, unit, description)
COLUMNS: Tuple[Tuple[str, str, str, str], ...] = (
    ("dice", "Dice", "", "Dice similarity coefficient 2TP/(2TP+FP+FN)"),
    ("iou", "IoU", "", "Intersection over union (Jaccard) TP/(TP+FP+FN)"),
    ("precision", "Precision", "", "TP/(TP+FP)"),
    ("recall", "Recall", "", "Sensitivity TP/(TP+FN)"),
    ("specificity", "Specificity", "", "TN/(TN+FP)"),
    ("accuracy", "Accuracy", "", "(TP+TN)/all voxels"),
    ("mcc", "MCC", "", "Matthews correlation coefficient"),
    ("voe", "VOE", "", "Volumetric overlap error 1 - IoU"),
    ("rvd", "RVD", "", "Relative volume difference (|P| - |R|)/|R|"),
    ("assd", "ASSD", "mm", "Average symmetric surface distance (empty: missing)"),
    ("msd", "MSD", "mm", "Maximum symmetric surface distance, Hausdorff (empty: missing)"),
    ("rmsd", "RMSD", "mm", "Root mean square symmetric surface distance (empty: missing)"),
    ("hd95", "HD95", "mm", "95th percentile Hausdorff distance (empty: missing)"),
    ("predicted_ml", "Predicted volume", "mL", "Volume of the predicted segment"),
    ("reference_ml", "Reference volume", "mL", "Volume of the reference segment"),
    ("tp", "TP", "voxels", "True positive voxels"),
    ("fp", "FP", "voxels", "False positive voxels"),
    ("fn", "FN", "voxels", "False negative voxels"),
    ("tn", "TN", "voxels", "True negative voxels"),
)
SEGMENT_COLUMN = "Segment"


def comparison_rows(
    prediction: np.ndarray,
    reference: np.ndarray,
    spacing_xyz: Sequence[float],
    segments: Mapping[str, Sequence[int]] = LITS_SEGMENTS,
) -> List[Dict[str, Any]]:
    """Compute the metrics of every segment.

    Args:
        prediction: ``(z, y, x)`` predicted label map.
        reference: ``(z, y, x)`` reference label map on the same grid.
        spacing_xyz: voxel size along x, y, z in mm, as ``VolumeGeometry.spacing`` / SimpleITK give it.
        segments: ``{segment name: label values that form it}``.

    Returns:
        One dict per segment: ``"segment"`` plus every key of :data:`COLUMNS` (NaN where a distance is
        missing because exactly one mask is empty).

    Raises:
        ValueError: on a shape mismatch or a spacing that is not three positive numbers.
        ImportError: when ``MPUNetCore.metrics`` is not importable.
    """
    from MPUNetCore.metrics import segmentation_metrics

    prediction = np.asarray(prediction)
    reference = np.asarray(reference)
    if prediction.shape != reference.shape or prediction.ndim != 3:
        raise ValueError(
            f"prediction {prediction.shape} and reference {reference.shape} must be 3D label maps on the "
            "same voxel grid: bring the reference onto the input volume first"
        )
    spacing = tuple(float(s) for s in spacing_xyz)
    if len(spacing) != 3 or not all(s > 0 and math.isfinite(s) for s in spacing):
        raise ValueError(f"spacing must be three positive numbers (x, y, z) in mm, got {spacing_xyz!r}")
    voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
    rows = []
    for name, labels in segments.items():
        predicted_mask = np.isin(prediction, labels)
        reference_mask = np.isin(reference, labels)
        row: Dict[str, Any] = {"segment": name}
        row.update(segmentation_metrics(predicted_mask, reference_mask, spacing[::-1]))
        row["predicted_ml"] = float(np.count_nonzero(predicted_mask)) * voxel_ml
        row["reference_ml"] = float(np.count_nonzero(reference_mask)) * voxel_ml
        rows.append(row)
    return rows


def comparison_table_node(
    rows: Sequence[Mapping[str, Any]], name: str = "MPU-Net comparison", table_node: Optional[Any] = None
) -> Any:
    """Lay comparison rows out in a ``vtkMRMLTableNode`` (one row per segment).

    Args:
        rows: output of :func:`comparison_rows`.
        name: name of a new table node (made unique); ignored when ``table_node`` is given.
        table_node: a table this project created earlier to refill instead of creating a new one.

    Returns:
        The table node: a "Segment" string column, then one double column per :data:`COLUMNS` entry with
        its unit and description set.
    """
    import slicer
    import vtk

    if table_node is None:
        table_node = slicer.mrmlScene.AddNewNodeByClass(
            "vtkMRMLTableNode", slicer.mrmlScene.GenerateUniqueName(name)
        )
    was_modifying = table_node.StartModify()
    try:
        table_node.RemoveAllColumns()
        names = vtk.vtkStringArray()
        names.SetName(SEGMENT_COLUMN)
        for row in rows:
            names.InsertNextValue(str(row["segment"]))
        table_node.AddColumn(names)
        for key, column, unit, description in COLUMNS:
            values = vtk.vtkDoubleArray()
            values.SetName(column)
            for row in rows:
                values.InsertNextValue(float(row[key]))
            table_node.AddColumn(values)
            table_node.SetColumnUnitLabel(column, unit)
            table_node.SetColumnTitle(column, f"{column} ({unit})" if unit else column)
            table_node.SetColumnDescription(column, description)
        table_node.SetColumnDescription(SEGMENT_COLUMN, "Segment; liver = labels 1 and 2, tumour = label 2")
        table_node.SetUseColumnTitleAsColumnHeader(True)
    finally:
        table_node.EndModify(was_modifying)
    return table_node


def compare_label_maps(
    prediction: np.ndarray,
    reference: np.ndarray,
    spacing_xyz: Sequence[float],
    segments: Mapping[str, Sequence[int]] = LITS_SEGMENTS,
    name: str = "MPU-Net comparison",
) -> Any:
    """Compute :func:`comparison_rows` and return them as a new table node.

    Args:
        prediction: ``(z, y, x)`` predicted label map.
        reference: ``(z, y, x)`` reference label map on the same grid.
        spacing_xyz: voxel size along x, y, z in mm.
        segments: ``{segment name: label values that form it}`` (default: LiTS liver and tumour).
        name: name of the new table node (made unique).

    Returns:
        The new ``vtkMRMLTableNode``.
    """
    return comparison_table_node(comparison_rows(prediction, reference, spacing_xyz, segments), name)
