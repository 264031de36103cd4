"""Geometry primitives for :mod:`MPUNetCore.phantom`: a voxel canvas in patient coordinates, smooth blobs.

Coordinates are millimetres relative to the body centre: ``u`` = LPS x (+u is the patient's LEFT),
``v`` = LPS y (+v is POSTERIOR), ``w`` = LPS z (+w is SUPERIOR). Shapes are evaluated only inside
their bounding box, so a 200x512x512 phantom stays fast.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

Box = Tuple[slice, slice, slice]


class Wobble:
    """A smooth random field: a sum of a few plane waves, used to deform organ surfaces.

    Args:
        rng: random generator (its state advances deterministically).
        amplitude: peak size of the field (in level-set units, i.e. a fraction of the organ radius).
        wavelength: typical wavelength in mm.
        terms: number of plane waves.
    """

    def __init__(self, rng: np.random.Generator, amplitude: float, wavelength: float, terms: int = 4):
        directions = rng.normal(size=(terms, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        k = 2 * np.pi / (wavelength * rng.uniform(0.7, 1.4, terms))
        self.waves = (directions * k[:, None]).astype(np.float32)
        self.phases = rng.uniform(0, 2 * np.pi, terms).astype(np.float32)
        self.amplitudes = (amplitude * rng.uniform(0.5, 1.0, terms) / np.sqrt(terms)).astype(np.float32)

    def __call__(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Field value at broadcastable coordinate arrays ``u, v, w`` (mm)."""
        total = 0
        for (ku, kv, kw), phase, amp in zip(self.waves, self.phases, self.amplitudes):
            total = total + amp * np.sin(ku * u + kv * v + kw * w + phase)
        return total


class AxialGrid:
    """A voxel grid in patient coordinates with one tissue code per voxel (shared by both phantom generators).

    Args:
        u: x coordinates (mm) of the columns, increasing.
        v: y coordinates (mm) of the rows, increasing.
        w: z coordinates (mm) of the slices, increasing.
    """

    def __init__(self, u: np.ndarray, v: np.ndarray, w: np.ndarray):
        self.u, self.v, self.w = (np.asarray(a, np.float32) for a in (u, v, w))
        self.shape = (self.w.size, self.v.size, self.u.size)
        self.tissue = np.zeros(self.shape, dtype=np.uint8)

    def plane(self) -> Tuple[np.ndarray, np.ndarray]:
        """2D coordinate arrays ``(U, V)`` of an axial slice, shape ``(y, x)``."""
        return self.u[None, :], self.v[:, None]

    def box(self, centre: Sequence[float], half: Sequence[float]) -> Optional[Box]:
        """Index box ``(z, y, x)`` of slices covering ``centre +- half`` (mm, u/v/w), or None if outside."""
        slices = []
        for coord, c, h in zip((self.w, self.v, self.u), centre[::-1], half[::-1]):
            lo = int(np.searchsorted(coord, c - h))
            hi = int(np.searchsorted(coord, c + h, side="right"))
            if hi <= lo:
                return None
            slices.append(slice(lo, hi))
        return tuple(slices)

    def coords(self, box: Box) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable absolute coordinates ``(u, v, w)`` of a box."""
        return self.u[box[2]][None, None, :], self.v[box[1]][None, :, None], self.w[box[0]][:, None, None]


class Canvas(AxialGrid):
    """The voxel grid of a phantom with its HU array and tissue-code array.

    Args:
        shape: ``(z, y, x)`` voxels.
        spacing: ``(x, y, z)`` mm.
        centre: physical position (mm, relative to the grid's centre voxel) of the body centre, ``(u, v, w)``;
            ``w`` is the height of the middle slice in patient coordinates.
    """

    def __init__(self, shape: Sequence[int], spacing: Sequence[float], centre: Sequence[float]):
        nz, ny, nx = shape
        sx, sy, sz = spacing
        u = ((np.arange(nx) - (nx - 1) / 2) * sx - centre[0]).astype(np.float32)
        v = ((np.arange(ny) - (ny - 1) / 2) * sy - centre[1]).astype(np.float32)
        w = ((np.arange(nz) - (nz - 1) / 2) * sz + centre[2]).astype(np.float32)
        super().__init__(u, v, w)
        self.hu = np.full(self.shape, -1000.0, dtype=np.float32)

    def paint(self, box: Box, mask: np.ndarray, tissue: int, hu) -> None:
        """Set tissue code and HU (a number or an array like ``mask``) where ``mask`` is true in ``box``."""
        self.tissue[box][mask] = tissue
        self.hu[box][mask] = hu if np.isscalar(hu) else np.broadcast_to(hu, mask.shape)[mask]


def ellipsoid_level(
    u,
    v,
    w,
    centre: Sequence[float],
    radii: Sequence[float],
    angle: float = 0.0,
    shear: float = 0.0,
    taper: float = 0.0,
) -> np.ndarray:
    """Level set of an ellipsoid (negative inside, about -1 at the centre, 0 on the surface).

    Args:
        u: u coordinates (mm), broadcastable with ``v`` and ``w``.
        v: v coordinates.
        w: w coordinates.
        centre: ellipsoid centre ``(u, v, w)``.
        radii: half-axes ``(ru, rv, rw)`` before rotation.
        angle: rotation about the w (cranio-caudal) axis, radians.
        shear: the centre moves by ``shear * dw`` in u with height (an organ leaning sideways).
        taper: the v half-axis scales by ``1 - taper * du / ru`` (thinner towards +u when positive).

    Returns:
        The level-set array.
    """
    centre, radii = [float(x) for x in centre], [float(r) for r in radii]  # keep float32 arithmetic
    du, dv, dw = u - centre[0], v - centre[1], w - centre[2]
    if shear:
        du = du - float(shear) * dw
    if angle:
        c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        du, dv = c * du + s * dv, c * dv - s * du
    rv = radii[1]
    if taper:
        rv = radii[1] * np.clip(1 - float(taper) * du / radii[0], 0.25, 1.5)
    return np.sqrt((du / radii[0]) ** 2 + (dv / rv) ** 2 + (dw / radii[2]) ** 2) - 1


def segment_distance(u, v, w, p0: Sequence[float], p1: Sequence[float]) -> np.ndarray:
    """Distance (mm) from each point to the segment ``p0``-``p1`` (a vessel centre line)."""
    p0, d = np.asarray(p0, np.float32), np.asarray(p1, np.float32) - np.asarray(p0, np.float32)
    length2 = max(float(d @ d), 1e-6)
    t = np.clip(((u - p0[0]) * d[0] + (v - p0[1]) * d[1] + (w - p0[2]) * d[2]) / length2, 0, 1)
    return np.sqrt((u - p0[0] - t * d[0]) ** 2 + (v - p0[1] - t * d[1]) ** 2 + (w - p0[2] - t * d[2]) ** 2)


def blur3(array: np.ndarray, weights: Sequence[float]) -> None:
    """In-place separable 3-tap blur ``[a, 1-2a, a]`` along each axis (a partial-volume effect).

    Args:
        array: float array ``(z, y, x)``, modified in place.
        weights: side-tap weight per axis ``(z, y, x)``; a 3-tap kernel with weight ``a`` has variance
            ``2a`` voxels squared. 0 skips the axis.
    """
    for axis, a in enumerate(weights):
        if a <= 0 or array.shape[axis] < 2:
            continue
        a = np.float32(a)
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        lo, hi = tuple(lo), tuple(hi)
        diff = array[hi] - array[lo]  # x[i+1] - x[i]
        diff *= a
        # y[i] = x[i] + a (x[i+1] - x[i]) - a (x[i] - x[i-1]); edges replicate their value.
        array[lo] += diff
        array[hi] -= diff
