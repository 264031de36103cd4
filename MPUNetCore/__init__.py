"""MPUNetCore: the PyTorch library behind MPUNet for 3D Slicer.

Networks, losses, metrics, preprocessing, inference, checkpoints, volume I/O and synthetic phantoms.
Pure PyTorch/NumPy/SimpleITK: nothing here imports Slicer, VTK or Qt.

The names below are imported on first use (PEP 562), so `import MPUNetCore.registry` or
`MPUNetCore.volume_io` stays light and torch-free, which the Slicer GUI process relies on.

Example:
    >>> from MPUNetCore import MPUNet
    >>> model = MPUNet(preset="released", out_channels=2)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "MPUNet": "MPUNetCore.networks",
    "UNet": "MPUNetCore.networks",
    "load_released_state_dict": "MPUNetCore.networks",
    "load_released_checkpoint": "MPUNetCore.networks",
    "HybridLoss": "MPUNetCore.losses",
    "tversky_loss": "MPUNetCore.losses",
    "segmentation_metrics": "MPUNetCore.metrics",
    "label_metrics": "MPUNetCore.metrics",
    "mean_metrics": "MPUNetCore.metrics",
    "DiceAccumulator": "MPUNetCore.metrics",
    "Volume": "MPUNetCore.volume_io",
    "VolumeError": "MPUNetCore.volume_io",
    "read_volume": "MPUNetCore.volume_io",
    "read_label_map": "MPUNetCore.volume_io",
    "write_label_map": "MPUNetCore.volume_io",
    "make_phantom": "MPUNetCore.phantom",
    "write_lits_folder": "MPUNetCore.phantom",
    "Preprocessing": "MPUNetCore.inference",
    "segment": "MPUNetCore.inference",
    "InferenceCancelled": "MPUNetCore.inference",
    "load_bundle": "MPUNetCore.bundle",
    "save_bundle": "MPUNetCore.bundle",
    "ModelCard": "MPUNetCore.bundle",
    "segment_volume": "MPUNetCore.pipeline",
    "segment_file": "MPUNetCore.pipeline",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'MPUNetCore' has no attribute {name!r}")
