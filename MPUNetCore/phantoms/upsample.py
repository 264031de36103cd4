"""Integer-factor linear upsampling and slice sampling along one axis (fast strided numpy, no copies
of the whole output per output sample)."""

from __future__ import annotations

import numpy as np


def upsample(array: np.ndarray, axis: int, factor: int, size: int) -> np.ndarray:
    """Linear interpolation from a grid of step ``factor`` to step 1 along ``axis``, ``size`` samples.

    Sample ``i`` of the result lies at ``i / factor`` of the input; the input must hold at least
    ``ceil((size - 1) / factor) + 1`` samples along ``axis`` (extra ones are ignored).

    Args:
        array: input; integer types interpolate in their own type (keep the values small enough that
            ``(hi - lo) * factor`` does not overflow).
        axis: axis to upsample.
        factor: integer step ratio (1: crop only).
        size: output length along ``axis``.

    Returns:
        The upsampled array (same dtype).
    """

    def sl(part: slice) -> tuple:
        index = [slice(None)] * array.ndim
        index[axis] = part
        return tuple(index)

    if factor == 1:
        return np.ascontiguousarray(array[sl(slice(0, size))])
    shape = list(array.shape)
    shape[axis] = size
    out = np.empty(shape, dtype=array.dtype)  # C-contiguous in the input's axis order
    integer = np.issubdtype(array.dtype, np.integer)
    for k in range(factor):
        n = len(range(k, size, factor))
        if not n:
            continue
        lo = array[sl(slice(0, n))]
        target = out[sl(slice(k, None, factor))]
        if k == 0:
            target[...] = lo
        elif integer:  # lo + (hi - lo) k / f, floored, in the input type
            step = array[sl(slice(1, n + 1))] - lo
            step *= k
            step //= factor
            step += lo
            target[...] = step
        else:
            np.multiply(
                array[sl(slice(1, n + 1))] - lo, np.asarray(k / factor, dtype=array.dtype), out=target
            )
            target += lo
    return out
