"""Preprocessing: from a CT array in Hounsfield units to the network's space, and back.

The network space is the grid the model was trained on (background §3): HU clipped to ``hu_window`` and
divided by ``scale``; in-plane resampled by ``inplane_factor`` (512 -> 256) or to ``target_spacing``;
slices resampled to ``slice_spacing`` millimetres. The inverse maps per-class probabilities back to
EXACTLY the input grid before the argmax, so a label map never drifts from the input geometry.

Arrays are (z, y, x) like ``SimpleITK.GetArrayFromImage``; spacings are (x, y, z) like
``SimpleITK.Image.GetSpacing``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from .resampling import resample_to_shape

Shape3 = Tuple[int, int, int]
Spacing3 = Tuple[float, float, float]


@dataclass(frozen=True)
class Preprocessing:
    """How a CT volume is brought into the network's space.

    Args:
        hu_window: (lower, upper) HU clip window; the released model uses (-200, 200).
        scale: divisor applied after clipping (released: 200, giving values in [-1, 1]).
        inplane_factor: in-plane resampling factor (0.5: 512 x 512 -> 256 x 256). Ignored (set to
            None) when ``target_spacing`` is given.
        target_spacing: in-plane (x, y) spacing in mm to resample to, instead of a fixed factor.
        slice_spacing: slice spacing in mm to resample z to (released: 1.0); None keeps the slices.
        antialias: before downsampling, blur each axis that gets coarser with a Gaussian of
            ``(factor - 1) / 2`` input voxels. A 0.8 mm, 1 mm-slice scan on a 3 mm grid otherwise keeps
            its per-pixel noise (about 4 x that of a 3 mm reconstruction); off by default, as in the
            released procedure and nnU-Net. A model trained with it should be run with it.

    Example:
        >>> Preprocessing().pad_value
        -1.0
    """

    hu_window: Tuple[float, float] = (-200.0, 200.0)
    scale: float = 200.0
    inplane_factor: Optional[float] = 0.5
    target_spacing: Optional[Tuple[float, float]] = None
    slice_spacing: Optional[float] = 1.0
    antialias: bool = False

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.hu_window)
        if not lo < hi:
            raise ValueError(f"hu_window must be (lower, upper) with lower < upper, got {self.hu_window}")
        object.__setattr__(self, "hu_window", (lo, hi))
        if not float(self.scale) > 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")
        object.__setattr__(self, "scale", float(self.scale))
        if self.target_spacing is not None:
            ts = tuple(float(v) for v in self.target_spacing)
            if len(ts) != 2 or min(ts) <= 0:
                raise ValueError(f"target_spacing must be two positive (x, y) mm values, got {ts}")
            object.__setattr__(self, "target_spacing", ts)
            object.__setattr__(self, "inplane_factor", None)
        elif self.inplane_factor is None:
            raise ValueError("give either inplane_factor (e.g. 0.5) or target_spacing (x, y) in mm")
        elif not float(self.inplane_factor) > 0:
            raise ValueError(f"inplane_factor must be > 0, got {self.inplane_factor}")
        else:
            object.__setattr__(self, "inplane_factor", float(self.inplane_factor))
        if self.slice_spacing is not None:
            if not float(self.slice_spacing) > 0:
                raise ValueError(f"slice_spacing must be > 0 mm or None, got {self.slice_spacing}")
            object.__setattr__(self, "slice_spacing", float(self.slice_spacing))
        if not isinstance(self.antialias, bool):
            raise ValueError(f"antialias must be true or false, got {self.antialias!r}")

    @property
    def pad_value(self) -> float:
        """The value of air after preprocessing (the lower clip divided by ``scale``)."""
        return self.hu_window[0] / self.scale

    def to_dict(self) -> Dict[str, Any]:
        """Return a JSON-friendly dict (lists instead of tuples), the inverse of :meth:`from_dict`.

        ``antialias`` appears only when on, so cards and training caches made without it stay as they were.
        """
        d = asdict(self)
        if not d["antialias"]:
            del d["antialias"]
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> Preprocessing:
        """Build from a dict as written by :meth:`to_dict` (e.g. from a model card).

        Raises:
            ValueError: on unknown keys or invalid values.
        """
        known = {"hu_window", "scale", "inplane_factor", "target_spacing", "slice_spacing", "antialias"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown preprocessing keys {sorted(unknown)}; known keys: {sorted(known)}")
        kwargs = dict(data)
        for key in ("hu_window", "target_spacing"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    def network_shape(self, shape: Sequence[int], spacing: Sequence[float]) -> Shape3:
        """The (z, y, x) size of the network-space grid for an input of ``shape`` and ``spacing``."""
        nz, ny, nx = (int(v) for v in shape)
        sx, sy, sz = (float(v) for v in spacing)
        if self.target_spacing is not None:
            nx2 = round(nx * sx / self.target_spacing[0])
            ny2 = round(ny * sy / self.target_spacing[1])
        else:
            nx2 = round(nx * self.inplane_factor)
            ny2 = round(ny * self.inplane_factor)
        nz2 = nz if self.slice_spacing is None else round(nz * sz / self.slice_spacing)
        return (max(1, nz2), max(1, ny2), max(1, nx2))

    def intensity(self, x: torch.Tensor) -> torch.Tensor:
        """Clip to ``hu_window`` and divide by ``scale``, in place on a float tensor."""
        return x.clamp_(self.hu_window[0], self.hu_window[1]).div_(self.scale)


@dataclass(frozen=True)
class NetworkTransform:
    """The geometry of one input <-> network-space mapping.

    Attributes:
        input_shape: (z, y, x) of the input array.
        network_shape: (z, y, x) of the network-space array.
        input_spacing: (x, y, z) mm of the input.
        network_spacing: (x, y, z) mm of the network-space grid (same physical extent).
    """

    input_shape: Shape3
    network_shape: Shape3
    input_spacing: Spacing3
    network_spacing: Spacing3


def _check_geometry(shape: Sequence[int], spacing: Sequence[float]) -> Tuple[Shape3, Spacing3]:
    shape = tuple(int(v) for v in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"expected a (z, y, x) volume with at least one voxel, got shape {shape}")
    sp = tuple(float(v) for v in spacing)
    if len(sp) != 3 or min(sp) <= 0 or not all(np.isfinite(sp)):
        raise ValueError(f"spacing must be three positive (x, y, z) mm values, got {tuple(spacing)}")
    return shape, sp  # type: ignore[return-value]


def plan_transform(shape: Sequence[int], spacing: Sequence[float], prep: Preprocessing) -> NetworkTransform:
    """Compute the :class:`NetworkTransform` for a volume of ``shape`` (z, y, x) and ``spacing`` (x, y, z)."""
    shp, sp = _check_geometry(shape, spacing)
    net = prep.network_shape(shp, sp)
    net_sp = (sp[0] * shp[2] / net[2], sp[1] * shp[1] / net[1], sp[2] * shp[0] / net[0])
    return NetworkTransform(shp, net, sp, net_sp)


def to_network_space(
    array: Any,
    spacing: Sequence[float],
    prep: Preprocessing,
    chunk_slices: int = 16,
) -> Tuple[torch.Tensor, NetworkTransform]:
    """Bring a CT volume into the network's space.

    HU are clipped and scaled first, then the volume is resampled with trilinear interpolation
    (``align_corners=False``, i.e. voxel centres of equal physical extent; for a factor 0.5 this is an
    exact 2 x 2 average). Trilinear is separable, so it runs as bilinear on chunks of slices followed
    by linear interpolation along z: the float32 result equals ``F.interpolate(mode="trilinear")``
    while only ``chunk_slices`` full-resolution slices are copied at a time.

    Args:
        array: (z, y, x) numpy array or tensor in HU (any real dtype; not modified).
        spacing: (x, y, z) voxel spacing in mm.
        prep: the :class:`Preprocessing`.
        chunk_slices: full-resolution slices processed at a time (memory bound).

    Returns:
        (image, transform): a float32 CPU tensor (z', y', x') and the :class:`NetworkTransform`.
    """
    transform = plan_transform(np.shape(array), spacing, prep)

    def _intensity(x: torch.Tensor) -> torch.Tensor:
        return prep.intensity(x)

    image = resample_to_shape(
        array, transform.network_shape, fn=_intensity, chunk_slices=chunk_slices, antialias=prep.antialias
    )
    return image, transform
