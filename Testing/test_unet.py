"""Tests for the U-Net baseline (MPUNetCore/networks/unet.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from MPUNetCore.networks.unet import UNet

SMALL = (4, 8, 16, 32)


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _conv_params(c_in: int, c_out: int, k: int, dims: int = 3) -> int:
    return c_in * c_out * k**dims + c_out


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_parameter_count_matches_released_baseline():
    net = UNet(spatial_dims=3, in_channels=1, out_channels=2)
    assert _n_params(net) == 2_326_638  # the released baseline (the paper's "2.3M")


def test_per_block_counts_hand_computed():
    net = UNet(spatial_dims=3, in_channels=1, out_channels=2)
    enc = [_conv_params(a, b, 3) for a, b in [(1, 32), (32, 64), (64, 128), (128, 256)]]
    dec = [_conv_params(a, b, 3) for a, b in [(256, 128), (128, 64), (64, 32), (32, 2)]]
    heads = [_conv_params(c, 2, 1) for c in (256, 128, 64, 2)]
    assert [_n_params(m) for m in net.encoders] == enc == [896, 55_360, 221_312, 884_992]
    assert [_n_params(m) for m in net.decoders] == dec == [884_864, 221_248, 55_328, 1_730]
    assert [_n_params(m) for m in net.heads] == heads == [514, 258, 130, 6]


def test_reduced_widths_and_classes_change_count_as_expected():
    net = UNet(spatial_dims=2, in_channels=2, out_channels=3, channels=SMALL, final_channels=5)
    widths = (2, *SMALL)
    expected = sum(_conv_params(widths[i], widths[i + 1], 3, 2) for i in range(4))
    dec_widths = (32, 16, 8, 4, 5)
    expected += sum(_conv_params(dec_widths[i], dec_widths[i + 1], 3, 2) for i in range(4))
    expected += sum(_conv_params(c, 3, 1, 2) for c in (32, 16, 8, 5))
    assert _n_params(net) == expected


def _reference_forward(net: UNet, x: torch.Tensor) -> list:
    """The documented wiring written out with torch.nn.functional and the network's own weights."""
    dims = net.spatial_dims
    conv = F.conv3d if dims == 3 else F.conv2d
    pool = F.max_pool3d if dims == 3 else F.max_pool2d
    mode = "trilinear" if dims == 3 else "bilinear"

    def c(m, t):
        return conv(t, m.conv.weight, m.conv.bias, padding=m.conv.weight.shape[-1] // 2)

    def up(t, **kw):
        return F.interpolate(t, mode=mode, align_corners=False, **kw)

    e = []
    y = x
    for m in net.encoders:
        y = F.relu(pool(c(m, y), 2))
        e.append(y)
    size = x.shape[2:]
    heads = [up(c(net.heads[0], y), size=size)]
    y = F.relu(up(c(net.decoders[0], y), scale_factor=2.0)) + e[2]
    heads.append(up(c(net.heads[1], y), size=size))
    y = F.relu(up(c(net.decoders[1], y), scale_factor=2.0)) + e[1]
    heads.append(up(c(net.heads[2], y), size=size))
    y = F.relu(up(c(net.decoders[2], y), scale_factor=2.0)) + e[0]
    y = F.relu(up(c(net.decoders[3], y), scale_factor=2.0))
    heads.append(c(net.heads[3], y))
    return heads


@pytest.mark.parametrize(
    "dims,shape",
    [(3, (2, 1, 16, 32, 48)), (2, (3, 1, 32, 64))],
)
def test_train_returns_four_full_resolution_logits_matching_wiring(dims, shape):
    net = UNet(spatial_dims=dims, in_channels=1, out_channels=3, channels=SMALL).train()
    x = torch.randn(shape)
    out = net(x)
    assert isinstance(out, list) and len(out) == 4
    expected = _reference_forward(net, x)
    for o, r in zip(out, expected):
        assert o.shape == (shape[0], 3, *shape[2:])
        assert o.dtype == torch.float32
        torch.testing.assert_close(o, r)
    # logits, not probabilities
    assert not torch.allclose(out[-1].sum(1), torch.ones(()))


@pytest.mark.parametrize("dims,shape", [(3, (1, 1, 16, 16, 32)), (2, (2, 1, 48, 16))])
def test_eval_returns_softmax_of_last_head(dims, shape):
    net = UNet(spatial_dims=dims, out_channels=3, channels=SMALL)
    x = torch.randn(shape)
    with torch.no_grad():
        last_logits = net.train()(x)[-1]
        probs = net.eval()(x)
    assert probs.shape == (shape[0], 3, *shape[2:])
    assert probs.min() >= 0 and probs.max() <= 1
    torch.testing.assert_close(probs.sum(1), torch.ones(shape[0], *shape[2:]))
    torch.testing.assert_close(probs, torch.softmax(last_logits, 1))


def test_without_deep_supervision_train_returns_last_logits_and_weights_interchange():
    ds = UNet(spatial_dims=3, channels=SMALL).train()
    single = UNet(spatial_dims=3, channels=SMALL, deep_supervision=False).train()
    single.load_state_dict(ds.state_dict())  # heads always exist: checkpoints load either way
    x = torch.randn(1, 1, 16, 16, 16)
    out = single(x)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, ds(x)[-1])


def test_every_parameter_gets_a_gradient_with_deep_supervision():
    net = UNet(spatial_dims=3, channels=SMALL).train()
    out = net(torch.randn(1, 1, 16, 16, 16))
    sum(o.square().mean() for o in out).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_input_multiple_is_sixteen_and_non_multiples_are_rejected():
    net = UNet(spatial_dims=3, channels=SMALL)
    assert net.input_multiple == 16
    with pytest.raises(ValueError, match="multiples of 16"):
        net(torch.zeros(1, 1, 16, 24, 32))
    with pytest.raises(ValueError, match="5-D input"):
        net(torch.zeros(1, 16, 16, 16))
    with pytest.raises(ValueError, match="input channel"):
        net(torch.zeros(1, 2, 16, 16, 16))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"spatial_dims": 1},
        {"in_channels": 0},
        {"out_channels": 1},
        {"out_channels": 2.0},
        {"channels": (8, 16, 32)},
        {"channels": (8, 16, 0, 32)},
        {"final_channels": 0},
    ],
)
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        UNet(**kwargs)
