"""A model's label map file -> segmentation node, with the segments its model card names.

The background run writes a label map with exactly the input volume's geometry (the input was written from
the node's own voxel grid, see :mod:`.process`). :func:`read_label_map_on_volume_grid` reads it with
SimpleITK and checks that; a grid that differs (it should not) is resampled by nearest neighbour onto the
volume's grid instead of being trusted blindly. :func:`segment_specs_for_model` reads the segment names
and colours from the model card without importing torch (the Slicer process never does).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from .scene_arrays import VolumeGeometry, volume_geometry
from .segmentation_nodes import (
    ANATOMICAL_STRUCTURE,
    LIVER,
    MORPHOLOGICALLY_ALTERED_STRUCTURE,
    NEOPLASM,
    SegmentSpec,
    terminology_entry,
)

_TUMOUR = re.compile(r"tumou?r|lesion|neoplasm|cancer|metasta", re.IGNORECASE)
TISSUE = "SCT^85756007^Tissue"  # generic category and type for classes other than liver and tumour


def terminology_for_class(name: str) -> str:
    """Return a standard (SNOMED CT) terminology entry for a class name: liver, liver tumour, or tissue."""
    if _TUMOUR.search(name):
        return terminology_entry(MORPHOLOGICALLY_ALTERED_STRUCTURE, NEOPLASM, LIVER)
    if name.strip().lower() == "liver":
        return terminology_entry(ANATOMICAL_STRUCTURE, LIVER)
    return terminology_entry(TISSUE, TISSUE)


def segment_specs_from_classes(classes: Sequence[Any]) -> Tuple[SegmentSpec, ...]:
    """Turn a model card's ``classes`` into segment specs (background, value 0, is skipped).

    Args:
        classes: ``[{"value": int, "name": str, "color": [r, g, b]}, ...]`` with values 0..N.

    Returns:
        One :class:`SegmentSpec` per foreground class, in value order (1..N).

    Raises:
        ValueError: when the values are not 0..N or a class lacks a name.
    """
    try:
        items = sorted((int(c["value"]), str(c["name"]), c.get("color")) for c in classes)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"each model class needs a 'value' and a 'name' ({error})") from None
    if [value for value, _, _ in items] != list(range(len(items))):
        raise ValueError(f"model class values must be 0..N, got {[value for value, _, _ in items]}")
    specs: List[SegmentSpec] = []
    for value, name, color in items[1:]:
        rgb = tuple(float(c) for c in (color or (0.5, 0.5, 0.5)))[:3]
        segment_id = re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") or f"label_{value}"
        specs.append(SegmentSpec(value, segment_id, name, rgb, terminology_for_class(name)))
    return tuple(specs)


def segment_specs_for_model(model: Optional[str]) -> Tuple[SegmentSpec, ...]:
    """Read the segment names and colours of a model (registry name or bundle path) from its card.

    Uses ``MPUNetCore.registry.resolve_model`` (torch-free) to find the card: a registered model is then
    already in the download cache, because the background run fetched it.

    Args:
        model: registry name, bundle path, or None for the default model.

    Returns:
        The specs of its foreground classes.

    Raises:
        ValueError: when the card cannot be found or read.
    """
    from MPUNetCore.model_card import read_card
    from MPUNetCore.registry import resolve_model

    card = read_card(resolve_model(model))
    return segment_specs_from_classes([vars(c) for c in card.classes])


def _geometry_matches(a: VolumeGeometry, b: VolumeGeometry, tolerance: float = 1e-4) -> bool:
    return all(
        np.allclose(getattr(a, name), getattr(b, name), rtol=0, atol=tolerance)
        for name in ("spacing", "origin", "direction")
    )


def read_label_map_on_volume_grid(path: Union[str, Path], volume_node: Any) -> np.ndarray:
    """Read a label map file and return it on a volume node's voxel grid.

    Args:
        path: label map written by the background run.
        volume_node: the input volume (only read).

    Returns:
        ``(z, y, x)`` ``uint8`` array shaped like ``slicer.util.arrayFromVolume(volume_node)``.

    Raises:
        ValueError: when the file is not a single-component integer image.
    """
    import SimpleITK as sitk
    import slicer.util

    image = sitk.ReadImage(str(path))
    if image.GetNumberOfComponentsPerPixel() != 1 or image.GetDimension() != 3:
        raise ValueError(f"{path} is not a 3D single-component label map")
    target_shape = slicer.util.arrayFromVolume(volume_node).shape
    target = volume_geometry(volume_node)
    source = VolumeGeometry.from_sitk(image)
    if sitk.GetArrayViewFromImage(image).shape != target_shape or not _geometry_matches(source, target):
        reference = sitk.Image([int(n) for n in target_shape[::-1]], sitk.sitkUInt8)
        reference.SetSpacing(target.spacing)
        reference.SetOrigin(target.origin)
        reference.SetDirection(target.direction)
        image = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    labels = sitk.GetArrayFromImage(image)
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"{path} holds values outside 0..255; it is not a label map")
    return labels.astype(np.uint8)


def replace_segmentation_content(target: Any, source: Any) -> Any:
    """Make ``target`` hold exactly ``source``'s segments, geometry and transform (the output the user chose).

    Args:
        target: the ``vtkMRMLSegmentationNode`` to overwrite.
        source: a segmentation node this project just created; it is not modified.

    Returns:
        ``target``.
    """
    segmentation = target.GetSegmentation()
    was_modifying = target.StartModify()
    try:
        segmentation.RemoveAllSegments()
        geometry = source.GetNodeReferenceID("referenceImageGeometryRef")
        if geometry:
            target.SetNodeReferenceID("referenceImageGeometryRef", geometry)
        conversion = source.GetSegmentation().GetConversionParameter("Reference image geometry")
        segmentation.SetConversionParameter("Reference image geometry", conversion)
        target.SetAndObserveTransformNodeID(source.GetTransformNodeID())
        source_segmentation = source.GetSegmentation()
        for index in range(source_segmentation.GetNumberOfSegments()):
            segment_id = source_segmentation.GetNthSegmentID(index)
            segmentation.CopySegmentFromSegmentation(source_segmentation, segment_id)
        if target.GetDisplayNode() is None:
            target.CreateDefaultDisplayNodes()
    finally:
        target.EndModify(was_modifying)
    return target
