"""Sliding-window application of a segmentation network to a volume in network space.

Windows tile the (padded) volume with at least ``overlap`` overlap, spaced evenly along each axis
(nnU-Net style: the same number of windows as MONAI's ``sliding_window_inference``, but without
MONAI's crowded last window; when ``(size - window)`` is a multiple of the stride, the positions are
MONAI's). Window outputs (class probabilities) are weighted with an importance map (gaussian with
sigma = ``sigma_scale`` x window, or constant), summed into float32 accumulators at network resolution
and normalised by the summed weights. Volumes smaller than a window are padded (along z by repeating
the edge slices, in-plane with ``pad_value``, air; see :func:`pad_to_window`) and the padding is cropped
away again, so the result always covers exactly the input.

A 2-D network (``model.spatial_dims == 2``, or a 2-element window) is applied slice by slice: a window
(1, H, W) is cut from the volume, its depth axis dropped before the model and restored after, and
``batch_size`` slices go through the model together.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from functools import lru_cache
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..profiling import stage
from .devices import autocast_context, resolve_precision, select_device
from .layout import choose_layout, layout_forward
from .settings import Blending, InferenceSettings, resolve_settings

ProgressFn = Callable[[int, int], None]
CancelLike = Any  # threading.Event-like (has is_set()) or a zero-argument callable returning bool
TTALike = Union[bool, Sequence[Sequence[int]]]
_BLENDINGS = tuple(b.value for b in Blending)


class InferenceCancelled(RuntimeError):
    """Raised when inference is cancelled through the ``cancel`` event or callable."""


def is_cancelled(cancel: CancelLike) -> bool:
    """True when ``cancel`` (None, an object with ``is_set()``, or a callable) signals cancellation."""
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    if callable(cancel):
        return bool(cancel())
    raise ValueError(f"cancel must be None, a threading.Event or a zero-argument callable, got {cancel!r}")


def check_cancel(cancel: CancelLike) -> None:
    """Raise :class:`InferenceCancelled` if ``cancel`` is set."""
    if is_cancelled(cancel):
        raise InferenceCancelled("inference cancelled")


def window_starts(size: int, window: int, overlap: float) -> List[int]:
    """Evenly spaced window start positions covering ``size`` with at least ``overlap`` overlap.

    Args:
        size: axis length (>= window).
        window: window length.
        overlap: minimum overlap fraction in [0, 1).

    Returns:
        Start indices; the first is 0 and the last ``size - window``.
    """
    if window >= size:
        return [0]
    step = max(1, int(window * (1.0 - overlap)))
    n = math.ceil((size - window) / step) + 1
    actual = (size - window) / (n - 1)
    return [int(round(i * actual)) for i in range(n)]


@lru_cache(maxsize=8)
def _importance(
    window: Tuple[int, ...], mode: str, sigma_scale: float, flat: Tuple[int, ...]
) -> torch.Tensor:
    imp = torch.ones((), dtype=torch.float32)
    for axis, n in enumerate(window):
        if mode == "gaussian" and axis not in flat and n > 1:
            x = torch.arange(n, dtype=torch.float32) - (n - 1) / 2.0
            g = torch.exp(x**2 / (-2.0 * (sigma_scale * n) ** 2))
        else:
            g = torch.ones(n, dtype=torch.float32)
        imp = imp.unsqueeze(-1) * g
    return imp.clamp_(min=max(float(imp.min()), 1e-3))


def importance_map(
    window: Sequence[int], mode: str = "gaussian", sigma_scale: float = 0.125, flat_axes: Sequence[int] = ()
) -> torch.Tensor:
    """Blending weights of one window (cached; treat the result as read-only).

    Args:
        window: window size (D, H, W).
        mode: "gaussian" (MONAI's map: separable gaussian, sigma = sigma_scale x size, clamped at
            1e-3) or "constant".
        sigma_scale: gaussian sigma as a fraction of the window size.
        flat_axes: axes with a single window position; they get constant weight, which cancels in the
            normalisation anyway and keeps the clamp from flattening the other axes' profile.

    Returns:
        float32 CPU tensor of shape ``window``.
    """
    mode = mode.value if isinstance(mode, Blending) else mode
    if mode not in _BLENDINGS:
        raise ValueError(f"blending must be one of {_BLENDINGS}, got {mode!r}")
    return _importance(tuple(int(v) for v in window), mode, float(sigma_scale), tuple(sorted(flat_axes)))


def tta_flip_dims(tta: TTALike, spatial_dims: int) -> List[Tuple[int, ...]]:
    """Tensor dims to flip for each test-time-augmentation pass (the identity pass first).

    Args:
        tta: False (identity only), True (every combination of the spatial axes: 8 passes in 3-D, 4
            in 2-D), or a sequence of spatial-axis tuples (0 = first spatial axis) to add.
        spatial_dims: 2 or 3.
    """
    if tta is False or tta is None:
        return [()]
    axes = range(spatial_dims)
    if tta is True:
        combos = [c for r in range(1, spatial_dims + 1) for c in itertools.combinations(axes, r)]
    else:
        combos = [tuple(int(a) for a in c) for c in tta]
        bad = [c for c in combos if not c or any(a not in axes for a in c)]
        if bad:
            raise ValueError(f"tta flips must be non-empty tuples of spatial axes in {list(axes)}, got {bad}")
    return [()] + [tuple(a + 2 for a in c) for c in combos]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the duration, restoring its training flag afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _forward(
    model: Callable[[torch.Tensor], Any], x: torch.Tensor, flips: List[Tuple[int, ...]]
) -> torch.Tensor:
    total: Optional[torch.Tensor] = None
    for dims in flips:
        y = model(x.flip(dims) if dims else x)
        if not isinstance(y, torch.Tensor):
            raise ValueError(
                f"the model returned {type(y).__name__}, not a tensor: in eval mode it must return class "
                "probabilities (B, C, *window) (deep-supervision lists are for training only)"
            )
        if y.dim() != x.dim() or y.shape[0] != x.shape[0] or y.shape[2:] != x.shape[2:]:
            raise ValueError(
                f"the model mapped input {tuple(x.shape)} to {tuple(y.shape)}; expected (B, C, *window) "
                "probabilities at the window's size"
            )
        y = y.float()
        if dims:
            y = y.flip(dims)
        total = y if total is None else total.add_(y)
    assert total is not None
    return total.div_(len(flips)) if len(flips) > 1 else total


def _resolve_window(
    window: Sequence[Optional[int]], shape: Sequence[int], model: nn.Module
) -> Tuple[Tuple[int, int, int], bool, int]:
    """Return the (D, H, W) window, whether the model is 2-D, and the input multiple."""
    multiple = int(getattr(model, "input_multiple", 8) or 1)
    model_dims = getattr(model, "spatial_dims", None)
    win = list(window)
    if len(win) == 2:
        if model_dims == 3:
            raise ValueError("a 2-element window needs a 2-D model; this model has spatial_dims=3")
        win = [1, *win]
        two_d = True
    elif len(win) == 3:
        two_d = model_dims == 2
        if two_d and win[0] not in (1, None):
            raise ValueError(
                f"a 2-D model is applied slice by slice: use window (1, H, W) or (H, W), got {window}"
            )
    else:
        raise ValueError(f"window must be (D, H, W) or (H, W), got {window}")
    if two_d:
        win[0] = 1
    for i, w in enumerate(win):
        if w is None:  # full extent, rounded up to the input multiple
            win[i] = int(math.ceil(shape[i] / multiple) * multiple)
    checked = win[1:] if two_d else win
    if any(int(w) < 1 or int(w) % multiple for w in checked):
        fixed = [max(multiple, int(round(int(w) / multiple)) * multiple) for w in checked]
        raise ValueError(
            f"window {tuple(win)} must be made of positive multiples of model.input_multiple={multiple} "
            f"(spatial sizes the network accepts); e.g. use {tuple(fixed)}"
        )
    return (int(win[0]), int(win[1]), int(win[2])), two_d, multiple


def pad_to_window(
    image: torch.Tensor, padded: Sequence[int], before: Sequence[int], pad_value: float
) -> torch.Tensor:
    """``image`` (C, z, y, x) grown to ``padded``: along z by repeating its first and last slices,
    in-plane with ``pad_value`` (air).

    A scan ends along z because the scan range ended, not the patient: a slab of a few slices padded
    with air above and below looks like a body a few millimetres thick, and a model trained on whole
    scans finds no liver in it (the real 3-slice CT: liver Dice 0 with air, 0.82 with repeated slices).
    In-plane, outside the field of view is the air around the patient.
    """
    shape = image.shape[1:]
    z0, z1 = before[0], padded[0] - shape[0] - before[0]
    if z0 or z1:
        image = F.pad(image.unsqueeze(0), [0, 0, 0, 0, z0, z1], mode="replicate").squeeze(0)
    plane: List[int] = []
    for p, s, b in reversed(list(zip(padded[1:], shape[1:], before[1:]))):
        plane += [b, p - s - b]
    if any(plane):
        image = F.pad(image, plane, mode="constant", value=float(pad_value))
    return image


def sliding_window_predict(
    image: torch.Tensor,
    model: nn.Module,
    settings: Optional[InferenceSettings] = None,
    pad_value: float = -1.0,
    progress: Optional[ProgressFn] = None,
    cancel: CancelLike = None,
    **overrides: Any,
) -> torch.Tensor:
    """Apply ``model`` window by window and blend the class probabilities.

    Args:
        image: network-space CPU tensor (z, y, x) or (C_in, z, y, x).
        model: network returning class probabilities (B, C, *window) in eval mode; moved to
            ``settings.device`` and put in eval mode for the call. Must accept spatial sizes that are
            multiples of its ``input_multiple`` attribute (8 if absent).
        settings: window, overlap, blending, sigma_scale, batch_size, tta, device and precision (see
            :class:`InferenceSettings`; the others are not used here); None: the defaults.
        pad_value: value used to pad volumes smaller than the window in-plane (air after
            preprocessing); along z the edge slices are repeated.
        progress: called as ``progress(done_windows, total_windows)`` after each batch.
        cancel: ``threading.Event`` or zero-argument callable, checked before each batch.
        **overrides: single settings replacing those of ``settings`` (e.g. ``tta=True``).

    Returns:
        float32 CPU tensor (C, z, y, x) of blended probabilities, same spatial shape as ``image``.

    Raises:
        ValueError: bad settings, a window the model cannot take, or a model output of the wrong form.
        InferenceCancelled: when ``cancel`` is set.
    """
    settings = resolve_settings(settings, overrides)
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4:
        raise ValueError(f"image must be (z, y, x) or (C, z, y, x), got shape {tuple(image.shape)}")
    shape = tuple(int(v) for v in image.shape[1:])
    win, two_d, _ = _resolve_window(settings.window, shape, model)
    dev = select_device(settings.device)
    amp_dtype = resolve_precision(settings.precision.value, dev)
    batch_size = settings.batch_size

    padded = tuple(max(s, w) for s, w in zip(shape, win))
    before = tuple((p - s) // 2 for p, s in zip(padded, shape))
    if padded != shape:
        image = pad_to_window(image, padded, before, pad_value)

    starts = [window_starts(p, w, settings.overlap) for p, w in zip(padded, win)]
    flat = tuple(i for i, s in enumerate(starts) if len(s) == 1)
    positions = list(itertools.product(*starts))
    total = len(positions)
    imp_cpu = importance_map(win, settings.blending.value, settings.sigma_scale, flat)
    imp = imp_cpu.to(dev)
    flips = tta_flip_dims(settings.tta, 2 if two_d else 3)
    d, h, w = win

    acc: Optional[torch.Tensor] = None
    wsum = torch.zeros(padded, dtype=torch.float32)
    model.to(dev)
    with eval_mode(model):
        layout = choose_layout(settings.layout.value, model, (1, h, w) if two_d else win, dev)
        run = layout_forward(model, layout)
        for b0 in range(0, total, int(batch_size)):
            check_cancel(cancel)
            batch = positions[b0 : b0 + int(batch_size)]
            xb = torch.stack([image[:, z : z + d, y : y + h, x : x + w] for z, y, x in batch])
            if two_d:
                xb = xb[:, :, 0]
            # inference_mode only around the network: accumulators stay normal tensors
            with stage("network forward"), torch.inference_mode(), autocast_context(dev, amp_dtype):
                yb = _forward(run, xb.to(dev, non_blocking=True), flips)
                if two_d:
                    yb = yb.unsqueeze(2)
                yb = yb.mul_(imp).cpu()
            with stage("blending"):
                if acc is None:
                    acc = torch.zeros((yb.shape[1], *padded), dtype=torch.float32)
                for k, (z, y, x) in enumerate(batch):
                    acc[:, z : z + d, y : y + h, x : x + w] += yb[k]
                    wsum[z : z + d, y : y + h, x : x + w] += imp_cpu
            if progress is not None:
                progress(b0 + len(batch), total)
    check_cancel(cancel)
    assert acc is not None
    with stage("blending"):
        acc.div_(wsum)
        del wsum
        crop = tuple(slice(b, b + s) for b, s in zip(before, shape))
        if padded != shape:
            acc = acc[(slice(None), *crop)].contiguous()
    return acc
