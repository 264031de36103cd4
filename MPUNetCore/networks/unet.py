"""The plain U-Net baseline that the MPU-Net paper compares against (its "U-Net, 2.3M parameters").

The structure follows the authors' released baseline (facts read from their public code, implemented
here independently): four encoder stages, each one 3x3(x3) convolution followed by 2x max-pooling and
ReLU, so the bottleneck sits at 1/16 of the input; four decoder stages, each one 3x3(x3) convolution
followed by 2x (bi/tri)linear upsampling and ReLU, with the encoder's feature map of the same size
*added* (not concatenated) to the first three; and four 1x1(x1) output heads (deep supervision)
upsampled to the input size. With the default widths and ``out_channels=2`` it has exactly
2,326,638 parameters.

Output convention (shared with ``MPUNet`` so every network is treated alike):

* ``model.train()``: a list of four LOGIT tensors ``(B, out_channels, *spatial)``, each at full input
  resolution, deepest first (the last one is the full-resolution head). With
  ``deep_supervision=False`` only that last logit tensor is returned.
* ``model.eval()``: softmax PROBABILITIES of the last head, ``(B, out_channels, *spatial)``, summing
  to 1 over channels (the released baseline predicts with its last head only).
"""

from __future__ import annotations

from typing import List, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import Head, conv_type, interp_mode

__all__ = ["UNet"]


class EncoderStage(nn.Module):
    """One encoder stage: 3x3(x3) convolution, 2x max-pooling, ReLU (halves every spatial size)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int) -> None:
        """
        Args:
            spatial_dims: number of spatial dimensions (2 or 3).
            in_channels: number of input channels.
            out_channels: number of output channels.
        """
        super().__init__()
        self.conv = conv_type(spatial_dims)(in_channels, out_channels, 3, padding=1)
        self.pool = nn.MaxPool3d(2) if spatial_dims == 3 else nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.pool(self.conv(x)))


class DecoderStage(nn.Module):
    """One decoder stage: 3x3(x3) convolution, 2x linear upsampling, ReLU (doubles every spatial size)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int) -> None:
        """
        Args:
            spatial_dims: number of spatial dimensions (2 or 3).
            in_channels: number of input channels.
            out_channels: number of output channels.
        """
        super().__init__()
        self.conv = conv_type(spatial_dims)(in_channels, out_channels, 3, padding=1)
        self.mode = interp_mode(spatial_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.conv(x), scale_factor=2.0, mode=self.mode, align_corners=False)
        return F.relu(x)


class UNet(nn.Module):
    """The released U-Net baseline of MPU-Net, in 2D or 3D, with deep-supervision heads.

    Wiring (widths for the default ``channels=(32, 64, 128, 256)``, ``final_channels=2``)::

        e1 = enc1(x)            32 ch, 1/2       enc: conv3 -> maxpool2 -> ReLU
        e2 = enc2(e1)           64 ch, 1/4
        e3 = enc3(e2)          128 ch, 1/8
        e4 = enc4(e3)          256 ch, 1/16      -> head1 (deepest)
        d1 = dec1(e4) + e3     128 ch, 1/8       dec: conv3 -> upsample2 -> ReLU
                                                 -> head2
        d2 = dec2(d1) + e2      64 ch, 1/4       -> head3
        d3 = dec3(d2) + e1      32 ch, 1/2       (no head here, as released)
        d4 = dec4(d3)            2 ch, 1/1       -> head4 (final prediction)

    Every head is a 1x1 convolution to ``out_channels`` logits, linearly upsampled to the input size
    (``align_corners=False``). The last decoder's width ``final_channels`` is 2 in the released model
    whatever the number of classes.

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3. Input is ``(B, C, D, H, W)`` in 3D and
            ``(B, C, H, W)`` in 2D; every spatial size must be a multiple of ``input_multiple`` (16).
        in_channels: number of input channels (1 for CT).
        out_channels: number of classes, at least 2 (2: background/liver, 3: background/liver/tumour).
        channels: the four encoder widths, shallow to deep. Defaults to the released
            ``(32, 64, 128, 256)``; pass e.g. ``(4, 8, 16, 32)`` for a small, fast model.
        final_channels: width of the last decoder stage, before the full-resolution head.
        deep_supervision: if True, training mode returns the four heads' logits (deepest first);
            if False, only the last head's logits. The heads always exist, so a state dict loads
            either way; evaluation mode is the same in both cases.

    Example::

        >>> net = UNet(spatial_dims=3, in_channels=1, out_channels=2)
        >>> sum(p.numel() for p in net.parameters())
        2326638
        >>> logits = net.train()(torch.zeros(1, 1, 16, 32, 32))  # list of 4 (1, 2, 16, 32, 32) tensors
        >>> probabilities = net.eval()(torch.zeros(1, 1, 16, 32, 32))  # (1, 2, 16, 32, 32), sums to 1
    """

    input_multiple: int = 16

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        channels: Sequence[int] = (32, 64, 128, 256),
        final_channels: int = 2,
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}.")
        if not _is_positive_int(in_channels):
            raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}.")
        if not _is_positive_int(out_channels) or out_channels < 2:
            raise ValueError(
                f"out_channels must be an integer >= 2 (softmax over classes, background included), "
                f"got {out_channels!r}; use 2 for background/foreground."
            )
        channels = tuple(channels)
        if len(channels) != 4 or not all(_is_positive_int(c) for c in channels):
            raise ValueError(
                f"channels must be four positive integers (encoder widths, shallow to deep), "
                f"got {channels!r}."
            )
        if not _is_positive_int(final_channels):
            raise ValueError(f"final_channels must be a positive integer, got {final_channels!r}.")

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.channels = channels
        self.final_channels = final_channels
        self.deep_supervision = bool(deep_supervision)

        widths = (in_channels, *channels)
        self.encoders = nn.ModuleList(
            EncoderStage(spatial_dims, widths[i], widths[i + 1]) for i in range(len(channels))
        )
        decoder_widths = (*channels[::-1], final_channels)  # 256 -> 128 -> 64 -> 32 -> 2
        self.decoders = nn.ModuleList(
            DecoderStage(spatial_dims, decoder_widths[i], decoder_widths[i + 1]) for i in range(len(channels))
        )
        # Heads on the bottleneck, the first two decoder outputs and the last one (deepest first).
        head_widths = (channels[3], channels[2], channels[1], final_channels)
        self.heads = nn.ModuleList(Head(spatial_dims, w, out_channels) for w in head_widths)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(
                f"UNet(spatial_dims={self.spatial_dims}) expects a {self.spatial_dims + 2}-D input "
                f"(B, C, *spatial), got shape {tuple(x.shape)}."
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(f"Expected {self.in_channels} input channel(s), got shape {tuple(x.shape)}.")
        bad = [s for s in x.shape[2:] if s % self.input_multiple != 0 or s == 0]
        if bad:
            raise ValueError(
                f"Spatial sizes must be positive multiples of {self.input_multiple}, got "
                f"{tuple(x.shape[2:])}; pad or crop the input (e.g. sliding windows of such a size)."
            )

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        """Run the network.

        Args:
            x: input ``(B, in_channels, *spatial)``, spatial sizes multiples of ``input_multiple``.

        Returns:
            In training mode, a list of four logit tensors ``(B, out_channels, *spatial)`` (deepest
            first), or only the last one when ``deep_supervision`` is False. In evaluation mode, the
            last head's softmax probabilities ``(B, out_channels, *spatial)``.
        """
        self._check_input(x)
        size = x.shape[2:]
        skips = []
        y = x
        for encoder in self.encoders:
            y = encoder(y)
            skips.append(y)
        want_all = self.training and self.deep_supervision
        logits = [self.heads[0](y, size)] if want_all else []
        for level, decoder in enumerate(self.decoders):
            y = decoder(y)
            if level < 3:
                y = y + skips[2 - level]
            if want_all and level < 2:
                logits.append(self.heads[level + 1](y, size))
        logits.append(self.heads[3](y, size))
        if self.training:
            return logits if want_all else logits[-1]
        return torch.softmax(logits[-1], dim=1)


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
