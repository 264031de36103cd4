"""MPU-Net's bottleneck "PAM layer": convolution, position attention, convolution.

:class:`PamLayer` is the released structure: 3x3 convolution (2C -> C) + BatchNorm + PReLU with one
shared parameter, DANet position attention (query/key C/8, value C, ``gamma`` from 0, residual), and
3x3 convolution (C -> C) + BatchNorm + shared PReLU.

:class:`PaperPamLayer` puts between the two convolutions what the paper's sections 3.2.1-3.2.3
describe instead of the plain DANet cell (see :class:`PatchAttention`).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attention import PositionAttention
from .blocks import bn_type, conv_type, resize

__all__ = ["PamLayer", "PaperPamLayer", "PatchAttention"]


def _conv_bn_prelu(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Sequential:
    conv, bn = conv_type(spatial_dims), bn_type(spatial_dims)
    return nn.Sequential(conv(in_channels, out_channels, 3, padding=1), bn(out_channels), nn.PReLU())


class PamLayer(nn.Module):
    """Released PAM layer: conv3x3 + BN + PReLU(1) -> DANet position attention -> conv3x3 + BN + PReLU(1).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels (2C in MPU-Net).
        channels: C, the attention and output width (C/8 must be >= 1).
        impl: attention implementation (:func:`~MPUNetCore.networks.attention.position_attention`).
    """

    def __init__(self, spatial_dims: int, in_channels: int, channels: int, impl: str = "auto") -> None:
        super().__init__()
        self.pre = _conv_bn_prelu(spatial_dims, in_channels, channels)
        self.attention: nn.Module = PositionAttention(
            spatial_dims, channels, qk_channels=channels // 8, scale=1.0, impl=impl
        )
        self.post = _conv_bn_prelu(spatial_dims, channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer."""
        return self.post(self.attention(self.pre(x)))


class PatchAttention(nn.Module):
    """Patch embedding + learnable position embedding + multi-head position attention + distilling.

    Our reading of the paper, equation by equation (F is the (B, C, *S) feature map):

    * eq. 1, 3, 4 (image sequentialisation): F is cut into patches of P^d voxels, N = prod(ceil(S/P))
      patches. Eq. 4 uses the ceiling, so F is zero-padded at the end of each axis to a multiple of
      P; the padding is cropped away again at the end.
    * eq. 2 (embedding): ``z0 = W X + E_pos``: the patch projection W is a convolution with
      kernel = stride = P from C to ``embed_dim`` channels (the paper's "convolution with kernel size
      P and step size P"), and ``E_pos`` a learnable position embedding with one ``embed_dim`` vector
      per patch (initialised N(0, 0.02^2)). It is stored for a reference token grid
      ``position_grid``; for a different number of tokens (other input sizes) it is resized to the
      actual grid by (bi/tri)linear interpolation, ``align_corners=False`` (as ViT/TransUNet do for
      other resolutions), so any input size works.
    * eq. 6-9 (position attention, multi-head): Q, K, V are 1x1 projections of z0 with the width of
      z0 (eq. 6), split into ``heads`` heads, ``softmax(Q K^T / sqrt(d_head)) V`` per head (eq. 7),
      heads concatenated and mixed by a 1x1 output projection ("linear output on all heads spliced"),
      and added to z0 with a learnable weight gamma starting at 0 (eq. 9, DANet's lambda).
    * eq. 5 (distilling layer): ``MaxPool(ELU(Conv1d(x)))``: a Conv1d with kernel width 3 along the
      token sequence (the flattened patch grid), ELU, and a max-pool of width 3. Informer's pool has
      stride 2 and halves the sequence; that cannot be reshaped back onto the patch grid that the
      decoder needs, so ours has stride 1 (padding 1) and keeps N; the memory saving the paper
      attributes to it comes here from the patch embedding instead.
    * back to the feature map: the tokens are reshaped onto the patch grid and a transposed
      convolution with kernel = stride = P projects them back to C channels at full bottleneck
      resolution; that is added to F (residual).

    Args:
        spatial_dims: 2 or 3.
        channels: C.
        embed_dim: token width d (divisible by ``heads``).
        patch_size: P.
        heads: attention heads.
        position_grid: patch grid the position embedding is stored for.
        impl: attention implementation.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        embed_dim: int,
        patch_size: int,
        heads: int,
        position_grid: Sequence[int],
        impl: str = "auto",
    ) -> None:
        super().__init__()
        conv = conv_type(spatial_dims)
        tconv = nn.ConvTranspose3d if spatial_dims == 3 else nn.ConvTranspose2d
        self.patch_size = int(patch_size)
        self.embed = conv(channels, embed_dim, patch_size, stride=patch_size)
        self.position = nn.Parameter(torch.zeros(1, embed_dim, *position_grid))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.attention = PositionAttention(
            spatial_dims, embed_dim, qk_channels=embed_dim, heads=heads, scale=None, out_proj=True, impl=impl
        )
        self.distill = nn.Sequential(
            nn.Conv1d(embed_dim, embed_dim, 3, padding=1),
            nn.ELU(),
            nn.MaxPool1d(3, stride=1, padding=1),
        )
        self.unembed = tconv(embed_dim, channels, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x + unembed(distill(attention(embed(pad(x)) + E_pos)))``."""
        size = x.shape[2:]
        p = self.patch_size
        pad = []
        for s in reversed(size):
            pad += [0, (-s) % p]
        z = self.embed(F.pad(x, pad) if any(pad) else x)
        z = z + resize(self.position, z.shape[2:])
        z = self.attention(z)
        grid = z.shape[2:]
        z = self.distill(z.flatten(2)).reshape(z.shape[0], z.shape[1], *grid)
        y = self.unembed(z)
        return x + y[(slice(None), slice(None)) + tuple(slice(0, s) for s in size)]


class PaperPamLayer(PamLayer):
    """PAM layer of the paper preset: conv + BN + PReLU -> :class:`PatchAttention` -> conv + BN + PReLU.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels (2C).
        channels: C.
        embed_dim: token width.
        patch_size: patch size P.
        heads: attention heads.
        position_grid: patch grid for the stored position embedding.
        impl: attention implementation.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        channels: int,
        embed_dim: int,
        patch_size: int,
        heads: int,
        position_grid: Sequence[int],
        impl: str = "auto",
    ) -> None:
        super().__init__(spatial_dims, in_channels, channels, impl)
        self.attention = PatchAttention(
            spatial_dims, channels, embed_dim, patch_size, heads, position_grid, impl
        )
