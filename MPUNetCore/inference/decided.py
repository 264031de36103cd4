"""Which output labels are decided on the network grid, before any interpolation.

Trilinear interpolation (``align_corners=False``, no antialiasing) makes each output value a weighted
mean of at most 2 x 2 x 2 source voxels: along each axis the "floor" source voxel ``i0`` and the next
one (the same voxel at the last index). If one class leads every other by more than a margin on all
of those voxels, it leads after interpolation too: the interpolated lead is a convex combination of
leads above the margin, and float32 rounding of the few multiply-adds moves it by a few units in the
last place of the largest |probability|, thousands of times less than the margin (1e-4 of it). So
the label of such an output voxel is the label of its floor voxel; only the rest need interpolating.
On a CT that is most of the volume (air, body away from the liver's border).
"""

from __future__ import annotations

from typing import Callable, Sequence, Tuple

import numpy as np
import torch

__all__ = ["UNDECIDED", "argmax_classes", "decided_labels"]

#: Code of a network voxel whose lead is within the margin (or NaN): never a label (C <= 255).
UNDECIDED = 255


def argmax_classes(blk: torch.Tensor) -> torch.Tensor:
    """``blk.argmax(dim=1)`` as uint8 for (n, C, ...) with few classes (first maximum wins, like argmax).

    A running maximum over the C class planes: about 10x faster on CPU than ``argmax`` over the short,
    strided class axis.
    """
    if blk.shape[1] > 255:
        raise ValueError(f"at most 255 classes fit a uint8 label map, got {blk.shape[1]}")
    best = blk[:, 0].clone()
    labels = torch.zeros(best.shape, dtype=torch.uint8)
    for c in range(1, blk.shape[1]):
        plane = blk[:, c]
        labels.masked_fill_(plane > best, c)
        torch.maximum(best, plane, out=best)
    return labels


def _lead_codes(probs: np.ndarray, margin: float, chunk_slices: int) -> np.ndarray:
    """uint8 (z, y, x): the argmax where it leads every other class by more than ``margin``, else UNDECIDED.

    A running maximum over the class planes, then a count of the classes within the margin of it.
    """
    codes = np.empty(probs.shape[1:], dtype=np.uint8)
    for z0 in range(0, probs.shape[1], chunk_slices):
        blk = probs[:, z0 : z0 + chunk_slices]
        best = blk[0].copy()
        labels = np.zeros(best.shape, dtype=np.uint8)
        for c in range(1, blk.shape[0]):
            np.copyto(labels, c, where=blk[c] > best)  # first maximum wins, as argmax
            np.maximum(best, blk[c], out=best)
        best -= margin
        close = np.zeros(best.shape, dtype=np.uint8)  # classes within the margin of the best
        for c in range(blk.shape[0]):
            close += blk[c] >= best  # NaN compares False: no class close, undecided
        labels[close != 1] = UNDECIDED
        codes[z0 : z0 + chunk_slices] = labels
    return codes


def _forward_extreme(codes: np.ndarray, axes: Sequence[int], fn: Callable) -> np.ndarray:
    """Max or min of ``codes`` over each voxel and its next voxel along ``axes`` (edges: itself)."""
    out = codes.copy()
    for d in axes:
        n = out.shape[d]
        if n > 1:
            head = [slice(None)] * out.ndim
            tail = list(head)
            head[d], tail[d] = slice(0, n - 1), slice(1, n)
            out[tuple(head)] = fn(out[tuple(head)], out[tuple(tail)])
    return out


def decided_labels(
    probs: torch.Tensor,
    resampled_axes: Sequence[bool] = (True, True, True),
    rel_margin: float = 1e-4,
    chunk_slices: int = 32,
) -> Tuple[np.ndarray, np.ndarray]:
    """Network-grid labels and where they decide every output voxel whose floor voxel they are.

    NumPy, not torch: these are many small passes, and torch's threads synchronise at each one,
    which on a loaded machine costs more than the passes themselves.

    Args:
        probs: (C, z, y, x) class probabilities on the network grid (CPU tensor or array).
        resampled_axes: per spatial axis, whether the output grid differs there (an axis copied
            one-to-one has no neighbour in the interpolation).
        rel_margin: the lead a class must have, relative to max(1, largest |probability|).
        chunk_slices: network slices reduced at a time (bounds the float temporaries).

    Returns:
        (labels, decided): uint8 (z, y, x) argmax (UNDECIDED where the lead is within the margin) and
        bool (z, y, x), True where that voxel and its next voxel along every resampled axis share one
        decided label.
    """
    arr = probs.detach().cpu().numpy() if isinstance(probs, torch.Tensor) else np.asarray(probs)
    if arr.ndim != 4 or arr.shape[0] > 255:
        raise ValueError(f"expected (C, z, y, x) probabilities with C <= 255, got {tuple(arr.shape)}")
    if arr.size == 0:
        return np.zeros(arr.shape[1:], np.uint8), np.zeros(arr.shape[1:], bool)
    big = max(abs(float(np.min(arr))), abs(float(np.max(arr))))
    margin = rel_margin * max(1.0, big) if np.isfinite(big) else np.inf
    codes = _lead_codes(arr, margin, chunk_slices)
    axes = [d for d, resampled in enumerate(resampled_axes) if resampled]
    top = _forward_extreme(codes, axes, np.maximum)
    bottom = _forward_extreme(codes, axes, np.minimum)
    decided = (top == bottom) & (top != UNDECIDED)
    return codes, decided
