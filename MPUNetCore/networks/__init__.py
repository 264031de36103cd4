"""MPU-Net and the U-Net baseline for 2D/3D segmentation, and the registry that names them.

Both networks follow one convention: ``train()`` mode returns logits (a list of four deep-supervision
outputs, deepest first), ``eval()`` mode returns class probabilities; ``input_multiple`` gives the
divisor every spatial size must be a multiple of.

The names below are imported on first use (PEP 562), so that ``MPUNetCore.networks.registry`` stays
torch-free for model-card checks in the Slicer GUI process.
"""

from __future__ import annotations

from ..lazy_exports import lazy_exports

_EXPORTS = {
    "PRESETS": "mpunet",
    "MPUNet": "mpunet",
    "UNet": "unet",
    "PositionAttention": "attention",
    "position_attention": "attention",
    "load_released_checkpoint": "released_weights",
    "load_released_state_dict": "released_weights",
    "NETWORKS": "registry",
    "NetworkSpec": "registry",
    "build_network": "registry",
    "network_spec": "registry",
    "register_network": "registry",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
