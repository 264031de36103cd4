"""Post-processing of liver/tumour label maps (0 background, 1 liver, 2 tumour).

Two steps, both on by default:

1. ``tumour_in_liver``: tumour components (connected label-2 regions) that touch no liver voxel
   (label 1, within one voxel) are removed: a tumour is a lesion *of the liver*.
2. ``largest_liver``: only the largest connected component of the liver (label >= 1, i.e. liver with
   its tumours) is kept; everything outside it becomes background, tumours included.

Connected components use SimpleITK (``ConnectedComponent``), face+edge+vertex connectivity by default.
Both steps run on the smallest box holding every labelled voxel: components, the liver's dilation and
the tumours' contacts cannot reach outside it, so the result is the same as on the whole volume while
the temporaries (masks, uint32 component labels) shrink to the box, typically a small part of a CT.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import SimpleITK as sitk


def _components(mask: np.ndarray, fully_connected: bool) -> Tuple[sitk.Image, np.ndarray]:
    """Component labels (0 = background) of a contiguous boolean mask.

    Returns the SimpleITK image and a read-only numpy view of it (keep the image alive while the view
    is used; this avoids a second uint32 copy of the volume).
    """
    img = sitk.GetImageFromArray(mask.view(np.uint8))
    cc = sitk.ConnectedComponent(img, fully_connected)
    return cc, sitk.GetArrayViewFromImage(cc)


def largest_component(mask: np.ndarray, fully_connected: bool = True) -> np.ndarray:
    """Boolean mask of the largest connected component of ``mask`` (all False if it is empty)."""
    mask = np.ascontiguousarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros_like(mask)
    _img, cc = _components(mask, fully_connected)
    counts = np.bincount(cc.ravel())
    counts[0] = 0
    return cc == int(np.argmax(counts))


def foreground_box(labels: np.ndarray) -> Optional[Tuple[slice, ...]]:
    """The smallest box (one slice per axis) holding every nonzero voxel of ``labels``; None if none.

    Reduces along the first axis once, then only inside its extent, so a CT whose labels fill a few
    slices costs little more than one pass over the volume.
    """
    if labels.size == 0:
        return None
    first = np.flatnonzero(labels.reshape(labels.shape[0], -1).max(axis=1))
    if first.size == 0:
        return None
    box = [slice(int(first[0]), int(first[-1]) + 1)]
    inner = labels[box[0]]
    for axis in range(1, labels.ndim):
        others = tuple(a for a in range(labels.ndim) if a != axis)
        hit = np.flatnonzero(inner.max(axis=others))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def postprocess_labels(
    labels: np.ndarray,
    largest_liver: bool = True,
    tumour_in_liver: bool = True,
    fully_connected: bool = True,
) -> np.ndarray:
    """Clean a liver/tumour label map (see the module docstring).

    Args:
        labels: integer array (z, y, x) with 0 background, 1 liver, 2 tumour (2-D or 3-D works).
        largest_liver: keep only the largest connected component of label >= 1.
        tumour_in_liver: remove tumour components that touch no liver voxel.
        fully_connected: 26-connectivity in 3-D (8 in 2-D) if True, else 6 (4).

    Returns:
        A new uint8 array of the same shape; ``labels`` is not modified.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iub":
        raise ValueError(f"labels must be an integer label map, got dtype {labels.dtype}")
    out = labels.astype(np.uint8, copy=True)
    box = foreground_box(out)
    if box is None:
        return out
    _clean(out[box], largest_liver, tumour_in_liver, fully_connected)
    return out


def _clean(out: np.ndarray, largest_liver: bool, tumour_in_liver: bool, fully_connected: bool) -> None:
    """Both steps in place on ``out`` (a view of the labelled box)."""
    if tumour_in_liver:
        tumour = out == 2
        if tumour.any():
            _img, cc = _components(tumour, fully_connected)
            liver = sitk.GetImageFromArray((out == 1).view(np.uint8))
            # A view does not keep its image alive: hold the dilated image while the view is read
            # (reading the view of a temporary read freed memory, so the result depended on malloc).
            dilated = sitk.BinaryDilate(liver, [1] * out.ndim)
            near_liver = sitk.GetArrayViewFromImage(dilated) > 0
            del dilated
            keep = np.zeros(int(cc.max()) + 1, dtype=bool)
            keep[np.unique(cc[near_liver & tumour])] = True
            keep[0] = True
            out[~keep[cc]] = 0
            del cc, _img
    if largest_liver:
        keep_mask = largest_component(out >= 1, fully_connected)
        out[~keep_mask] = 0
