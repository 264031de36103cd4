"""Inference engine: preprocessing, sliding-window prediction, post-processing, whole-volume segment().

No Slicer imports; torch, numpy and SimpleITK only. The names below are imported on first use
(PEP 562), so that ``MPUNetCore.inference.settings`` stays torch-free for the Slicer GUI process.
"""

from __future__ import annotations

from ..lazy_exports import lazy_exports

_EXPORTS = {
    "Blending": "settings",
    "DeviceKind": "settings",
    "InferenceSettings": "settings",
    "InferenceSettingsError": "settings",
    "Precision": "settings",
    "select_device": "devices",
    "predict_network_probabilities": "engine",
    "predict_probabilities": "engine",
    "segment": "engine",
    "largest_component": "postprocessing",
    "postprocess_labels": "postprocessing",
    "NetworkTransform": "preprocessing",
    "Preprocessing": "preprocessing",
    "to_network_space": "preprocessing",
    "probabilities_to_grid": "resampling",
    "probabilities_to_labels": "resampling",
    "resample_to_shape": "resampling",
    "body_box": "roi",
    "InferenceCancelled": "sliding_window",
    "importance_map": "sliding_window",
    "sliding_window_predict": "sliding_window",
    "window_starts": "sliding_window",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
