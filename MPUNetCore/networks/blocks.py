"""Building blocks of MPU-Net, for 2D (``spatial_dims=2``) and 3D (``spatial_dims=3``) inputs.

Every block keeps the layer order of the authors' released network inside an ``nn.Sequential`` named
``layers`` (or the names given below), so that a released state dict maps onto it key by key
(see :mod:`MPUNetCore.networks.released_weights`).
"""

from __future__ import annotations

from typing import Sequence, Tuple, Type, Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AttentionGate",
    "BoxMaxPool",
    "ConvStack",
    "Down",
    "Head",
    "MultiScaleBlock",
    "Up",
    "bn_type",
    "conv_type",
    "interp_mode",
    "resize",
]


def _check_dims(spatial_dims: int) -> int:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return spatial_dims


def conv_type(spatial_dims: int) -> Type[nn.Module]:
    """``nn.Conv2d`` or ``nn.Conv3d``."""
    return nn.Conv3d if _check_dims(spatial_dims) == 3 else nn.Conv2d


def bn_type(spatial_dims: int) -> Type[nn.Module]:
    """``nn.BatchNorm2d`` or ``nn.BatchNorm3d``."""
    return nn.BatchNorm3d if _check_dims(spatial_dims) == 3 else nn.BatchNorm2d


def interp_mode(spatial_dims: int) -> str:
    """Linear interpolation mode for the dimensionality: "trilinear" or "bilinear"."""
    return "trilinear" if _check_dims(spatial_dims) == 3 else "bilinear"


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(Bi/tri)linear resize with ``align_corners=False``; returns ``x`` itself if the size matches."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode=interp_mode(x.dim() - 2), align_corners=False)


class ConvStack(nn.Module):
    """``n`` times (3x3 convolution + per-channel PReLU): the encoder (n=2) and decoder (n=3) stages.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels of every convolution.
        n_convs: number of convolution + PReLU pairs.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, n_convs: int) -> None:
        super().__init__()
        conv = conv_type(spatial_dims)
        layers = []
        for i in range(n_convs):
            layers += [conv(in_channels if i == 0 else out_channels, out_channels, 3, padding=1)]
            layers += [nn.PReLU(out_channels)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the stack."""
        return self.layers(x)


class BoxMaxPool(nn.Module):
    """Max over the 3x3(x3) neighbourhood, stride 1, padding 1: ``MaxPool(kernel=3, stride=1, padding=1)``.

    Without autograd it is computed as a max along each axis in turn (a box max is separable), with
    elementwise ``torch.maximum`` on shifted views: the same values, about 6x faster on CPU than
    PyTorch's 3D max-pool kernel, which computes argmax indices it does not need. With autograd the
    standard max-pool runs, so gradients at ties go to one element exactly as in the released code.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the 3-wide max along every spatial axis."""
        if torch.is_grad_enabled() and x.requires_grad:
            pool = F.max_pool3d if x.dim() == 5 else F.max_pool2d
            return pool(x, kernel_size=3, stride=1, padding=1)
        for axis in range(2, x.dim()):
            n = x.shape[axis]
            if n == 1:
                continue
            y = x.clone()
            left = y.narrow(axis, 1, n - 1)
            torch.maximum(left, x.narrow(axis, 0, n - 1), out=left)
            right = y.narrow(axis, 0, n - 1)
            torch.maximum(right, x.narrow(axis, 1, n - 1), out=right)
            x = y
        return x


class Down(nn.Module):
    """MaxPool(k3, s1, p1) + convolution (k2 s2, or k3 s1 p1) + BatchNorm + ELU(alpha).

    The max-pool is :class:`BoxMaxPool` (same result, faster without autograd).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        stride: 2 (kernel 2, halves the size) or 1 (kernel 3, padding 1, keeps it).
        elu_alpha: the ELU's alpha. The released network uses ``alpha = out_channels`` (its ELU was
            built with the channel count as first argument); pass that to reproduce it.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, stride: int, elu_alpha: float
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"Down stride must be 1 or 2, got {stride}")
        conv = conv_type(spatial_dims)
        kernel, padding = (2, 0) if stride == 2 else (3, 1)
        self.layers = nn.Sequential(
            BoxMaxPool(),
            conv(in_channels, out_channels, kernel, stride=stride, padding=padding),
            bn_type(spatial_dims)(out_channels),
            nn.ELU(alpha=float(elu_alpha)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return self.layers(x)


class Up(nn.Module):
    """Transposed convolution (k2, s2) + per-channel PReLU: doubles the spatial size."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        tconv = nn.ConvTranspose3d if _check_dims(spatial_dims) == 3 else nn.ConvTranspose2d
        self.layers = nn.Sequential(tconv(in_channels, out_channels, 2, stride=2), nn.PReLU(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return self.layers(x)


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al.; MPU-Net eq. 10-12): ``x * sigmoid(psi(relu(Wx x + Wg g)))``.

    ``Wx``, ``Wg`` are 1x1 convolutions + BatchNorm to ``inner_channels``; ``psi`` a 1x1 convolution to
    one channel + BatchNorm + sigmoid. The gating signal is resized to ``x``'s size (linear,
    ``align_corners=False``) if they differ.

    Args:
        spatial_dims: 2 or 3.
        x_channels: channels of the gated features x.
        g_channels: channels of the gating signal g.
        inner_channels: F_int.
    """

    def __init__(self, spatial_dims: int, x_channels: int, g_channels: int, inner_channels: int) -> None:
        super().__init__()
        conv, bn = conv_type(spatial_dims), bn_type(spatial_dims)
        self.x_proj = nn.Sequential(conv(x_channels, inner_channels, 1), bn(inner_channels))
        self.g_proj = nn.Sequential(conv(g_channels, inner_channels, 1), bn(inner_channels))
        self.psi = nn.Sequential(conv(inner_channels, 1, 1), bn(1), nn.Sigmoid())

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Gate ``x`` with ``g``."""
        xp = self.x_proj(x)
        gp = resize(self.g_proj(g), xp.shape[2:])
        return x * self.psi(F.relu(xp + gp))


class Head(nn.Module):
    """1x1 convolution to class logits, resized (linear, ``align_corners=False``) to the input size."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = conv_type(spatial_dims)(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Logits of ``x`` at spatial ``size``."""
        return resize(self.conv(x), size)


class MultiScaleBlock(nn.Module):
    """Two-branch multi-scale block of the paper (eq. 14-17).

    Reading of the equations: ``x1 = w32(w31 input + b31) + b32`` and ``x2 = w42(w41 input + b41) + b42``
    are two branches of two stacked convolutions each, with different receptive fields ("convolution
    of different size receptive fields"): here 3x3 convolutions (receptive field 5) and 3x3
    convolutions with dilation 2 (receptive field 9). The equations show no activation; we put a
    per-channel PReLU after each convolution as everywhere else in the network (two stacked linear
    convolutions would collapse into one). ``X = Cat[x1, x2]`` (eq. 16) and ``Output = w_f X + b_f``
    (eq. 17), a 1x1 fusion convolution without activation. Each branch has ``channels // 2``
    channels, so X has ``channels``.

    Args:
        spatial_dims: 2 or 3.
        channels: input and output channels (even).
    """

    def __init__(self, spatial_dims: int, channels: int) -> None:
        super().__init__()
        conv = conv_type(spatial_dims)
        half = channels // 2

        def branch(dilation: int) -> nn.Sequential:
            return nn.Sequential(
                conv(channels, half, 3, padding=dilation, dilation=dilation),
                nn.PReLU(half),
                conv(half, half, 3, padding=dilation, dilation=dilation),
                nn.PReLU(half),
            )

        self.branch1 = branch(1)
        self.branch2 = branch(2)
        self.fuse = conv(2 * half, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply eq. 14-17."""
        return self.fuse(torch.cat([self.branch1(x), self.branch2(x)], dim=1))


def as_size_tuple(value: Union[int, Sequence[int]], spatial_dims: int, name: str) -> Tuple[int, ...]:
    """An int or a sequence of ``spatial_dims`` positive ints as a tuple; ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * spatial_dims
    try:
        out = tuple(int(v) for v in value)
    except TypeError:
        out = ()
    if len(out) != spatial_dims or any(v < 1 for v in out) or any(isinstance(v, bool) for v in value):
        raise ValueError(f"{name} must be a positive int or {spatial_dims} positive ints, got {value!r}")
    return out
