"""Checks on the voxel values of a CT before it is segmented.

Non-finite voxels (NaN, +-Inf) are refused with their count: clipping turns them into arbitrary
values whose effect spreads through the network far beyond them. Volumes whose values do not look
like CT in Hounsfield units (an 8-bit image, a constant volume, values of 1e30) are segmented, but
with a warning, because the model's intensity window assumes HU.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from .volume_io import VolumeError

#: Values beyond this magnitude are not HU (CT ranges about -1024 .. 3071, up to ~30000 with metal).
MAX_PLAUSIBLE_HU = 1e5


def replace_nonfinite(array: np.ndarray, name: str, fill: Optional[float]) -> Tuple[np.ndarray, List[str]]:
    """Refuse non-finite voxels, or replace them with ``fill`` HU in a copy.

    Args:
        array: the CT voxels (not modified).
        name: the input, for messages.
        fill: HU to put in place of NaN/Inf voxels; None refuses them.

    Returns:
        (array, warnings): the input array itself when it is finite, else a copy with the voxels replaced.

    Raises:
        VolumeError: non-finite voxels and no ``fill``.
    """
    if array.dtype.kind != "f":
        return array, []
    bad = ~np.isfinite(array)
    count = int(np.count_nonzero(bad))
    if not count:
        return array, []
    share = 100.0 * count / array.size
    if fill is None:
        raise VolumeError(
            f"{name} has {count} voxels that are NaN or infinite ({share:.3g} % of {array.size}); "
            "they would change the segmentation far around them. Fix the image, or pass "
            "--fill-nonfinite HU (e.g. --fill-nonfinite -1000 for air) to replace them."
        )
    out = array.copy()
    out[bad] = float(fill)
    return out, [f"{name}: replaced {count} NaN/infinite voxels ({share:.3g} %) with {float(fill):g} HU"]


def ct_warnings(array: np.ndarray, name: str) -> List[str]:
    """Why the voxel values do not look like CT in Hounsfield units (empty list when they do).

    Args:
        array: finite CT voxels.
        name: the input, for messages.

    Returns:
        Warning sentences, each naming the input, what looks wrong and the consequence.
    """
    if array.size == 0:
        return []
    lo, hi = float(np.min(array)), float(np.max(array))
    tail = "; the model expects CT in Hounsfield units, so its segmentation is probably wrong"
    if lo == hi:
        return [f"{name} is constant (every voxel is {lo:g}): there is nothing to segment{tail}"]
    if max(abs(lo), abs(hi)) > MAX_PLAUSIBLE_HU:
        span = f"{lo:.3g} to {hi:.3g}"
        return [f"{name} holds values from {span}, far outside the CT range (-1024..3071 HU){tail}"]
    sample = array.ravel()[:: max(1, array.size // 100000)]
    if lo >= 0 and hi <= 255 and np.array_equal(sample, np.round(sample)):
        return [
            f"{name} holds values {lo:g}..{hi:g}: an 8-bit image (a screenshot or windowed export?){tail}"
        ]
    if lo > -500:
        return [
            f"{name} has no voxel below {lo:g} (air is about -1000 HU in CT): it may be another modality "
            f"or CT without its rescale slope/intercept applied{tail}"
        ]
    return []
