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

from .lazy_exports import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "MPUNet": "networks",
    "UNet": "networks",
    "load_released_state_dict": "networks",
    "load_released_checkpoint": "networks",
    "HybridLoss": "losses",
    "tversky_loss": "losses",
    "segmentation_metrics": "metrics",
    "label_metrics": "metrics",
    "mean_metrics": "metrics",
    "DiceAccumulator": "metrics",
    "Volume": "volume_io",
    "VolumeError": "volume_io",
    "read_volume": "volume_io",
    "read_label_map": "volume_io",
    "write_label_map": "volume_io",
    "make_phantom": "phantom",
    "write_lits_folder": "phantom",
    "Preprocessing": "inference",
    "segment": "inference",
    "InferenceCancelled": "inference",
    "load_bundle": "bundle",
    "save_bundle": "bundle",
    "ModelCard": "bundle",
    "segment_volume": "pipeline",
    "segment_file": "pipeline",
}

__all__ = ["__version__", *_EXPORTS]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
