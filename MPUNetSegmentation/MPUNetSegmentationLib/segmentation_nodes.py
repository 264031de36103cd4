"""Label map arrays <-> segmentation nodes, on a reference volume's voxel grid.

* :func:`create_segmentation_node` turns the network's label map (0 background, 1 liver, 2 liver tumour)
  into a NEW ``vtkMRMLSegmentationNode`` with named, coloured segments carrying standard (SNOMED CT)
  terminology. Segments are exclusive, as in the label map: "Liver" holds label 1 (liver tissue outside
  tumours), "Liver tumor" label 2; every configured segment exists even when empty.
* :func:`label_array_from_node` turns an expert reference (a label map volume or a segmentation node)
  into a label array on the reference volume's grid, resampling with Slicer's own machinery when the
  geometries differ.

Arrays are ``(z, y, x)`` on the grid ``slicer.util.arrayFromVolume(reference)`` returns (that is, the
grid of :func:`.scene_arrays.array_from_volume_node`). Existing nodes are never modified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
REGION_CONTEXT = "Anatomic codes - DICOM master list"


def _code(scheme: str, value: str, meaning: str) -> str:
    return f"{scheme}^{value}^{meaning}"


def terminology_entry(category: str, type_: str, region: str = "^^") -> str:
    """Return a segment terminology entry in Slicer's serialized form.

    The form is ``context~category~type~typeModifier~regionContext~region~regionModifier`` with each
    code written ``scheme^value^meaning`` (what ``vtkSlicerTerminologiesModuleLogic.
    SerializeTerminologyEntry`` produces in Slicer 5.8 and later; :func:`set_segment_terminology` stores it).

    Args:
        category: category code, ``scheme^value^meaning``.
        type_: type code, ``scheme^value^meaning``.
        region: anatomic region code, ``scheme^value^meaning`` (``"^^"`` for none).

    Returns:
        The serialized entry.
    """
    return "~".join((TERMINOLOGY_CONTEXT, category, type_, "^^", REGION_CONTEXT, region, "^^"))


def set_segment_terminology(segment: Any, entry: str) -> None:
    """Give a ``vtkSegment`` a serialized terminology entry, in every Slicer from 5.8 on.

    ``vtkSegment.SetTerminology`` only exists from Slicer 5.10; it writes the tag named by
    ``vtkSegment.GetTerminologyEntryTagName()`` ("TerminologyEntry"), which is where 5.8 keeps the entry
    too, so writing that tag is the same in every release.

    Args:
        segment: the ``vtkSegment``.
        entry: the entry, as :func:`terminology_entry` returns it.
    """
    segment.SetTag(segment.GetTerminologyEntryTagName(), entry)


def segment_terminology(segment: Any) -> str:
    """Return a ``vtkSegment``'s serialized terminology entry ("" when it has none), in Slicer 5.8 and later.

    Args:
        segment: the ``vtkSegment``.

    Returns:
        The entry stored under ``vtkSegment.GetTerminologyEntryTagName()``.
    """
    import vtk

    value = vtk.reference("")
    if not segment.GetTag(segment.GetTerminologyEntryTagName(), value):
        return ""
    return str(value)


ANATOMICAL_STRUCTURE = _code("SCT", "123037004", "Anatomical Structure")
MORPHOLOGICALLY_ALTERED_STRUCTURE = _code("SCT", "49755003", "Morphologically Altered Structure")
LIVER = _code("SCT", "10200004", "Liver")
NEOPLASM = _code("SCT", "108369006", "Neoplasm")


@dataclass(frozen=True)
class SegmentSpec:
    """How one label value becomes a segment.

    Attributes:
        label: voxel value in the label map.
        segment_id: ID of the segment in the segmentation.
        name: segment name shown to the user.
        color: RGB in [0, 1].
        terminology: serialized terminology entry (see :func:`terminology_entry`).
    """

    label: int
    segment_id: str
    name: str
    color: Tuple[float, float, float]
    terminology: str


LIVER_SEGMENTS: Tuple[SegmentSpec, ...] = (
    # Liver colour is the one Slicer recommends for the liver code; the tumour's light green contrasts
    # with it and with CT grey values.
    SegmentSpec(
        1, "liver", "Liver", (221 / 255, 130 / 255, 101 / 255), terminology_entry(ANATOMICAL_STRUCTURE, LIVER)
    ),
    SegmentSpec(
        2,
        "liver_tumor",
        "Liver tumor",
        (144 / 255, 238 / 255, 144 / 255),
        terminology_entry(MORPHOLOGICALLY_ALTERED_STRUCTURE, NEOPLASM, LIVER),
    ),
)


def _check_label_array(labels: np.ndarray, reference_volume: Any, specs: Sequence[SegmentSpec]) -> np.ndarray:
    import slicer.util

    labels = np.asarray(labels)
    if reference_volume is None or not reference_volume.IsA("vtkMRMLVolumeNode"):
        raise ValueError(f"expected a reference volume node, got {reference_volume!r}")
    expected = slicer.util.arrayFromVolume(reference_volume).shape
    if labels.shape != expected:
        raise ValueError(
            f"label map shape {labels.shape} does not match volume '{reference_volume.GetName()}' "
            f"{expected} (z, y, x): compute the label map on that volume's voxel grid"
        )
    allowed = {0} | {spec.label for spec in specs}
    present = set(np.unique(labels).tolist())
    if not present <= allowed:
        raise ValueError(
            f"label map holds values {sorted(present - allowed)} that no segment is defined for "
            f"(allowed: {sorted(allowed)})"
        )
    return labels


def create_segmentation_node(
    labels: np.ndarray,
    reference_volume: Any,
    specs: Sequence[SegmentSpec] = LIVER_SEGMENTS,
    name: Optional[str] = None,
    closed_surface: bool = False,
) -> Any:
    """Create a new segmentation node from a label map on a reference volume's grid.

    All segments share one binary-labelmap layer whose voxel values are the label values, so the node
    saves as a plain 3D ``.seg.nrrd`` label map.

    Args:
        labels: ``(z, y, x)`` integer array, same shape as ``slicer.util.arrayFromVolume(reference_volume)``,
            holding 0 and the ``label`` values of ``specs``.
        reference_volume: the volume the labels were computed on; it is only read.
        specs: one :class:`SegmentSpec` per label value, with labels 1, 2, ..., N in this order
            (default: liver and liver tumour).
        name: node name (default ``"<volume name> MPU-Net"``), made unique in the scene.
        closed_surface: also create the closed-surface (3D) representation.

    Returns:
        The new ``vtkMRMLSegmentationNode``, with display nodes, under the reference's parent transform.

    Raises:
        ValueError: on a shape mismatch, unknown label values, specs not numbered 1..N, or a missing
            reference volume.
    """
    import slicer
    import slicer.util
    import vtk

    if [spec.label for spec in specs] != list(range(1, len(specs) + 1)):
        raise ValueError(f"segment labels must be 1..N in order, got {[spec.label for spec in specs]}")
    labels = _check_label_array(labels, reference_volume, specs)
    scene = slicer.mrmlScene
    base_name = name or f"{reference_volume.GetName()} MPU-Net"
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(base_name))
    label_node = None
    try:
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
        node.SetAndObserveTransformNodeID(reference_volume.GetTransformNodeID())
        node.CreateDefaultDisplayNodes()
        segmentation = node.GetSegmentation()
        segment_ids = vtk.vtkStringArray()
        for spec in specs:
            segmentation.AddEmptySegment(spec.segment_id, spec.name, list(spec.color))
            segment_ids.InsertNextValue(spec.segment_id)
        if labels.any():
            # label value i + 1 goes to the i-th listed segment (vtkSlicerSegmentationsModuleLogic)
            label_node = slicer.modules.volumes.logic().CreateAndAddLabelVolume(
                reference_volume, "__mpunet_labels__"
            )
            slicer.util.updateVolumeFromArray(label_node, labels.astype(np.uint8))
            logic = slicer.modules.segmentations.logic()
            if not logic.ImportLabelmapToSegmentationNode(label_node, node, segment_ids):
                raise RuntimeError(f"Slicer could not import the label map into '{node.GetName()}'")
        for spec in specs:
            segment = segmentation.GetSegment(spec.segment_id)
            segment.SetName(spec.name)
            segment.SetColor(*spec.color)
            set_segment_terminology(segment, spec.terminology)
            segment.SetNameAutoGenerated(False)
            segment.SetColorAutoGenerated(False)
        if closed_surface:
            node.CreateClosedSurfaceRepresentation()
    except Exception:
        scene.RemoveNode(node)
        raise
    finally:
        if label_node is not None:
            remove_node(label_node)
    return node


def remove_node(node: Any) -> None:
    """Remove a node with its display and storage nodes (RemoveNode leaves them); no-op outside a scene."""
    scene = node.GetScene()
    if scene is None:
        return
    helpers = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
    helpers += [node.GetNthStorageNode(i) for i in range(node.GetNumberOfStorageNodes())]
    for helper in helpers:
        if helper is not None:
            scene.RemoveNode(helper)
    scene.RemoveNode(node)


def _same_grid(volume_a: Any, volume_b: Any, tolerance: float = 1e-6) -> bool:
    import slicer.util
    import vtk

    if volume_a.GetImageData() is None or volume_b.GetImageData() is None:
        return False
    if volume_a.GetImageData().GetDimensions() != volume_b.GetImageData().GetDimensions():
        return False
    if volume_a.GetTransformNodeID() != volume_b.GetTransformNodeID():
        return False
    matrices = []
    for volume in (volume_a, volume_b):
        matrix = vtk.vtkMatrix4x4()
        volume.GetIJKToRASMatrix(matrix)
        matrices.append(slicer.util.arrayFromVTKMatrix(matrix))
    return bool(np.allclose(matrices[0], matrices[1], atol=tolerance, rtol=0))


_TUMOUR_NAME = re.compile(r"tumou?r|lesion|neoplasm|cancer|metasta", re.IGNORECASE)


def default_segment_labels(segment_names: Sequence[str]) -> Dict[str, int]:
    """Guess label values for a reference segmentation's segments: tumour-like names 2, the others 1.

    Args:
        segment_names: the segments' names, e.g. ``["Liver", "Tumor 1"]`` or ``["Segment_1"]``.

    Returns:
        ``{name: label}``; a name mentioning tumour/tumor/lesion/neoplasm/cancer/metastasis maps to 2.
    """
    return {name: (2 if _TUMOUR_NAME.search(name) else 1) for name in segment_names}


def label_array_from_node(
    node: Any, reference_volume: Any, segment_labels: Optional[Mapping[str, int]] = None
) -> np.ndarray:
    """Return a reference label map (label map volume or segmentation node) on a volume's voxel grid.

    Label map volumes on the same grid are copied as they are; otherwise (and for segmentations) Slicer's
    segmentation export resamples with nearest neighbour onto the reference grid. Segments are painted in
    increasing label order, so where segments overlap (a "Liver" that includes its tumours) the higher
    label (the tumour) wins, which gives LiTS-style labels (liver = label >= 1, tumour = 2).

    Args:
        node: ``vtkMRMLLabelMapVolumeNode`` (or scalar volume holding labels) or ``vtkMRMLSegmentationNode``.
        reference_volume: the volume whose grid the result is on.
        segment_labels: for segmentations, ``{segment name: label value}``; segments not listed are skipped.
            Default: :func:`default_segment_labels` of all segments.

    Returns:
        ``(z, y, x)`` ``uint8`` array shaped like ``slicer.util.arrayFromVolume(reference_volume)``.

    Raises:
        ValueError: on a missing node, an unsupported node type, or labels outside 0..255.
    """
    import slicer
    import slicer.util

    if node is None or reference_volume is None:
        raise ValueError("both a reference label node and a volume are required")
    if node.IsA("vtkMRMLVolumeNode"):
        if _same_grid(node, reference_volume):
            array = np.array(slicer.util.arrayFromVolume(node), copy=True)
            return _as_labels(array, node.GetName())
        return _resample_label_volume(node, reference_volume)
    if not node.IsA("vtkMRMLSegmentationNode"):
        raise ValueError(
            f"'{node.GetName()}' is a {node.GetClassName()}: select a label map volume or a segmentation"
        )
    segmentation = node.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    names = [segmentation.GetSegment(i).GetName() for i in ids]
    mapping = dict(segment_labels) if segment_labels is not None else default_segment_labels(names)
    shape = slicer.util.arrayFromVolume(reference_volume).shape
    result = np.zeros(shape, np.uint8)
    for segment_id, segment_name in sorted(zip(ids, names), key=lambda item: mapping.get(item[1], -1)):
        if segment_name not in mapping:
            continue
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, reference_volume)
        result[mask > 0] = mapping[segment_name]
    return result


def _as_labels(array: np.ndarray, name: str) -> np.ndarray:
    if array.size and (array.min() < 0 or array.max() > 255 or not np.array_equal(array, np.round(array))):
        raise ValueError(f"'{name}' does not hold integer labels in 0..255: select a label map")
    return array.astype(np.uint8)


def _resample_label_volume(label_volume: Any, reference_volume: Any) -> np.ndarray:
    """Resample a label volume onto the reference grid through a temporary segmentation node."""
    import slicer
    import slicer.util

    scene = slicer.mrmlScene
    logic = slicer.modules.segmentations.logic()
    values = np.unique(slicer.util.arrayFromVolume(label_volume))
    _as_labels(values, label_volume.GetName())
    if label_volume.IsA("vtkMRMLLabelMapVolumeNode"):
        source = label_volume
    else:  # a scalar volume holding labels: copy it into a temporary label map node
        source = slicer.modules.volumes.logic().CreateAndAddLabelVolume(label_volume, "__mpunet_labels__")
        slicer.util.updateVolumeFromArray(source, slicer.util.arrayFromVolume(label_volume).astype(np.uint8))
    temporary = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "__mpunet_reference__")
    try:
        if not logic.ImportLabelmapToSegmentationNode(source, temporary):
            raise ValueError(f"could not read labels from '{label_volume.GetName()}'")
        segmentation = temporary.GetSegmentation()
        result = np.zeros(slicer.util.arrayFromVolume(reference_volume).shape, np.uint8)
        for index in range(segmentation.GetNumberOfSegments()):
            segment_id = segmentation.GetNthSegmentID(index)
            value = segmentation.GetSegment(segment_id).GetLabelValue()
            mask = slicer.util.arrayFromSegmentBinaryLabelmap(temporary, segment_id, reference_volume)
            result[mask > 0] = value
        return result
    finally:
        remove_node(temporary)
        if source is not label_volume:
            remove_node(source)
