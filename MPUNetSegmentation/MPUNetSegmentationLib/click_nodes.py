"""Put a clicked component into a segmentation node: a new segment, or merged into a chosen one.

The component is a boolean mask on a box of the input volume's voxel grid. It goes into the segmentation as
an oriented image of just that box (no full-size copy of the volume), placed with the volume's IJK-to-RAS
matrix and, when the segmentation lies under another parent transform than the volume, the linear transform
between the two. Other segments are never changed.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from .click_roi import Box
from .segmentation_nodes import LIVER_SEGMENTS, SegmentSpec, remove_node, set_segment_terminology


def class_specs(info: Dict[str, Any]) -> Dict[int, SegmentSpec]:
    """Segment names, colours and terminology by label value, from a worker's model classes.

    Args:
        info: the worker's "ready" event (``{"classes": [{"value", "name", "color"}, ...]}``); without
            classes, the module's default liver and tumour segments.

    Returns:
        ``{label value: SegmentSpec}`` for the foreground classes.
    """
    from .results import segment_specs_from_classes

    classes = info.get("classes")
    specs = segment_specs_from_classes(classes) if classes else LIVER_SEGMENTS
    return {spec.label: spec for spec in specs}


def new_output_segmentation(volume: Any) -> Any:
    """Create an empty segmentation "<volume> MPU-Net" on the volume's grid, under its parent transform."""
    import slicer

    scene = slicer.mrmlScene
    node = scene.AddNewNodeByClass(
        "vtkMRMLSegmentationNode", scene.GenerateUniqueName(f"{volume.GetName()} MPU-Net")
    )
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    node.SetAndObserveTransformNodeID(volume.GetTransformNodeID())
    node.CreateDefaultDisplayNodes()
    return node


def unique_segment_name(segmentation: Any, base: str) -> str:
    """``base`` if no segment has that name yet, else ``"base 2"``, ``"base 3"``, ..."""
    names = {segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())}
    if base not in names:
        return base
    number = 2
    while f"{base} {number}" in names:
        number += 1
    return f"{base} {number}"


def _box_image(volume: Any, box: Box, mask: np.ndarray, segmentation_node: Any) -> Any:
    """The mask as a ``vtkOrientedImageData`` in the segmentation node's coordinates."""
    import slicer
    import vtk
    from vtk.util import numpy_support

    image = slicer.vtkOrientedImageData()
    (z0, y0, x0), (z1, y1, x1) = box.start, box.stop
    image.SetExtent(x0, x1 - 1, y0, y1 - 1, z0, z1 - 1)
    data = numpy_support.numpy_to_vtk(np.ascontiguousarray(mask, dtype=np.uint8).ravel(), deep=True)
    data.SetName("ImageScalars")
    image.GetPointData().SetScalars(data)
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(ijk_to_ras)
    volume_parent, segmentation_parent = (
        volume.GetParentTransformNode(),
        segmentation_node.GetParentTransformNode(),
    )
    if volume_parent is not segmentation_parent:
        between = vtk.vtkMatrix4x4()
        if not slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes(
            volume_parent, segmentation_parent, between
        ):
            raise ValueError(
                f"'{segmentation_node.GetName()}' and '{volume.GetName()}' lie under different, non-linear "
                "transforms: choose an output segmentation under the volume's transform (or a new one)"
            )
        vtk.vtkMatrix4x4.Multiply4x4(between, ijk_to_ras, ijk_to_ras)
    image.SetImageToWorldMatrix(ijk_to_ras)
    return image


def add_component(
    volume: Any,
    box: Box,
    mask: np.ndarray,
    segmentation_node: Any,
    segment_id: Optional[str],
    spec: SegmentSpec,
) -> Tuple[Any, str, str]:
    """Add a component (a mask on ``box`` of the volume's grid) to a segmentation.

    Args:
        volume: the volume the box indexes (its IJK-to-RAS places the mask).
        box: where the mask lies in the volume's array.
        mask: boolean ``(z, y, x)`` array of ``box.shape``.
        segmentation_node: the target; None creates :func:`new_output_segmentation`.
        segment_id: merge into this existing segment (voxel-wise maximum); None adds a new segment named
            after ``spec`` (made unique), with its colour and terminology.
        spec: the class of the component.

    Returns:
        ``(segmentation node, segment ID, segment name)``.

    Raises:
        ValueError: a mask that does not fit the box, or transforms that cannot be combined.
        RuntimeError: Slicer refused the labelmap.
    """
    import slicer

    mask = np.asarray(mask, dtype=bool)
    if mask.shape != box.shape:
        raise ValueError(f"mask of shape {mask.shape} does not fit the box {box.shape}")
    created = segmentation_node is None
    if created:
        segmentation_node = new_output_segmentation(volume)
    elif not segmentation_node.GetNodeReferenceID("referenceImageGeometryRef") and (
        segmentation_node.GetSegmentation().GetNumberOfSegments() == 0
    ):
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    if segmentation_node.GetDisplayNode() is None:
        segmentation_node.CreateDefaultDisplayNodes()
    segmentation = segmentation_node.GetSegmentation()
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    added = None
    try:
        image = _box_image(volume, box, mask, segmentation_node)
        if segment_id:
            mode = logic.MODE_MERGE_MAX
        else:
            name = unique_segment_name(segmentation, spec.name)
            added = segment_id = segmentation.AddEmptySegment("", name, list(spec.color))
            mode = logic.MODE_REPLACE
        if not logic.SetBinaryLabelmapToSegment(image, segmentation_node, segment_id, mode):
            raise RuntimeError(f"Slicer could not write the component into '{segmentation_node.GetName()}'")
        segment = segmentation.GetSegment(segment_id)
        if added:
            set_segment_terminology(segment, spec.terminology)
            segment.SetNameAutoGenerated(False)
            segment.SetColorAutoGenerated(False)
    except Exception:
        if created:
            remove_node(segmentation_node)
        elif added:
            segmentation.RemoveSegment(added)
        raise
    return segmentation_node, segment_id, segment.GetName()
