"""Comparison table on Slicer's real MRML: values equal MPUNetCore's metrics, volumes counted by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from MPUNetSegmentationLib.comparison import (
    COLUMNS,
    LITS_SEGMENTS,
    compare_label_maps,
    comparison_rows,
    comparison_table_node,
)

from MPUNetCore import metrics


@pytest.fixture
def label_pair(real_ct_dir: Path):
    """Expert liver label as reference (tumour added) and a shifted, differently-tumoured prediction."""
    image = sitk.ReadImage(str(real_ct_dir / "liver_seg.nrrd"))
    reference = sitk.GetArrayFromImage(image).astype(np.uint8)
    reference[1, 200:220, 200:230][reference[1, 200:220, 200:230] == 1] = 2
    prediction = np.roll(reference, 3, axis=2)  # liver shifted 3 voxels along x
    prediction[prediction == 2] = 1
    prediction[:, 205:225, 210:240][prediction[:, 205:225, 210:240] == 1] = 2
    return prediction, reference, image.GetSpacing()


def test_table_matches_segmentation_metrics(slicer_scene, label_pair) -> None:
    import slicer.util

    prediction, reference, spacing_xyz = label_pair
    table = compare_label_maps(prediction, reference, spacing_xyz)
    assert table.IsA("vtkMRMLTableNode") and table.GetName() == "MPU-Net comparison"
    assert table.GetNumberOfRows() == 2
    segments = [table.GetCellText(row, 0) for row in range(2)]
    assert segments == ["Liver", "Liver tumor"]
    voxel_ml = spacing_xyz[0] * spacing_xyz[1] * spacing_xyz[2] / 1000.0
    for row, (name, labels) in enumerate(LITS_SEGMENTS.items()):
        predicted, expected_reference = np.isin(prediction, labels), np.isin(reference, labels)
        expected = metrics.segmentation_metrics(predicted, expected_reference, spacing_xyz[::-1])
        expected["predicted_ml"] = predicted.sum() * voxel_ml
        expected["reference_ml"] = expected_reference.sum() * voxel_ml
        for key, column, unit, _ in COLUMNS:
            value = slicer.util.arrayFromTableColumn(table, column)[row]
            if math.isnan(expected[key]):
                assert math.isnan(value), (name, key)
            else:
                assert value == pytest.approx(expected[key], rel=1e-12, abs=1e-12), (name, key)
            assert table.GetColumnUnitLabel(column) == unit
    liver_reference_ml = float((reference >= 1).sum()) * voxel_ml
    assert liver_reference_ml == pytest.approx(107_098 * 0.8105469 * 0.8105469 * 1.0 / 1000.0, rel=1e-4)
    assert slicer.util.arrayFromTableColumn(table, "Reference volume")[0] == pytest.approx(liver_reference_ml)


def test_missing_distances_and_bad_input(slicer_scene, label_pair) -> None:
    prediction, reference, spacing_xyz = label_pair
    no_tumour = prediction.copy()
    no_tumour[no_tumour == 2] = 1
    rows = comparison_rows(no_tumour, reference, spacing_xyz)
    assert rows[1]["dice"] == 0.0 and math.isnan(rows[1]["hd95"]) and rows[1]["predicted_ml"] == 0.0
    table = comparison_table_node(rows)
    assert comparison_table_node(rows[:1], table_node=table) is table  # refilled in place
    assert table.GetNumberOfRows() == 1 and table.GetNumberOfColumns() == 1 + len(COLUMNS)
    with pytest.raises(ValueError, match="same voxel grid"):
        comparison_rows(prediction[:2], reference, spacing_xyz)
    with pytest.raises(ValueError, match="three positive numbers"):
        comparison_rows(prediction, reference, (1.0, 0.0, 1.0))
