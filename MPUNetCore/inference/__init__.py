"""Inference engine: preprocessing, sliding-window prediction, post-processing, whole-volume segment().

No Slicer imports; torch, numpy and SimpleITK only.
"""

from __future__ import annotations

from .devices import select_device
from .engine import predict_network_probabilities, predict_probabilities, segment
from .postprocessing import largest_component, postprocess_labels
from .preprocessing import NetworkTransform, Preprocessing, to_network_space
from .resampling import probabilities_to_grid, probabilities_to_labels, resample_to_shape
from .roi import body_box
from .sliding_window import InferenceCancelled, importance_map, sliding_window_predict, window_starts

__all__ = [
    "InferenceCancelled",
    "NetworkTransform",
    "Preprocessing",
    "body_box",
    "importance_map",
    "largest_component",
    "postprocess_labels",
    "predict_network_probabilities",
    "predict_probabilities",
    "probabilities_to_grid",
    "probabilities_to_labels",
    "resample_to_shape",
    "segment",
    "select_device",
    "sliding_window_predict",
    "to_network_space",
    "window_starts",
]
