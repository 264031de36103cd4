"""Review a prediction against the expert: side-by-side linked views, or outlines with an error map.

* :func:`error_map_segmentation` makes a NEW segmentation node with the disagreements as their own
  coloured segments: false positives (predicted, not in the reference) and false negatives (in the
  reference, missed) of the liver (labels 1 and 2, as LiTS) and of the tumour (label 2).
* :func:`start_review` sets the views up:

  - ``"side-by-side"``: a layout of two axial slice views over the metrics table; the prediction on the
    left (Red), the expert's segmentation on the right (Yellow), both over the same CT. The two views
    are linked (slice composite nodes' linked control, hot-linked), so stepping through slices or
    zooming in one moves the other, and they start on the same slice with the same field of view.
  - ``"overlay"``: one axial view with the prediction and the reference as outlines and the error map
    filled, over the metrics table.

Only display settings change (which views show which segmentation, fill or outline); the nodes' data are
never modified, and :meth:`ReviewState.end` puts back every view setting the review changed: the
segmentations' display settings, each slice view's volumes, linked control, orientation and field of view,
the table shown, and the layout. A label map
reference is shown through a new segmentation node (same colours as the prediction's classes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .review_views import (
    LEFT_VIEW,
    OVERLAY_LAYOUT,
    RIGHT_VIEW,
    SIDE_BY_SIDE_LAYOUT,
    SavedViews,
    save_views,
    set_layout,
    show_table,
    slice_logic,
)

SIDE_BY_SIDE, OVERLAY = "side-by-side", "overlay"

#: (segment ID, name, colour, label values of the class, kind) of the error map.
ERROR_SEGMENTS: Tuple[Tuple[str, str, Tuple[float, float, float], Tuple[int, ...], str], ...] = (
    ("liver_fp", "Liver false positive", (0.95, 0.25, 0.2), (1, 2), "fp"),
    ("liver_fn", "Liver false negative", (0.2, 0.45, 1.0), (1, 2), "fn"),
    ("tumor_fp", "Liver tumor false positive", (1.0, 0.75, 0.0), (2,), "fp"),
    ("tumor_fn", "Liver tumor false negative", (0.0, 0.9, 0.9), (2,), "fn"),
)
REVIEW_SOURCE_ATTRIBUTE = "MPUNet.ReviewReferenceOf"


def error_masks(prediction: np.ndarray, reference: np.ndarray) -> Dict[str, np.ndarray]:
    """Boolean false-positive and false-negative masks per class (see :data:`ERROR_SEGMENTS`).

    Args:
        prediction: ``(z, y, x)`` predicted label map.
        reference: ``(z, y, x)`` reference label map on the same grid.

    Returns:
        ``{segment ID: mask}`` in :data:`ERROR_SEGMENTS` order.

    Raises:
        ValueError: on a shape mismatch.
    """
    prediction, reference = np.asarray(prediction), np.asarray(reference)
    if prediction.shape != reference.shape:
        raise ValueError(f"prediction {prediction.shape} and reference {reference.shape} must share a grid")
    masks = {}
    for segment_id, _, _, labels, kind in ERROR_SEGMENTS:
        predicted, expected = np.isin(prediction, labels), np.isin(reference, labels)
        masks[segment_id] = predicted & ~expected if kind == "fp" else expected & ~predicted
    return masks


def error_map_segmentation(prediction: Any, reference: Any, volume: Any, name: Optional[str] = None) -> Any:
    """Create a segmentation node holding the disagreements of a prediction with a reference.

    Args:
        prediction: the predicted ``vtkMRMLSegmentationNode`` (or label map volume).
        reference: the expert's segmentation node or label map volume (any geometry; resampled).
        volume: the CT whose voxel grid is used.
        name: node name (default "<prediction> errors"), made unique.

    Returns:
        The new node, with the four segments of :data:`ERROR_SEGMENTS` (empty where there is no error);
        each segment's voxel count is in its ``MPUNet.Voxels`` tag.
    """
    import slicer
    import slicer.util

    from .segmentation_nodes import label_array_from_node

    predicted = label_array_from_node(prediction, volume)
    expected = label_array_from_node(reference, volume)
    scene = slicer.mrmlScene
    node = scene.AddNewNodeByClass(
        "vtkMRMLSegmentationNode", scene.GenerateUniqueName(name or f"{prediction.GetName()} errors")
    )
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    node.SetAndObserveTransformNodeID(volume.GetTransformNodeID())
    node.CreateDefaultDisplayNodes()
    segmentation = node.GetSegmentation()
    for (segment_id, segment_name, color, _, _), mask in zip(
        ERROR_SEGMENTS, error_masks(predicted, expected).values()
    ):
        segmentation.AddEmptySegment(segment_id, segment_name, list(color))
        if mask.any():
            slicer.util.updateSegmentBinaryLabelmapFromArray(mask.astype(np.uint8), node, segment_id, volume)
        segment = segmentation.GetSegment(segment_id)
        segment.SetName(segment_name)
        segment.SetColor(*color)
        segment.SetNameAutoGenerated(False)
        segment.SetColorAutoGenerated(False)
        segment.SetTag("MPUNet.Voxels", str(int(np.count_nonzero(mask))))
    return node


def reference_segmentation(reference: Any, volume: Any) -> Any:
    """The expert reference as a segmentation node: itself, or (for a label map) a new node made once.

    A label map becomes "<label map> reference" with the module's liver and tumour segments (label 1 =
    liver, 2 = tumour), reused on the next review of the same label map.
    """
    import slicer

    from .segmentation_nodes import create_segmentation_node, label_array_from_node

    if reference.IsA("vtkMRMLSegmentationNode"):
        return reference
    for node in slicer.util.getNodesByClass("vtkMRMLSegmentationNode"):
        if node.GetAttribute(REVIEW_SOURCE_ATTRIBUTE) == reference.GetID():
            return node
    labels = label_array_from_node(reference, volume)
    labels[labels > 2] = 0
    node = create_segmentation_node(labels, volume, name=f"{reference.GetName()} reference")
    node.SetAttribute(REVIEW_SOURCE_ATTRIBUTE, reference.GetID())
    return node


@dataclass
class ReviewState:
    """What :func:`start_review` set up, and what it changed (so that :meth:`end` can undo it).

    Attributes:
        mode: "side-by-side" or "overlay".
        layout_id: the review layout shown.
        slice_nodes: the review's slice nodes, left first.
        prediction, reference, error_map: the segmentation nodes shown (error map: overlay mode only).
    """

    mode: str
    layout_id: int
    slice_nodes: List[Any]
    prediction: Any
    reference: Any
    error_map: Any = None
    views: Optional[SavedViews] = None
    saved: List[Tuple[Any, Dict[str, Any]]] = field(default_factory=list)

    def end(self) -> None:
        """Restore every view and display setting the review changed, and the previous layout."""
        for display, state in reversed(self.saved):
            _restore_display(display, state)
        self.saved = []
        if self.views is not None:
            views, self.views = self.views, None
            views.restore()


def start_review(
    volume: Any,
    prediction: Any,
    reference: Any,
    mode: str = SIDE_BY_SIDE,
    table: Any = None,
    error_map: Any = None,
    focus_ras: Optional[Sequence[float]] = None,
) -> ReviewState:
    """Switch to a review layout and show the prediction and the reference there (see the module docs).

    Args:
        volume: the CT shown under both.
        prediction: the predicted ``vtkMRMLSegmentationNode``.
        reference: the expert's segmentation node or label map volume.
        mode: "side-by-side" or "overlay".
        table: the comparison table to show in the layout's table view (e.g. from ``logic.compare``).
        error_map: overlay mode: the error map node (default: made with :func:`error_map_segmentation`).
        focus_ras: a point to centre the slices on (default: the prediction's tumours, else its centre).

    Returns:
        The :class:`ReviewState`.

    Raises:
        ValueError: on missing or unsuitable nodes or an unknown mode.
    """
    if mode not in (SIDE_BY_SIDE, OVERLAY):
        raise ValueError(f"review mode must be '{SIDE_BY_SIDE}' or '{OVERLAY}', not {mode!r}")
    if volume is None or not volume.IsA("vtkMRMLScalarVolumeNode"):
        raise ValueError("select the CT volume to review")
    if prediction is None or not prediction.IsA("vtkMRMLSegmentationNode"):
        raise ValueError("select the predicted segmentation to review")
    if reference is None or not (
        reference.IsA("vtkMRMLSegmentationNode") or reference.IsA("vtkMRMLVolumeNode")
    ):
        raise ValueError("select the expert reference (a segmentation or a label map)")
    shown_reference = reference_segmentation(reference, volume)
    if mode == OVERLAY and error_map is None:
        error_map = error_map_segmentation(prediction, reference, volume)
    layout_id = SIDE_BY_SIDE_LAYOUT if mode == SIDE_BY_SIDE else OVERLAY_LAYOUT
    names = [LEFT_VIEW, RIGHT_VIEW] if mode == SIDE_BY_SIDE else [LEFT_VIEW]
    views = save_views()  # before anything changes (the views that exist now are the user's)
    set_layout(layout_id)
    logics = [slice_logic(name) for name in names]
    slice_nodes = [logic.GetSliceNode() for logic in logics]
    state = ReviewState(mode, layout_id, slice_nodes, prediction, shown_reference, error_map, views)
    for logic in logics:
        composite = logic.GetSliceCompositeNode()
        composite.SetBackgroundVolumeID(volume.GetID())
        composite.SetForegroundVolumeID(None)
        composite.SetLabelVolumeID(None)
        composite.SetLinkedControl(True)
        composite.SetHotLinkedControl(True)
        logic.GetSliceNode().SetOrientationToAxial()
    view_ids = [node.GetID() for node in slice_nodes]
    if mode == SIDE_BY_SIDE:
        _show(state, prediction, [view_ids[0]], fill=True, outline=True)
        _show(state, shown_reference, [view_ids[1]], fill=True, outline=True)
    else:
        _show(state, prediction, view_ids, fill=False, outline=True)
        _show(state, shown_reference, view_ids, fill=False, outline=True, opacity=0.7)
        _show(state, error_map, view_ids, fill=True, outline=False, opacity=0.6)
    _align_views(logics, focus_ras if focus_ras is not None else default_focus(prediction, volume))
    if table is not None:
        show_table(table)
    return state


def default_focus(prediction: Any, volume: Any) -> Optional[Tuple[float, float, float]]:
    """The RAS centre of the predicted tumours (or of the whole prediction); None when it is empty."""
    import slicer.util
    import vtk

    from .segmentation_nodes import label_array_from_node

    labels = label_array_from_node(prediction, volume)
    voxels = np.argwhere(labels == 2)
    if voxels.size == 0:
        voxels = np.argwhere(labels > 0)
    if voxels.size == 0:
        return None
    k, j, i = voxels.mean(axis=0)
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    local = matrix.MultiplyPoint([float(i), float(j), float(k), 1.0])[:3]
    transform = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(volume.GetParentTransformNode(), None, transform)
    return tuple(transform.TransformPoint(local))


def _align_views(logics: Sequence[Any], focus: Optional[Sequence[float]]) -> None:
    """Fit the first view to the volume, centre it on ``focus``, and give every view the same geometry."""
    first = logics[0]
    first.FitSliceToAll()
    node = first.GetSliceNode()
    if focus is not None:
        node.JumpSliceByOffsetting(*[float(v) for v in focus])
    for other in logics[1:]:
        target = other.GetSliceNode()
        target.GetSliceToRAS().DeepCopy(node.GetSliceToRAS())
        target.SetXYZOrigin(*node.GetXYZOrigin())
        width, height, depth = node.GetFieldOfView()
        dims = target.GetDimensions()
        aspect = dims[1] / dims[0] if dims[0] else height / width
        target.SetFieldOfView(width, width * aspect, depth)
        target.UpdateMatrices()


_DISPLAY_PROPERTIES = (
    "Visibility",
    "Visibility2DFill",
    "Visibility2DOutline",
    "Opacity2DFill",
    "Opacity2DOutline",
)


def _show(
    state: ReviewState,
    node: Any,
    view_ids: Sequence[str],
    fill: bool,
    outline: bool,
    opacity: Optional[float] = None,
) -> None:
    """Show a segmentation only in ``view_ids`` with the given style, remembering its display settings."""
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    saved: Dict[str, Any] = {name: getattr(display, f"Get{name}")() for name in _DISPLAY_PROPERTIES}
    saved["ViewNodeIDs"] = [display.GetNthViewNodeID(i) for i in range(display.GetNumberOfViewNodeIDs())]
    if not any(item[0] is display for item in state.saved):
        state.saved.append((display, saved))
    was_modifying = display.StartModify()
    try:
        display.RemoveAllViewNodeIDs()
        for view_id in view_ids:
            display.AddViewNodeID(view_id)
        display.SetVisibility(True)
        display.SetVisibility2DFill(fill)
        display.SetVisibility2DOutline(outline)
        if opacity is not None and fill:
            display.SetOpacity2DFill(opacity)
        elif opacity is not None:
            display.SetOpacity2DOutline(opacity)
    finally:
        display.EndModify(was_modifying)


def _restore_display(display: Any, state: Dict[str, Any]) -> None:
    was_modifying = display.StartModify()
    try:
        display.RemoveAllViewNodeIDs()
        for view_id in state["ViewNodeIDs"]:
            display.AddViewNodeID(view_id)
        for name in _DISPLAY_PROPERTIES:
            getattr(display, f"Set{name}")(state[name])
    finally:
        display.EndModify(was_modifying)
