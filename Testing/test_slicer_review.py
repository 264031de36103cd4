"""Review with the expert on Slicer's real MRML (slicer-core): error map, layouts, linked views, rendering.

The layouts, view nodes, slice logics, the link logic that keeps linked views on the same slice and the
segmentation displayable manager are Slicer's own classes from the wheel; only the Qt widgets that show them
(layout manager, slice widgets, table widget) need the application and are not exercised here. Error counts
are checked against ``MPUNetCore.metrics.segmentation_metrics`` (FP/FN) and hand-made NumPy masks.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from MPUNetSegmentationLib.review import (
    ERROR_SEGMENTS,
    OVERLAY,
    SIDE_BY_SIDE,
    error_map_segmentation,
    error_masks,
    start_review,
)
from MPUNetSegmentationLib.review_views import (
    LEFT_VIEW,
    OVERLAY_LAYOUT,
    RIGHT_VIEW,
    SIDE_BY_SIDE_LAYOUT,
    TABLE_VIEW,
    layout_node,
    slice_logic,
)


@pytest.fixture
def case(slicer_scene, tmp_path):
    """A phantom CT, its label map (the "expert"), and a prediction that misses and adds known voxels."""
    import slicer.util
    from MPUNetSegmentationLib.segmentation_nodes import create_segmentation_node

    from Testing.slicer_models import write_phantom

    ct, label = write_phantom(tmp_path, seed=2, shape=(32, 96, 96))
    volume = slicer.util.loadVolume(str(ct))
    reference = slicer.util.loadLabelVolume(str(label))
    expert = slicer.util.arrayFromVolume(reference).copy()
    predicted = expert.copy()
    predicted[:, :, 60:][predicted[:, :, 60:] == 1] = 0  # missed liver (false negatives)
    predicted[10:14, 5:9, 5:9] = 1  # invented liver (false positives)
    tumour = np.argwhere(expert == 2)
    predicted[tuple(tumour[: len(tumour) // 2].T)] = 1  # half of the tumour voxels called liver
    predicted[tuple(np.argwhere(expert == 1)[:40].T)] = 2  # and some liver voxels called tumour
    prediction = create_segmentation_node(predicted, volume, name="prediction")
    return volume, reference, prediction, predicted, expert


def test_error_masks_by_hand() -> None:
    prediction = np.array([[[0, 1, 2, 2, 1, 0]]])
    reference = np.array([[[1, 1, 1, 2, 0, 2]]])
    masks = error_masks(prediction, reference)
    np.testing.assert_array_equal(masks["liver_fp"], [[[0, 0, 0, 0, 1, 0]]])
    np.testing.assert_array_equal(masks["liver_fn"], [[[1, 0, 0, 0, 0, 1]]])
    np.testing.assert_array_equal(masks["tumor_fp"], [[[0, 0, 1, 0, 0, 0]]])
    np.testing.assert_array_equal(masks["tumor_fn"], [[[0, 0, 0, 0, 0, 1]]])


def test_error_map_segments_match_the_metrics(case) -> None:
    import slicer.util
    import vtk

    from MPUNetCore.metrics import segmentation_metrics

    volume, reference, prediction, predicted, expert = case
    node = error_map_segmentation(prediction, reference, volume)
    segmentation = node.GetSegmentation()
    assert [segmentation.GetNthSegment(i).GetName() for i in range(4)] == [s[1] for s in ERROR_SEGMENTS]
    for segment_id, _, color, labels, kind in ERROR_SEGMENTS:
        metrics = segmentation_metrics(np.isin(predicted, labels), np.isin(expert, labels))
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, volume) > 0
        assert mask.sum() == metrics[kind] > 0, segment_id
        tag = vtk.reference("")
        assert (
            segmentation.GetSegment(segment_id).GetTag("MPUNet.Voxels", tag)
            and int(str(tag)) == metrics[kind]
        )
        assert segmentation.GetSegment(segment_id).GetColor() == pytest.approx(color)
        expected = np.isin(predicted, labels) != np.isin(expert, labels)
        expected &= np.isin(predicted if kind == "fp" else expert, labels)
        np.testing.assert_array_equal(mask, expected)
    assert prediction.GetSegmentation().GetNumberOfSegments() == 2  # inputs untouched


def test_side_by_side_review_links_two_views(case) -> None:
    import slicer

    volume, reference, prediction, _, expert = case
    table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "metrics")
    original_views = prediction.GetDisplayNode().GetNumberOfViewNodeIDs()
    state = start_review(volume, prediction, reference, SIDE_BY_SIDE, table=table)
    assert layout_node().GetViewArrangement() == SIDE_BY_SIDE_LAYOUT
    description = layout_node().GetLayoutDescription(SIDE_BY_SIDE_LAYOUT)
    for name in (LEFT_VIEW, RIGHT_VIEW, TABLE_VIEW):
        assert f'singletontag="{name}"' in description
    left, right = (slice_logic(name) for name in (LEFT_VIEW, RIGHT_VIEW))
    assert [n.GetID() for n in state.slice_nodes] == [
        left.GetSliceNode().GetID(),
        right.GetSliceNode().GetID(),
    ]
    for logic in (left, right):
        composite = logic.GetSliceCompositeNode()
        assert composite.GetBackgroundVolumeID() == volume.GetID() and composite.GetLinkedControl()
        assert logic.GetSliceNode().GetOrientation() == "Axial"
    # The label map reference is shown through a new segmentation holding exactly its labels.
    from MPUNetSegmentationLib.segmentation_nodes import label_array_from_node

    shown = state.reference
    assert shown is not reference and shown.IsA("vtkMRMLSegmentationNode")
    np.testing.assert_array_equal(label_array_from_node(shown, volume), expert)
    prediction_views = prediction.GetDisplayNode()
    assert [
        prediction_views.GetNthViewNodeID(i) for i in range(prediction_views.GetNumberOfViewNodeIDs())
    ] == [left.GetSliceNode().GetID()]
    reference_views = shown.GetDisplayNode()
    assert [reference_views.GetNthViewNodeID(i) for i in range(reference_views.GetNumberOfViewNodeIDs())] == [
        right.GetSliceNode().GetID()
    ]
    # Same slice, same zoom at the start ...
    np.testing.assert_allclose(
        slicer.util.arrayFromVTKMatrix(left.GetSliceNode().GetSliceToRAS()),
        slicer.util.arrayFromVTKMatrix(right.GetSliceNode().GetSliceToRAS()),
    )
    assert left.GetSliceNode().GetFieldOfView()[0] == pytest.approx(right.GetSliceNode().GetFieldOfView()[0])
    # ... and Slicer's link logic keeps them together when the user steps or zooms in either view.
    for moved, follower in ((left, right), (right, left)):
        moved.StartSliceOffsetInteraction()
        moved.SetSliceOffset(moved.GetSliceOffset() + 3.0)
        moved.EndSliceOffsetInteraction()
        assert follower.GetSliceOffset() == pytest.approx(moved.GetSliceOffset())
    left.StartSliceNodeInteraction(slicer.vtkMRMLSliceNode.FieldOfViewFlag)
    left.GetSliceNode().SetFieldOfView(40.0, 40.0, 1.0)
    left.EndSliceNodeInteraction()
    assert right.GetSliceNode().GetFieldOfView()[0] == pytest.approx(40.0)
    table_view = slicer.mrmlScene.GetSingletonNode(TABLE_VIEW, "vtkMRMLTableViewNode")
    assert table_view.GetTableNodeID() == table.GetID()
    # A second review of the same label map reuses its segmentation; ending restores the display.
    again = start_review(volume, prediction, reference, SIDE_BY_SIDE)
    assert again.reference is shown
    again.end()
    state.end()
    assert prediction.GetDisplayNode().GetNumberOfViewNodeIDs() == original_views == 0


def _view_properties():
    """Every view setting a review might touch, read from the scene (independently of review_views)."""
    import slicer

    app_logic = slicer.app.applicationLogic()
    properties = {"layout": layout_node().GetViewArrangement()}
    properties["active table"] = app_logic.GetSelectionNode().GetActiveTableID()
    for node in slicer.util.getNodesByClass("vtkMRMLSliceCompositeNode"):
        properties[node.GetID()] = (
            node.GetBackgroundVolumeID(),
            node.GetForegroundVolumeID(),
            node.GetLabelVolumeID(),
            node.GetForegroundOpacity(),
            node.GetLabelOpacity(),
            node.GetLinkedControl(),
            node.GetHotLinkedControl(),
        )
    for node in slicer.util.getNodesByClass("vtkMRMLSliceNode"):
        properties[node.GetID()] = (
            node.GetOrientation(),
            tuple(np.round(slicer.util.arrayFromVTKMatrix(node.GetSliceToRAS()).ravel(), 9)),
            tuple(np.round(node.GetFieldOfView(), 9)),
            tuple(np.round(node.GetXYZOrigin(), 9)),
        )
    for node in slicer.util.getNodesByClass("vtkMRMLTableViewNode"):
        properties[node.GetID()] = node.GetTableNodeID()
    for node in slicer.util.getNodesByClass("vtkMRMLSegmentationDisplayNode"):
        properties[node.GetID()] = (
            node.GetVisibility(),
            node.GetVisibility2DFill(),
            node.GetVisibility2DOutline(),
            node.GetOpacity2DFill(),
            node.GetOpacity2DOutline(),
            tuple(node.GetNthViewNodeID(i) for i in range(node.GetNumberOfViewNodeIDs())),
        )
    return properties


@pytest.mark.parametrize("mode", [SIDE_BY_SIDE, OVERLAY])
def test_ending_a_review_restores_every_view_property(case, mode) -> None:
    """The user's views (unlinked, other volumes, a label layer, sagittal, zoomed) come back as they were."""
    import slicer

    volume, reference, prediction, _, _ = case
    set_layout_id = 3  # Slicer's "four-up" arrangement stands for the user's layout
    layout_node().SetViewArrangement(set_layout_id)
    other = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "other")
    user_table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "user table")
    red, yellow = slice_logic(LEFT_VIEW), slice_logic(RIGHT_VIEW)
    for logic, background in ((red, other), (yellow, volume)):
        composite = logic.GetSliceCompositeNode()
        composite.SetLinkedControl(False)
        composite.SetHotLinkedControl(False)
        composite.SetBackgroundVolumeID(background.GetID())
        composite.SetForegroundVolumeID(volume.GetID())
        composite.SetForegroundOpacity(0.3)
        composite.SetLabelVolumeID(reference.GetID())
        composite.SetLabelOpacity(0.6)
    yellow.GetSliceNode().SetOrientationToSagittal()
    yellow.GetSliceNode().SetFieldOfView(55.0, 44.0, 2.0)
    yellow.GetSliceNode().SetXYZOrigin(3.0, -2.0, 0.0)
    red.GetSliceNode().SetOrientationToCoronal()
    prediction.GetDisplayNode().SetVisibility2DOutline(False)
    prediction.GetDisplayNode().AddViewNodeID(yellow.GetSliceNode().GetID())
    slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(user_table.GetID())
    table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "metrics")
    before = _view_properties()

    state = start_review(volume, prediction, reference, mode, table=table)
    during = _view_properties()
    changed = {key for key in before if during.get(key) != before[key]}
    # the review did change the layout, both kinds of view settings and the segmentation's display
    assert {
        "layout",
        "active table",
        red.GetSliceCompositeNode().GetID(),
        red.GetSliceNode().GetID(),
    } <= changed
    assert prediction.GetDisplayNode().GetID() in changed
    if mode == SIDE_BY_SIDE:
        assert {yellow.GetSliceCompositeNode().GetID(), yellow.GetSliceNode().GetID()} <= changed
    state.end()
    after = _view_properties()
    for key, value in before.items():
        assert after[key] == value, key


def test_overlay_review_shows_outlines_and_the_error_map(case) -> None:
    volume, reference, prediction, _, _ = case
    state = start_review(volume, prediction, reference, OVERLAY)
    assert layout_node().GetViewArrangement() == OVERLAY_LAYOUT
    red = slice_logic(LEFT_VIEW).GetSliceNode().GetID()
    assert state.error_map is not None and state.error_map.GetSegmentation().GetNumberOfSegments() == 4
    for node, fill, outline in (
        (prediction, False, True),
        (state.reference, False, True),
        (state.error_map, True, False),
    ):
        display = node.GetDisplayNode()
        assert (display.GetVisibility2DFill(), display.GetVisibility2DOutline()) == (fill, outline)
        assert [display.GetNthViewNodeID(i) for i in range(display.GetNumberOfViewNodeIDs())] == [red]
    with pytest.raises(ValueError, match="review mode"):
        start_review(volume, prediction, reference, "both")
    state.end()
    assert prediction.GetDisplayNode().GetVisibility2DFill()


def test_review_views_render_offscreen(case) -> None:
    """Slicer's slice logic and segmentation displayable manager draw each segmentation in its own view."""
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    from MPUNetSegmentationLib.slice_rendering import render_slice_view

    volume, reference, prediction, _, _ = case
    volume.GetDisplayNode().SetAutoWindowLevel(False)
    volume.GetDisplayNode().SetWindowLevel(400, 40)
    start_review(volume, prediction, reference, SIDE_BY_SIDE)
    left = render_slice_view(slice_logic(LEFT_VIEW), 160, 160)  # the prediction
    right = render_slice_view(slice_logic(RIGHT_VIEW), 160, 160)  # the reference
    assert left.shape == (160, 160, 3) and left.dtype == np.uint8
    if not left.any():
        pytest.skip("offscreen OpenGL rendering is not available here")
    for image in (left, right):
        coloured = np.abs(image.astype(int) - image.mean(axis=2, keepdims=True)).max(axis=2) > 20
        assert coloured.mean() > 0.05  # segment colours over the grey CT
    # the two views show different segmentations (the prediction misses part of the liver)
    assert np.abs(left.astype(int) - right.astype(int)).max() > 50
