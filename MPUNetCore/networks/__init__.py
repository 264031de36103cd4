"""MPU-Net and the U-Net baseline for 2D/3D segmentation.

Both networks follow one convention: ``train()`` mode returns logits (a list of four deep-supervision
outputs, deepest first), ``eval()`` mode returns class probabilities; ``input_multiple`` gives the
divisor every spatial size must be a multiple of.
"""

from __future__ import annotations

from .attention import PositionAttention, position_attention
from .mpunet import PRESETS, MPUNet
from .released_weights import load_released_checkpoint, load_released_state_dict
from .unet import UNet

__all__ = [
    "PRESETS",
    "MPUNet",
    "PositionAttention",
    "UNet",
    "load_released_checkpoint",
    "load_released_state_dict",
    "position_attention",
]
