"""Chunked trilinear resampling between the input grid and the network grid.

Trilinear interpolation with ``align_corners=False`` is separable, so it is done as bilinear
interpolation of whole slices (``torch.nn.functional.interpolate``) plus linear interpolation along z
with the same source-index rule PyTorch uses (``src = (dst + 0.5) * n_in / n_out - 0.5``, clamped at
0). Working on a few slices at a time keeps memory bounded: a 512 x 512 x 1000 CT is never copied
whole at full resolution, and the full-resolution probabilities of all classes never exist at once.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .decided import argmax_classes, decided_labels


def linear_source_indices(n_in: int, n_out: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices and weights of 1-D linear interpolation from ``n_in`` to ``n_out`` samples.

    Args:
        n_in: input length.
        n_out: output length.

    Returns:
        (i0, i1, w1): output sample k is ``(1 - w1[k]) * x[i0[k]] + w1[k] * x[i1[k]]``, exactly as
        ``F.interpolate(..., mode="linear", align_corners=False, size=n_out)`` computes it.
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"lengths must be >= 1, got n_in={n_in}, n_out={n_out}")
    dst = torch.arange(n_out, dtype=torch.float64)
    src = ((dst + 0.5) * (n_in / n_out) - 0.5).clamp_(min=0.0)
    i0 = src.floor().long().clamp_(max=n_in - 1)
    i1 = torch.where(i0 < n_in - 1, i0 + 1, i0)
    w1 = (src - i0.double()).clamp_(0.0, 1.0).float()
    return i0, i1, w1


def antialias_sigma(factor: float) -> float:
    """Gaussian sigma, in input voxels, that keeps a downsampling by ``factor`` (> 1) from aliasing.

    The rule of ``skimage.transform.resize(anti_aliasing=True)``: ``(factor - 1) / 2``; no blur when
    the grid gets finer or stays.
    """
    return max(0.0, (float(factor) - 1.0) / 2.0)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian taps of ``sigma`` samples, radius ``int(3 * sigma + 0.5)`` (as scipy)."""
    radius = int(3.0 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    return (taps / taps.sum()).float()


def gaussian_blur_axis(x: torch.Tensor, sigma: float, dim: int) -> torch.Tensor:
    """``x`` blurred along ``dim`` by a Gaussian of ``sigma`` samples; edges continue their last value.

    Matches ``scipy.ndimage.gaussian_filter1d(mode="nearest", truncate=3.0)``. Returns ``x`` itself
    when ``sigma`` is 0.
    """
    if sigma <= 0:
        return x
    taps = gaussian_kernel(sigma)
    radius = (len(taps) - 1) // 2
    moved = x.movedim(dim, -1)
    lines = moved.reshape(-1, 1, moved.shape[-1])
    lines = F.pad(lines, (radius, radius), mode="replicate")
    out = F.conv1d(lines, taps.view(1, 1, -1).to(lines.dtype))
    return out.reshape(moved.shape).movedim(-1, dim).contiguous()


def _float_block(array: Any, z0: int, z1: int) -> torch.Tensor:
    """A float32 copy of slices [z0, z1) of a (C, z, y, x) array or tensor."""
    if isinstance(array, torch.Tensor):
        return array[:, z0:z1].to(device="cpu", dtype=torch.float32, copy=True)
    return torch.from_numpy(np.array(array[:, z0:z1], dtype=np.float32, copy=True))


def _lerp_z(src: torch.Tensor, i0: torch.Tensor, i1: torch.Tensor, w1: torch.Tensor) -> torch.Tensor:
    """Linear interpolation along dim 1 of a (C, z, y, x) tensor at the given source indices."""
    a = src.index_select(1, i0)
    if bool((w1 == 0).all()):
        return a
    b = src.index_select(1, i1)
    return torch.lerp(a, b, w1.view(1, -1, 1, 1).to(a.dtype))


def resample_to_shape(
    array: Any,
    out_shape: Sequence[int],
    fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    chunk_slices: int = 16,
    antialias: bool = False,
) -> torch.Tensor:
    """Trilinear resampling of a (z, y, x) or (C, z, y, x) array to ``out_shape`` (z, y, x).

    Args:
        array: numpy array or tensor, (z, y, x) or (C, z, y, x); never modified.
        out_shape: target (z, y, x).
        fn: optional in-place function applied to each float32 block before interpolation (e.g. the
            HU clip/scale, which must precede interpolation).
        chunk_slices: input slices converted and interpolated at a time.
        antialias: blur each axis that gets coarser with a Gaussian of :func:`antialias_sigma` first
            (before ``fn``), so that the output voxels average the input's noise as a coarser
            reconstruction would, instead of sampling it. In-plane on each block; along z on the
            in-plane-resampled volume (the blurs are separable, so the order does not matter).

    Returns:
        float32 CPU tensor of shape ``out_shape`` (or (C, *out_shape)).
    """
    squeeze = np.ndim(array) == 3
    if squeeze:
        array = array[None]
    if np.ndim(array) != 4:
        raise ValueError(f"expected a (z, y, x) or (C, z, y, x) array, got shape {tuple(np.shape(array))}")
    c, nz, ny, nx = (int(v) for v in np.shape(array))
    oz, oy, ox = (int(v) for v in out_shape)
    sigmas = [antialias_sigma(n / o) if antialias else 0.0 for n, o in ((nz, oz), (ny, oy), (nx, ox))]
    mid = torch.empty((c, nz, oy, ox), dtype=torch.float32)
    for z0 in range(0, nz, chunk_slices):
        z1 = min(nz, z0 + chunk_slices)
        blk = _float_block(array, z0, z1)
        blk = gaussian_blur_axis(gaussian_blur_axis(blk, sigmas[1], 2), sigmas[2], 3)
        if fn is not None:
            blk = fn(blk)
        if (oy, ox) != (ny, nx):
            blk = F.interpolate(blk.transpose(0, 1), size=(oy, ox), mode="bilinear", align_corners=False)
            blk = blk.transpose(0, 1)
        mid[:, z0:z1] = blk
    mid = gaussian_blur_axis(mid, sigmas[0], 1)
    if oz == nz:
        out = mid
    else:
        out = torch.empty((c, oz, oy, ox), dtype=torch.float32)
        i0, i1, w1 = linear_source_indices(nz, oz)
        for k0 in range(0, oz, chunk_slices):
            k1 = min(oz, k0 + chunk_slices)
            out[:, k0:k1] = _lerp_z(mid, i0[k0:k1], i1[k0:k1], w1[k0:k1])
        del mid
    return out[0] if squeeze else out


def iter_to_grid(
    probs: torch.Tensor,
    out_shape: Sequence[int],
    chunk_slices: int = 8,
    check: Optional[Callable[[], None]] = None,
) -> Iterator[Tuple[int, int, torch.Tensor]]:
    """Yield trilinear resamplings of (C, z', y', x') probabilities onto ``out_shape``, z-chunk by z-chunk.

    Args:
        probs: (C, z', y', x') float tensor on the CPU (network grid).
        out_shape: the input grid (z, y, x).
        chunk_slices: output slices per chunk.
        check: called before each chunk (e.g. to raise on cancellation).

    Yields:
        (z0, z1, block) with block a float32 tensor (z1 - z0, C, y, x).
    """
    c, nz, ny, nx = probs.shape
    oz, oy, ox = (int(v) for v in out_shape)
    i0, i1, w1 = linear_source_indices(nz, oz)
    for z0 in range(0, oz, chunk_slices):
        if check is not None:
            check()
        z1 = min(oz, z0 + chunk_slices)
        if nz == oz:
            blk = probs[:, z0:z1].float()
        else:
            blk = _lerp_z(probs, i0[z0:z1], i1[z0:z1], w1[z0:z1]).float()
        blk = blk.transpose(0, 1)
        if (oy, ox) != (ny, nx):
            blk = F.interpolate(blk, size=(oy, ox), mode="bilinear", align_corners=False)
        yield z0, z1, blk


def probabilities_to_labels(
    probs: torch.Tensor,
    out_shape: Sequence[int],
    chunk_slices: Optional[int] = None,
    check: Optional[Callable[[], None]] = None,
) -> np.ndarray:
    """Argmax label map on the input grid: per-class probabilities are resampled, then argmax'd.

    Per-class probabilities on the network grid are interpolated trilinearly onto exactly
    ``out_shape`` (z-chunk by z-chunk) and the argmax is taken there, so boundaries are smooth at the
    input resolution (no nearest-neighbour stair-steps) and the full-resolution probabilities of all
    classes never exist at once. Output voxels whose label is decided on the network grid (see
    :mod:`.decided`) take it from there; only the rows holding undecided voxels are interpolated,
    with the same arithmetic as whole slices, so the labels equal those of interpolating everything.

    Args:
        probs: (C, z', y', x') probabilities on the network grid (CPU).
        out_shape: the input grid (z, y, x).
        chunk_slices: output slices per chunk; None: as many as make 2**23 output voxels (32 slices of
            512 x 512), so a chunk's float32 band holds at most C x 32 MiB. Few large chunks matter:
            torch's threads hand over at each call, which on a loaded machine costs more than the work.
        check: called before each chunk (e.g. to raise on cancellation).

    Returns:
        uint8 array of shape ``out_shape``.
    """
    c, nz, ny, nx = (int(v) for v in probs.shape)
    oz, oy, ox = (int(v) for v in out_shape)
    out = np.empty((oz, oy, ox), dtype=np.uint8)
    codes, decided = decided_labels(probs, (nz != oz, ny != oy, nx != ox))
    rows_decided = decided.all(axis=2)  # (z', y'): rows whose labels are all known
    iz0, iz1, wz = linear_source_indices(nz, oz)
    iy0, iy1, _ = linear_source_indices(ny, oy)
    ix0 = linear_source_indices(nx, ox)[0]
    exact_rows = _power_of_two_ratio(ny, oy)
    if chunk_slices is None:
        chunk_slices = max(1, 2**23 // max(1, oy * ox))
    # First the NumPy bookkeeping for every chunk, then the torch work in one run: torch's worker
    # threads spin between its calls, so interleaving single-threaded NumPy work would keep them busy.
    z_src, y_src, x_src = iz0.numpy(), iy0.numpy(), ix0.numpy()
    bands = []
    for z0 in range(0, oz, chunk_slices):
        if check is not None:
            check()
        z1 = min(oz, z0 + chunk_slices)
        src = z_src[z0:z1]
        # right wherever decided; undecided rows are overwritten below
        np.take(np.take(codes[src], y_src, axis=1), x_src, axis=2, out=out[z0:z1])
        rows = np.flatnonzero(~rows_decided[src].all(axis=0)[y_src])
        if rows.size:
            bands.append((z0, z1, rows))
    out_t = torch.from_numpy(out)
    for z0, z1, rows in bands:
        if check is not None:
            check()
        r0, r1 = (int(rows[0]), int(rows[-1]) + 1) if exact_rows else (0, oy)
        a, b, o = _row_window(r0, r1, iy0, iy1, ny, oy) if exact_rows else (0, ny, 0)
        if nz == oz:
            blk = probs[:, z0:z1, a:b].float()
        else:  # whole slices, as iter_to_grid: lerp's vector/scalar split must not move with the band
            blk = _lerp_z(probs, iz0[z0:z1], iz1[z0:z1], wz[z0:z1]).float()[:, :, a:b]
        blk = blk.transpose(0, 1).contiguous()
        if (oy, ox) != (ny, nx):
            size = ((b - a) * oy // ny, ox)
            blk = F.interpolate(blk, size=size, mode="bilinear", align_corners=False)
        out_t[z0:z1, r0:r1] = argmax_classes(blk[:, :, r0 - o : r1 - o])
    return out


def _power_of_two_ratio(n_in: int, n_out: int) -> bool:
    """Whether n_out / n_in is 2**k (k of either sign).

    Then a band of rows interpolates exactly as the whole slice does: the band's scale equals the
    slice's and every source position is exact in float32.
    """
    big, small = max(n_in, n_out), min(n_in, n_out)
    q, r = divmod(big, small)
    return r == 0 and q & (q - 1) == 0


def _row_window(
    r0: int, r1: int, i0: torch.Tensor, i1: torch.Tensor, n_in: int, n_out: int
) -> Tuple[int, int, int]:
    """Source rows [a, b) and first output row o of a band holding output rows [r0, r1).

    One source row of margin on each side keeps the band's edge clamping away from the wanted rows,
    and a, b are multiples of the reduction factor so that the band's scale equals the slice's.
    """
    a = max(0, int(i0[r0]) - 1)
    b = min(n_in, int(i1[r1 - 1]) + 2)
    if n_in > n_out:
        f = n_in // n_out
        a, b = a // f * f, min(n_in, -(-b // f) * f)
    return a, b, a * n_out // n_in


def probabilities_to_grid(
    probs: torch.Tensor,
    out_shape: Sequence[int],
    dtype: Any = np.float32,
    chunk_slices: int = 8,
    check: Optional[Callable[[], None]] = None,
) -> np.ndarray:
    """Per-class probabilities resampled onto the input grid: array (C, z, y, x) of ``dtype``.

    Memory: C x z x y x x x itemsize (3 classes of a 512 x 512 x 1000 CT: 3.1 GB in float32, half
    in float16). Prefer :func:`probabilities_to_labels` when only the labels are needed.
    """
    c = probs.shape[0]
    out = np.empty((c, *(int(v) for v in out_shape)), dtype=dtype)
    for z0, z1, blk in iter_to_grid(probs, out_shape, chunk_slices, check):
        out[:, z0:z1] = blk.transpose(0, 1).numpy()
    return out
