"""Checks every segmentation runs before it allocates anything: voxel values and the memory budget.

Called by :func:`MPUNetCore.pipeline.segment_volume` (hence by ``mpunet segment``, the Slicer module's
background run and the batch script), so every entry point refuses and warns in the same words.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple, Union

import numpy as np

from .ct_checks import ct_warnings, replace_nonfinite
from .inference.preprocessing import Preprocessing, plan_transform
from .memory import check_run_memory, estimate_run_bytes, first_layer_channels
from .volume_io import Volume

WarnFn = Callable[[str], None]


def _setting(settings: Any, key: str, default: Any) -> Any:
    """A value from a settings dict or settings object (None when missing becomes ``default``)."""
    value = settings.get(key) if isinstance(settings, dict) else getattr(settings, key, None)
    return default if value is None else value


def window_and_padded_grid(window: Any, network_shape: Any, multiple: int) -> Tuple[int, Tuple[int, ...]]:
    """Voxels of one window, and the network grid padded as the sliding window pads it.

    None/0 window entries mean the full extent rounded up to ``multiple``; a grid smaller than the
    window is padded up to the window (so a thin, tall grid can cost far more than its own voxels).
    """
    sizes = list(window)[-3:] if window is not None else [None, None, None]
    while len(sizes) < 3:
        sizes.insert(0, 1)
    win = [
        -(-int(full) // multiple) * multiple if size in (None, 0) else int(size)
        for size, full in zip(sizes, network_shape)
    ]
    padded = tuple(max(int(full), w) for full, w in zip(network_shape, win))
    return win[0] * win[1] * win[2], padded


def checked_array(
    volume: Volume,
    model: Any,
    preprocessing: Preprocessing,
    settings: Any,
    max_memory: Union[None, str, int] = None,
    fill_nonfinite: Optional[float] = None,
    warn: Optional[WarnFn] = None,
) -> np.ndarray:
    """The volume's voxels, checked: finite (or filled), CT-like (or warned about), within the budget.

    Args:
        volume: the CT.
        model: the network (its first layer's width sizes the activation estimate).
        preprocessing: the card's preprocessing (it decides the network grid).
        settings: the run's inference settings (dict or settings object: window, batch_size, device).
        max_memory: memory budget ("4G", bytes); None: the memory available now.
        fill_nonfinite: HU replacing NaN/Inf voxels; None refuses them.
        warn: called with each warning sentence (default: ignored).

    Returns:
        The array to segment (the volume's own array, or a copy with non-finite voxels replaced).

    Raises:
        VolumeError: non-finite voxels without ``fill_nonfinite``.
        MemoryBudgetError: the estimated peak memory exceeds the budget.
    """
    name = str(volume.path) if volume.path is not None else (volume.name or "the volume")
    transform = plan_transform(volume.shape, volume.spacing, preprocessing)
    classes = int(getattr(model, "out_channels", 0) or 3)
    device = str(_setting(settings, "device", "cpu"))
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    multiple = int(getattr(model, "input_multiple", 8) or 1)
    window, padded = window_and_padded_grid(
        _setting(settings, "window", None), transform.network_shape, multiple
    )
    needed = estimate_run_bytes(
        volume.shape,
        padded,
        classes,
        window,
        int(_setting(settings, "batch_size", 1)),
        first_layer_channels(model),
        activations_on_host=not device.startswith(("cuda", "mps")),
    )
    check_run_memory(
        name,
        volume.shape,
        volume.spacing,
        transform.network_shape,
        transform.network_spacing,
        needed,
        max_memory,
    )
    array, notes = replace_nonfinite(volume.array, name, fill_nonfinite)
    for line in notes + ct_warnings(array, name):
        if warn is not None:
            warn(line)
    return array
