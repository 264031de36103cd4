"""Surface-distance metrics in millimetres (ASSD, MSD/Hausdorff, RMSD, HD95) via SimpleITK.

Surface definition (identical to MONAI's ``get_mask_edges`` without sub-voxels): a foreground voxel is
a surface voxel when at least one of its face neighbours (6 in 3D, 4 in 2D) is background; voxels on the
array border count as surface (the outside is background). This is ``sitk.BinaryContour`` with
``fullyConnected=False`` on the mask padded by one background voxel, and equals
``mask ^ scipy.ndimage.binary_erosion(mask)``.

Distances are exact Euclidean distances between surface-voxel centres, in the units of ``spacing``,
from ``sitk.SignedMaurerDistanceMap`` of the other mask's surface. With ``d(P->G)`` the distances from
every prediction surface voxel to the nearest reference surface voxel and ``d(G->P)`` the reverse:

- ``assd``: mean of the pooled set ``d(P->G) U d(G->P)`` (MONAI ``compute_average_surface_distance(
  symmetric=True)``, LiTS ASSD).
- ``msd``: maximum of the pooled set, the symmetric Hausdorff distance (LiTS MSSD).
- ``rmsd``: square root of the mean squared pooled distance (LiTS RMSD).
- ``hd95``: ``max(P95(d(P->G)), P95(d(G->P)))`` with linear-interpolated percentiles, exactly MONAI's
  ``compute_hausdorff_distance(percentile=95)``; note it is *not* the 95th percentile of the pooled set.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ._inputs import binary_pair, check_spacing

SURFACE_KEYS = ("assd", "msd", "rmsd", "hd95")


def _axis_range(projection: np.ndarray) -> Tuple[int, int]:
    """First and last index where a 1D boolean projection is True."""
    hits = np.flatnonzero(projection)
    return int(hits[0]), int(hits[-1])


def _bounding_box(mask: np.ndarray) -> Tuple[Tuple[int, int], ...]:
    """Inclusive (low, high) index per axis of the foreground of a non-empty boolean mask."""
    first = np.any(mask, axis=0)  # one pass over the volume, result is (ndim-1)-dimensional
    ranges = [_axis_range(np.any(mask, axis=tuple(range(1, mask.ndim))))]
    for axis in range(first.ndim):
        other = tuple(a for a in range(first.ndim) if a != axis)
        ranges.append(_axis_range(np.any(first, axis=other) if other else first))
    return tuple(ranges)


def _padded_crop(mask: np.ndarray, box: Sequence[Tuple[int, int]]) -> np.ndarray:
    """Copy ``mask[box]`` into a uint8 array with one background voxel of margin on every side."""
    inner = tuple(slice(lo, hi + 1) for lo, hi in box)
    out = np.zeros(tuple(hi - lo + 3 for lo, hi in box), dtype=np.uint8)
    out[tuple(slice(1, -1) for _ in box)] = mask[inner]
    return out


def _contour(crop: np.ndarray, sitk_spacing: Sequence[float]) -> sitk.Image:
    image = sitk.GetImageFromArray(crop)
    image.SetSpacing(tuple(sitk_spacing))
    return sitk.BinaryContour(image, fullyConnected=False, backgroundValue=0, foregroundValue=1)


def _distances_to(contour: sitk.Image, at: np.ndarray) -> np.ndarray:
    """Distances (float64) from the voxels where ``at`` is True to the nearest voxel of ``contour``."""
    distance = sitk.SignedMaurerDistanceMap(
        contour, insideIsPositive=False, squaredDistance=False, useImageSpacing=True, backgroundValue=0
    )
    values = sitk.GetArrayViewFromImage(distance)[at].astype(np.float64)
    np.maximum(values, 0.0, out=values)  # voxels of the contour itself are <= 0: distance 0
    return values


def surface_distances(
    prediction: np.ndarray, reference: np.ndarray, spacing: Optional[Sequence[float]] = None
) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """Directed surface distances between two binary masks.

    Args:
        prediction: Binary predicted mask (NumPy or torch, 2D or 3D, values 0/1).
        reference: Binary reference mask of the same shape.
        spacing: Voxel spacing in mm in array axis order, or ``None`` for 1 mm.

    Returns:
        ``(d_pred_to_ref, d_ref_to_pred)`` as float64 arrays (one value per surface voxel), or ``None``
        when either mask is empty (no surface to measure from).
    """
    pred, ref = binary_pair(prediction, reference)
    return directed_distances(pred, ref, check_spacing(spacing, pred.ndim))


def directed_distances(
    pred: np.ndarray, ref: np.ndarray, spacing: Tuple[float, ...]
) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """:func:`surface_distances` for already validated boolean masks and spacing (array axis order)."""
    if not (pred.any() and ref.any()):
        return None
    box_p, box_r = _bounding_box(pred), _bounding_box(ref)
    box = tuple((min(a[0], b[0]), max(a[1], b[1])) for a, b in zip(box_p, box_r))
    sitk_spacing = spacing[::-1]  # SimpleITK wants (x, y, z); arrays are (z, y, x)
    contour_p = _contour(_padded_crop(pred, box), sitk_spacing)
    contour_r = _contour(_padded_crop(ref, box), sitk_spacing)
    # Views into the contour images (kept alive above): no extra copy of the cropped volume.
    surf_p = sitk.GetArrayViewFromImage(contour_p).view(np.bool_)
    surf_r = sitk.GetArrayViewFromImage(contour_r).view(np.bool_)
    d_pred_to_ref = _distances_to(contour_r, surf_p)
    d_ref_to_pred = _distances_to(contour_p, surf_r)
    return d_pred_to_ref, d_ref_to_pred


def summarize_distances(
    distances: Optional[Tuple[np.ndarray, np.ndarray]], both_empty: bool
) -> Dict[str, float]:
    """Reduce directed surface distances to ASSD, MSD, RMSD and HD95 (see the module docstring).

    Args:
        distances: Output of :func:`surface_distances`, or ``None`` when a mask is empty.
        both_empty: Whether both masks are empty (then every distance is 0; with exactly one empty
            mask every distance is NaN, meaning "missing").

    Returns:
        A dict with keys assd, msd, rmsd, hd95.
    """
    if distances is None:
        value = 0.0 if both_empty else math.nan
        return dict.fromkeys(SURFACE_KEYS, value)
    d_pr, d_rp = distances
    n = d_pr.size + d_rp.size
    return {
        "assd": float((d_pr.sum() + d_rp.sum()) / n),
        "msd": float(max(d_pr.max(), d_rp.max())),
        "rmsd": float(math.sqrt((np.dot(d_pr, d_pr) + np.dot(d_rp, d_rp)) / n)),
        "hd95": float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95))),
    }
