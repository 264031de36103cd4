"""Memory layout of the network's forward pass on CPU: plain (NCDHW) or channels-last with oneDNN.

Why converting the model to ``channels_last_3d`` at load time did not reach the fast kernels
(measured with ``torch.profiler`` on the demo model, ``benchmarks/bench_layout.py --profile``):

1. **PyTorch sends most batch-1 3-D convolutions to its im2col fallback.** ``F.conv3d`` picks oneDNN
   (``mkldnn_convolution``) for a 3x3x3 kernel only when ``N*C*D*H > 20480`` (a heuristic written for
   2-D inputs, where it reads ``N*C*H*W``). With one window per batch that is false for every
   convolution of a 16x128x128 window and for the shallow and deep stages of larger ones, so they ran
   ``slow_conv3d_forward`` (im2col + GEMM, 1-6 GFLOP/s here), which ignores the layout and copies a
   channels-last tensor back to contiguous first: the conversion only added copies.
2. **A one-channel input is both contiguous and channels-last**, so ``x.contiguous(memory_format=
   channels_last_3d)`` returns it unchanged, and the first convolution (whose one-input-channel weight
   is ambiguous too) returned a contiguous output; the network stayed contiguous up to the first
   convolution that happened to take the oneDNN path.

The channels-last forward here therefore (a) gives the input explicit channels-last strides,
(b) runs every float32 CPU convolution through oneDNN (a ``TorchFunctionMode`` around the forward
only; the network code is unchanged), and (c) takes the 4-D/5-D parameters converted once per model
(cached; rebuilt when a parameter or buffer changes: another tensor, or an in-place update that bumps
its version counter) through ``torch.func.functional_call``, leaving the caller's model untouched.
oneDNN computes the same sums in another order: probabilities agree with the plain forward to float32
rounding (``Testing/test_layout.py``).

Which layout is faster depends on the model and the window (measured in ``benchmarks/README.md``);
:func:`choose_layout` encodes the measured rule.
"""

from __future__ import annotations

import weakref
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.overrides import TorchFunctionMode

from .settings import Layout

__all__ = ["LAYOUTS", "channels_last_parameters", "choose_layout", "layout_forward", "to_channels_last"]

LAYOUTS = tuple(layout.value for layout in Layout)  # the setting's values, in one place
#: Windows with fewer voxels than this keep the plain layout under "auto". Measured (CPU seconds per
#: forward, 2 threads, benchmarks/README.md): channels-last 0.93x at 16x32x32, 1.18x at 16x64x64,
#: 1.40x at 16x128x128 and 16x256x256, 1.33x at 48x256x256 (demo model); 1.29x at 16x128x128 (full
#: width).
MIN_CHANNELS_LAST_VOXELS = 16 * 64 * 64

Forward = Callable[[torch.Tensor], torch.Tensor]
_CACHE: weakref.WeakKeyDictionary[nn.Module, Tuple[tuple, Dict[str, torch.Tensor]]]
_CACHE = weakref.WeakKeyDictionary()
_CONVS = {F.conv2d, F.conv3d, torch.conv2d, torch.conv3d}


def _memory_format(t: torch.Tensor) -> Optional[torch.memory_format]:
    return {4: torch.channels_last, 5: torch.channels_last_3d}.get(t.dim())


def _version(t: torch.Tensor) -> int:
    try:
        return int(t._version)
    except RuntimeError:  # inference tensors have no version counter; data_ptr still changes
        return -1


def _fingerprint(model: nn.Module) -> tuple:
    """What identifies the model's current weights: each tensor's storage, version, dtype and device."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    return tuple((n, t.data_ptr(), _version(t), t.dtype, t.device, tuple(t.shape)) for n, t in tensors)


def channels_last_parameters(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The model's 4-D/5-D parameters and buffers in channels-last layout, converted once and cached.

    The cache is keyed on the model (weakly) and checked against each tensor's storage pointer and
    version counter, so ``load_state_dict``, an optimiser step, ``.to(device)`` or an in-place edit
    makes the next call convert again. The model itself is not modified.

    Returns:
        name -> channels-last tensor (detached), for ``torch.func.functional_call``.
    """
    key = _fingerprint(model)
    hit = _CACHE.get(model)
    if hit is not None and hit[0] == key:
        return hit[1]
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    with torch.no_grad():
        converted = {
            n: t.detach().contiguous(memory_format=fmt)
            for n, t in tensors
            if (fmt := _memory_format(t)) is not None
        }
    _CACHE[model] = (key, converted)
    return converted


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` with explicit channels-last strides, also when it has one channel (where
    ``contiguous(memory_format=...)`` is a no-op and PyTorch would read the layout as contiguous)."""
    fmt = _memory_format(x)
    if fmt is None:
        return x
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=fmt)
    return out.copy_(x)


def _autocast_on() -> bool:
    try:
        return bool(torch.is_autocast_enabled("cpu"))
    except TypeError:  # torch < 2.4
        return bool(torch.is_autocast_cpu_enabled())


def _onednn_usable() -> bool:
    return bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


def _triple(value: object, n: int) -> list:
    return list(value) if isinstance(value, (tuple, list)) else [int(value)] * n  # type: ignore[arg-type]


class OneDNNConvolutions(TorchFunctionMode):
    """Run float32 CPU convolutions (2-D and 3-D, numeric padding, no autograd) through oneDNN.

    Left to PyTorch: other devices and dtypes, autocast (it would not see the direct call), autograd,
    and builds without oneDNN or with ``torch.backends.mkldnn.enabled = False``.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = kwargs or {}
        if func in _CONVS:
            names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
            call = {**dict(zip(names, args)), **kwargs}
            x, w = call["input"], call["weight"]
            padding = call.get("padding", 0)
            if (
                x.device.type == "cpu"
                and x.dtype == w.dtype == torch.float32
                and not isinstance(padding, str)
                and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))
                and not _autocast_on()
                and _onednn_usable()
            ):
                n = w.dim() - 2
                return torch.ops.aten.mkldnn_convolution(
                    x,
                    w,
                    call.get("bias"),
                    _triple(padding, n),
                    _triple(call.get("stride", 1), n),
                    _triple(call.get("dilation", 1), n),
                    int(call.get("groups", 1)),
                )
        return func(*args, **kwargs)


def choose_layout(requested: str, model: nn.Module, window: Sequence[int], device: torch.device) -> str:
    """The layout to run: ``requested`` unless it is "auto", then the measured rule.

    Rule ("auto"): channels-last for 3-D models on the CPU when the window has at least
    :data:`MIN_CHANNELS_LAST_VOXELS` voxels (16 x 64 x 64); the plain layout for smaller windows,
    where per-call overhead dominates and channels-last measured slower, and on GPUs and for 2-D
    models (not measured). Both measured models (demo, 8-64 channels; released full width, 16-256)
    follow the same threshold, so the rule depends on the window only.

    Args:
        requested: "auto", "contiguous" or "channels_last".
        model: the network (``spatial_dims`` attribute; 3 assumed when absent).
        window: the window's spatial size.
        device: where the network runs.
    """
    if requested not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {requested!r}")
    if requested != "auto":
        return requested
    dims = int(getattr(model, "spatial_dims", len(window)) or len(window))
    voxels = 1
    for s in window:
        voxels *= int(s)
    if device.type == "cpu" and dims == 3 and voxels >= MIN_CHANNELS_LAST_VOXELS:
        return "channels_last"
    return "contiguous"


def layout_forward(model: nn.Module, layout: str) -> Forward:
    """A callable running ``model`` in ``layout`` ("contiguous": the model itself)."""
    if layout == "contiguous":
        return model
    if layout != "channels_last":
        raise ValueError(f"layout must be 'contiguous' or 'channels_last' here, got {layout!r}")
    params = channels_last_parameters(model)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with OneDNNConvolutions():
            return functional_call(model, params, (to_channels_last(x),))

    return forward
