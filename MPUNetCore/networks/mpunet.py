"""MPU-Net (Yu et al.): a residual attention U-Net with a position-attention bottleneck, 2D or 3D.

One configurable class with two presets:

* ``"released"`` reproduces the network in the authors' public code as it runs (the three modules its
  ``forward`` never uses are left out: 21,507,255 parameters for 2 classes), so that their
  checkpoints load with :func:`~MPUNetCore.networks.load_released_state_dict` and predict the same.
* ``"paper"`` adds what the paper describes and the release lacks: patch embedding with a learnable
  position embedding, multi-head position attention and the distilling layer in the bottleneck
  (:class:`~MPUNetCore.networks.bottleneck.PatchAttention`), a two-branch multi-scale block in each
  decoder stage (:class:`~MPUNetCore.networks.blocks.MultiScaleBlock`) and a learned fusion of the four
  outputs (eq. 18); its Down blocks use a standard ELU (alpha 1).

Reading of eq. 18, ``F = fusion([X0, X1, X2, X3])`` "in the form of convolution": the four heads'
logits, each already resized to the input size, are concatenated and mixed by a 1x1 convolution
(4K -> K channels for K classes). It is initialised to the plain average of the four logits (the
"simplest weighted average" the paper's section 3.5 says was used) and learned from there. The
multi-scale block sits after each decoder stage's three convolutions, before the residual add and the
attention gate. The paper's up-sampling modules (section 3.3.3) are kept as the released transposed
convolutions (kernel 2, stride 2) + PReLU.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Union

import torch
import torch.nn.functional as F
from torch import nn

from .attention import ATTENTION_IMPLS
from .blocks import AttentionGate, ConvStack, Down, Head, MultiScaleBlock, Up, as_size_tuple, conv_type
from .bottleneck import PamLayer, PaperPamLayer

__all__ = ["MPUNet", "PRESETS"]

#: Default settings of each preset; every key may be overridden by a keyword argument of MPUNet.
PRESETS: Dict[str, Dict[str, Any]] = {
    "released": {
        "channels": (16, 32, 64, 128, 256),
        "dropout": 0.2,
        "elu_alpha": "channels",
        "attention_impl": "auto",
        "fusion": "mean",
    },
    "paper": {
        "channels": (16, 32, 64, 128, 256),
        "dropout": 0.2,
        "elu_alpha": 1.0,
        "attention_impl": "auto",
        "fusion": "learned",
        "heads": 8,
        "patch_size": 2,
        "embed_dim": None,
        "position_grid": None,
    },
}
#: Window the paper trains on; the paper preset's position embedding is stored for its patch grid.
REFERENCE_WINDOW = {3: (48, 256, 256), 2: (256, 256)}


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class MPUNet(nn.Module):
    """MPU-Net for 2D or 3D segmentation, released or paper preset.

    Input: (B, in_channels, *spatial) with every spatial size divisible by ``input_multiple`` (8:
    three stride-2 downsamplings put the bottleneck at 1/8 resolution).

    * ``train()`` mode: returns a list of four LOGIT tensors (B, out_channels, *spatial), all at the
      input resolution, deepest first: the heads at 1/8, 1/4, 1/2 and 1/1 resolution, upsampled
      (linear, ``align_corners=False``). With the learned fusion (paper preset) the fourth is the
      learned fusion of the four heads (eq. 18) instead of the full-resolution head alone, so that
      deep supervision on the returned list also trains the fusion (the full-resolution head is
      trained through it); the authors' released training likewise supervised the fused output in
      fourth place.
    * ``eval()`` mode: returns class PROBABILITIES (B, out_channels, *spatial) summing to 1 over
      channels: ``fusion="mean"`` (released), the mean of the four heads' softmax (as the released
      code computes it); ``fusion="learned"`` (paper), the softmax of the fused logits.

    Why the fusion matters for small structures: the mean of the heads' softmax gives the 1/8 and
    1/4 resolution heads half the vote, and they cannot see a lesion a few voxels wide, so such a
    lesion's fused probability stays well under 0.5 even when the full-resolution head is sure of
    it. The learned fusion can weight the fine heads; use it (``fusion="learned"``) for tumours.

    Dropout (``dropout``, 0.2) follows encoder stages 2-5 and decoder stages 1-3 in training only.

    Args:
        spatial_dims: 3 for volumes (B, C, D, H, W), 2 for slices (B, C, H, W).
        in_channels: input channels. The first stage's residual adds the input to 16 channels: a
            1-channel input is broadcast (as released); other counts except ``channels[0]`` get a
            1x1 projection for the residual.
        out_channels: classes (>= 2; background included).
        preset: "released" or "paper" (pass it by keyword).
        **overrides: any key of ``PRESETS[preset]``:
            ``channels`` (5 even encoder widths, last divisible by 8; default (16, 32, 64, 128, 256)),
            ``dropout`` (0 <= p < 1), ``elu_alpha`` ("channels" for the released ELU(alpha=C), or a
            positive float), ``attention_impl`` ("auto", "chunked", "sdpa"), ``fusion`` ("mean":
            released; "learned": paper eq. 18, a 1x1 convolution of the four heads' logits,
            initialised to their plain average); paper preset only:
            ``heads`` (8), ``patch_size`` (2), ``embed_dim`` (default ``channels[4]``),
            ``position_grid`` (patch grid of the stored position embedding; default that of a
            48 x 256 x 256 window, or 256 x 256 in 2D).

    Example:
        >>> net = MPUNet(spatial_dims=3, preset="released", channels=(4, 8, 16, 32, 64)).eval()
        >>> net(torch.zeros(1, 1, 16, 32, 32)).shape
        torch.Size([1, 2, 16, 32, 32])
    """

    input_multiple: int = 8

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        preset: str = "released",
        **overrides: Any,
    ) -> None:
        super().__init__()
        cfg = self._resolve_config(preset, spatial_dims, in_channels, out_channels, overrides)
        #: Everything needed to rebuild this network: ``MPUNet(**net.config)`` (JSON-serialisable).
        self.config: Dict[str, Any] = {
            "preset": preset,
            "spatial_dims": spatial_dims,
            "in_channels": in_channels,
            "out_channels": out_channels,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
        }
        c, dims = cfg["channels"], spatial_dims
        self.preset, self.spatial_dims = preset, spatial_dims
        self.in_channels, self.out_channels = in_channels, out_channels
        self.dropout = cfg["dropout"]

        def alpha(ch: int) -> float:
            return float(ch) if cfg["elu_alpha"] == "channels" else cfg["elu_alpha"]

        self.input_proj = None if in_channels in (1, c[0]) else conv_type(dims)(in_channels, c[0], 1)
        self.encoders = nn.ModuleList(
            [ConvStack(dims, in_channels if i == 0 else c[i], c[i], 2) for i in range(5)]
        )
        down_io = [(c[0], c[1], 2), (c[1], c[2], 2), (c[2], c[3], 2), (c[3], c[4], 1), (c[4], 2 * c[4], 1)]
        self.downs = nn.ModuleList([Down(dims, i, o, s, alpha(o)) for i, o, s in down_io])
        if preset == "released":
            self.bottleneck: PamLayer = PamLayer(dims, 2 * c[4], c[4], cfg["attention_impl"])
        else:
            self.bottleneck = PaperPamLayer(
                dims, 2 * c[4], c[4], cfg["embed_dim"], cfg["patch_size"], cfg["heads"], cfg["position_grid"],
                cfg["attention_impl"],
            )  # fmt: skip
        widths = [c[4], c[3], c[2], c[1]]  # decoder widths, deep -> shallow
        dec_in = [c[3], c[3] + c[2], c[2] + c[1], c[1] + c[0]]
        self.decoders = nn.ModuleList([ConvStack(dims, i, o, 3) for i, o in zip(dec_in, widths)])
        self.ups = nn.ModuleList([Up(dims, widths[i], widths[i + 1]) for i in range(3)])
        self.gates = nn.ModuleList([AttentionGate(dims, w, w, w // 2) for w in widths])
        self.heads = nn.ModuleList([Head(dims, w, out_channels) for w in widths])
        self.multiscale = None
        self.fusion = None
        if preset == "paper":
            self.multiscale = nn.ModuleList([MultiScaleBlock(dims, w) for w in widths])
        if cfg["fusion"] == "learned":
            self.fusion = conv_type(dims)(4 * out_channels, out_channels, 1)
            with torch.no_grad():  # start as the plain average of the four heads' logits
                self.fusion.weight.zero_()
                self.fusion.bias.zero_()
                for k in range(4):
                    for j in range(out_channels):
                        self.fusion.weight[(j, k * out_channels + j)] = 0.25

    @staticmethod
    def _resolve_config(
        preset: str, spatial_dims: int, in_channels: int, out_channels: int, overrides: Dict[str, Any]
    ) -> Dict[str, Any]:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        _positive_int(in_channels, "in_channels")
        if _positive_int(out_channels, "out_channels") < 2:
            raise ValueError("out_channels must be >= 2 (the classes include background; softmax output)")
        unknown = sorted(set(overrides) - set(PRESETS[preset]))
        if unknown:
            other = {k for p, d in PRESETS.items() if p != preset for k in d} - set(PRESETS[preset])
            hint = " (only for preset='paper')" if set(unknown) & other else ""
            raise ValueError(
                f"unknown override(s) {unknown}{hint} for preset {preset!r}; "
                f"allowed: {sorted(PRESETS[preset])}"
            )
        cfg = {**PRESETS[preset], **overrides}
        try:
            channels = tuple(cfg["channels"])
        except TypeError:
            channels = ()
        if (
            len(channels) != 5
            or any(isinstance(ch, bool) or not isinstance(ch, int) or ch < 2 or ch % 2 for ch in channels)
            or channels[4] % 8
        ):
            raise ValueError(
                "channels must be 5 even positive ints with the last divisible by 8 (query/key width "
                f"C/8), e.g. (16, 32, 64, 128, 256) or (4, 8, 16, 32, 64); got {cfg['channels']!r}"
            )
        cfg["channels"] = channels
        p = cfg["dropout"]
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be a float in [0, 1), got {p!r}")
        cfg["dropout"] = float(p)
        a = cfg["elu_alpha"]
        if a != "channels" and (isinstance(a, bool) or not isinstance(a, (int, float)) or a <= 0):
            raise ValueError(f"elu_alpha must be 'channels' or a positive number, got {a!r}")
        if cfg["fusion"] not in ("mean", "learned"):
            raise ValueError(f"fusion must be 'mean' or 'learned', got {cfg['fusion']!r}")
        if cfg["attention_impl"] not in ATTENTION_IMPLS:
            raise ValueError(
                f"attention_impl must be one of {ATTENTION_IMPLS}, got {cfg['attention_impl']!r}"
            )
        if preset == "paper":
            patch = _positive_int(cfg["patch_size"], "patch_size")
            heads = _positive_int(cfg["heads"], "heads")
            embed = channels[4] if cfg["embed_dim"] is None else _positive_int(cfg["embed_dim"], "embed_dim")
            if embed % heads:
                raise ValueError(
                    f"heads={heads} must divide the token width embed_dim={embed} (default channels[4]); "
                    "choose heads among its divisors"
                )
            cfg["embed_dim"] = embed
            grid = cfg["position_grid"]
            if grid is None:
                grid = tuple(math.ceil(s / 8 / patch) for s in REFERENCE_WINDOW[spatial_dims])
            cfg["position_grid"] = as_size_tuple(grid, spatial_dims, "position_grid")
        return cfg

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            axes = "(B, C, D, H, W)" if self.spatial_dims == 3 else "(B, C, H, W)"
            raise ValueError(
                f"expected input {axes} with C={self.in_channels} for this {self.spatial_dims}D MPUNet, "
                f"got shape {tuple(x.shape)}"
            )
        bad = [s for s in x.shape[2:] if s % self.input_multiple]
        if bad:
            raise ValueError(
                f"spatial sizes {tuple(x.shape[2:])} must be multiples of {self.input_multiple}; pad or "
                "crop the input (e.g. the sliding-window size) to multiples of input_multiple"
            )

    def forward(self, x: torch.Tensor) -> Union[List[torch.Tensor], torch.Tensor]:
        """Run the network; see the class docstring for what train and eval mode return."""
        self._check_input(x)
        size = x.shape[2:]
        p, training = self.dropout, self.training
        enc, down = self.encoders, self.downs

        skips = [enc[0](x) + (x if self.input_proj is None else self.input_proj(x))]
        for i in range(1, 5):
            d = down[i - 1](skips[-1])
            skips.append(F.dropout(enc[i](d) + d, p, training))
        bottom = self.bottleneck(down[4](skips[4]))

        logits = []
        y, g = None, bottom
        for level in range(4):
            if level == 0:
                inputs = skips[3]
            else:
                g = self.ups[level - 1](y)
                inputs = torch.cat([g, skips[3 - level]], dim=1)
            y = self.decoders[level](inputs)
            if self.multiscale is not None:
                y = self.multiscale[level](y)
            y = self.gates[level](y + g, g)
            if level < 3:
                y = F.dropout(y, p, training)
            logits.append(self.heads[level](y, size))

        if self.fusion is not None:
            fused = self.fusion(torch.cat(logits, dim=1))
            return logits[:3] + [fused] if training else torch.softmax(fused, dim=1)
        if training:
            return logits
        probs = torch.softmax(logits[0], dim=1)
        for t in logits[1:]:
            probs = probs + torch.softmax(t, dim=1)
        return probs / 4
