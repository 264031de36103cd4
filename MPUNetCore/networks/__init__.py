"""Networks: MPU-Net (released and paper presets) and the U-Net baseline."""

from MPUNetCore.networks.unet import UNet

__all__ = ["UNet"]
