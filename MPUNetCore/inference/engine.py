"""Whole-volume segmentation: preprocessing -> sliding window -> back to the input grid -> cleanup.

The released MPU-Net code (background §3) segments a scan with 48-slice windows at stride 24 along z
(50 % overlap) over the full 256 x 256 in-plane extent of the network space, averages the windows
plainly, upsamples the probabilities back to 512 x 512 and takes the argmax. This engine does the same
steps with these defaults:

* ``window=(48, 256, 256)``: the training crop size, i.e. full in-plane extent for a 512 x 512 CT;
* ``overlap=0.25`` with gaussian blending: a 200-slice scan needs 6 windows instead of 8, and the
  gaussian weights down-weight the window borders, where a plainly averaged 50 % overlap would give
  the border predictions full weight (set ``overlap=0.5, blending="constant"`` for the released
  procedure);
* probabilities are accumulated in float32 at network resolution and resampled back to the exact input
  grid z-chunk by z-chunk, with the argmax taken per chunk (bounded memory, no geometry drift); output
  voxels whose label is already decided on the network grid (one class leads by a margin around them:
  air, the body away from the liver's border) skip the interpolation, with unchanged labels;
* optionally (``crop_to_body=True``, off by default) the network runs only on the in-plane bounding
  box of the body, so the air around the patient costs nothing; it changes the network's input (less
  air than the full planes it was trained on), so check agreement on real weights before using it;
* largest liver component and tumour-in-liver post-processing, inside the box of the labelled voxels.

Memory for a 512 x 512 x 1000 CT (1 mm slices, 3 classes): network image 0.26 GB, accumulators
1.05 GB, label map 0.26 GB, post-processing about 1.3 GB transient, plus the model's activations for
one batch of windows.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..profiling import stage
from .devices import select_device
from .postprocessing import postprocess_labels
from .preprocessing import NetworkTransform, Preprocessing, to_network_space
from .resampling import probabilities_to_grid, probabilities_to_labels
from .roi import body_box
from .settings import InferenceSettings, resolve_settings
from .sliding_window import CancelLike, ProgressFn, check_cancel, sliding_window_predict

__all__ = ["predict_network_probabilities", "predict_probabilities", "segment", "select_device"]

DEFAULT_WINDOW: Tuple[Optional[int], ...] = InferenceSettings().window


def predict_network_probabilities(
    volume_array: Any,
    spacing: Sequence[float],
    model: nn.Module,
    preprocessing: Optional[Preprocessing] = None,
    settings: Optional[InferenceSettings] = None,
    progress: Optional[ProgressFn] = None,
    cancel: CancelLike = None,
    **overrides: Any,
) -> Tuple[torch.Tensor, NetworkTransform]:
    """Class probabilities on the network grid, with the transform back to the input grid.

    Arguments as in :func:`segment` (``settings.postprocess`` is not used here).

    Returns:
        (probs, transform): float32 CPU tensor (C, z', y', x') and the :class:`NetworkTransform`.
    """
    settings = resolve_settings(settings, overrides)
    prep = preprocessing if preprocessing is not None else Preprocessing()
    check_cancel(cancel)
    with stage("preprocessing"):
        image, transform = to_network_space(volume_array, spacing, prep)
        check_cancel(cancel)
        box = None
        if settings.crop_to_body:
            multiple = int(getattr(model, "input_multiple", 8) or 1)
            box = body_box(image, prep.pad_value, margin=settings.body_margin, multiple=multiple)
        if box is not None:
            full_shape = tuple(image.shape)
            image = image[:, box[0], box[1]]
            settings = settings.replace(window=_shrink_window(settings.window, image.shape, multiple))
    probs = sliding_window_predict(
        image, model, settings, pad_value=prep.pad_value, progress=progress, cancel=cancel
    )
    if box is not None:
        sub = probs
        probs = torch.zeros((sub.shape[0], *full_shape), dtype=sub.dtype)
        probs[0] = 1.0  # outside the body: background
        probs[:, :, box[0], box[1]] = sub
        del sub
    return probs, transform


def _shrink_window(window: Sequence[Optional[int]], shape: Sequence[int], multiple: int) -> Tuple[Any, ...]:
    """In-plane window sizes no larger than the (cropped) image, rounded up to ``multiple``."""
    win = list(window)
    for i in (-2, -1):
        fit = -(-int(shape[i]) // multiple) * multiple
        win[i] = fit if win[i] is None else min(int(win[i]), fit)
    return tuple(win)


def predict_probabilities(
    volume_array: Any,
    spacing: Sequence[float],
    model: nn.Module,
    preprocessing: Optional[Preprocessing] = None,
    settings: Optional[InferenceSettings] = None,
    progress: Optional[ProgressFn] = None,
    cancel: CancelLike = None,
    dtype: Any = np.float32,
    **overrides: Any,
) -> np.ndarray:
    """Class probabilities resampled onto the input grid: array (C, z, y, x).

    Needs C x the input volume's voxel count x itemsize of memory (use ``dtype=np.float16`` to halve
    it); :func:`segment` never builds this array. Other arguments as in :func:`segment`
    (``settings.postprocess`` is not used here).
    """
    probs, tr = predict_network_probabilities(
        volume_array, spacing, model, preprocessing, settings, progress, cancel, **overrides
    )
    return probabilities_to_grid(probs, tr.input_shape, dtype=dtype, check=lambda: check_cancel(cancel))


def segment(
    volume_array: Any,
    spacing: Sequence[float],
    model: nn.Module,
    preprocessing: Optional[Preprocessing] = None,
    settings: Optional[InferenceSettings] = None,
    progress: Optional[ProgressFn] = None,
    cancel: CancelLike = None,
    **overrides: Any,
) -> np.ndarray:
    """Segment a CT volume; the label map lies exactly on the input grid.

    Args:
        volume_array: (z, y, x) array in HU (``SimpleITK.GetArrayFromImage`` order); not modified.
        spacing: (x, y, z) voxel spacing in mm (``SimpleITK.Image.GetSpacing`` order).
        model: network returning class probabilities (B, C, *window) in eval mode (MPUNet, UNet);
            moved to ``settings.device``; its train/eval flag is restored afterwards.
        preprocessing: the model's :class:`Preprocessing` (default: the released one).
        settings: window, overlap, blending, batch size, test-time augmentation, post-processing,
            device, precision and body crop (see :class:`InferenceSettings`); None: the defaults.
        progress: ``progress(done_windows, total_windows)`` after each batch.
        cancel: ``threading.Event`` or zero-argument callable; when set, :class:`InferenceCancelled`
            is raised at the next check (between windows and between stages).
        **overrides: single settings replacing those of ``settings``, e.g. ``window=(16, None, None)``;
            an unknown name raises :class:`InferenceSettingsError`.

    Returns:
        uint8 label map with the input's shape: 0 background, 1 liver, 2 tumour (for 3 classes).

    Example:
        >>> fast = InferenceSettings(window=(48, 256, 256), batch_size=2)
        >>> labels = segment(ct_array, image.GetSpacing(), model.eval(), settings=fast)  # doctest: +SKIP
    """
    settings = resolve_settings(settings, overrides)
    probs, tr = predict_network_probabilities(
        volume_array, spacing, model, preprocessing, settings, progress, cancel
    )
    with stage("resampling back + argmax"):
        labels = probabilities_to_labels(probs, tr.input_shape, check=lambda: check_cancel(cancel))
        del probs
    check_cancel(cancel)
    if settings.postprocess:
        with stage("post-processing"):
            labels = postprocess_labels(labels)
    return labels
