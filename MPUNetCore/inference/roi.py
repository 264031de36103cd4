"""Region of interest: the in-plane bounding box of the body, to skip the air around it.

A CT's field of view is mostly air around the patient. Cropping the network-space volume in-plane to
the bounding box of everything above air (plus a margin, rounded up to the network's input multiple)
shrinks every window and so the work per window; voxels outside the box are background. The liver
lies inside the body, so only voxels that cannot be liver are skipped; the network does see less air
around the body than with full-plane windows (check agreement on real weights before relying on it).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch


def _axis_range(profile: torch.Tensor, margin: int, multiple: int) -> slice:
    idx = torch.nonzero(profile).flatten()
    n = profile.numel()
    lo, hi = max(0, int(idx[0]) - margin), min(n, int(idx[-1]) + 1 + margin)
    size = -(-(hi - lo) // multiple) * multiple
    if size >= n:
        return slice(0, n)
    grow = size - (hi - lo)
    lo = max(0, lo - grow // 2)
    hi = lo + size
    if hi > n:
        lo, hi = n - size, n
    return slice(lo, hi)


def body_box(
    image: torch.Tensor, air_value: float, margin: int = 8, multiple: int = 8, tolerance: float = 0.01
) -> Optional[Tuple[slice, slice]]:
    """In-plane (y, x) bounding box of the non-air voxels of a network-space volume.

    Args:
        image: (z, y, x) preprocessed volume.
        air_value: the value of air after preprocessing (the lower clip, ``Preprocessing.pad_value``).
        margin: voxels of air kept around the body on each side.
        multiple: box sizes are rounded up to this (the network's input multiple), growing the box
            inside the image where possible.
        tolerance: voxels above ``air_value + tolerance`` count as body.

    Returns:
        (y slice, x slice), or None when the box is the whole plane or nothing is above air (no crop).
    """
    if image.dim() != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {tuple(image.shape)}")
    plane = torch.zeros(image.shape[1:], dtype=torch.bool)
    for z0 in range(0, image.shape[0], 64):  # chunked: no full-size boolean volume
        plane |= (image[z0 : z0 + 64] > air_value + tolerance).any(dim=0)
    if not bool(plane.any()):
        return None
    box = _axis_range(plane.any(dim=1), margin, multiple), _axis_range(plane.any(dim=0), margin, multiple)
    if box == (slice(0, plane.shape[0]), slice(0, plane.shape[1])):
        return None
    return box
