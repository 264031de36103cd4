"""Tests of MPUNetCore.networks: MPU-Net structure, outputs, position attention and argument checks.

The released-weights loader is tested in test_networks_released.py.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from MPUNetCore.networks import MPUNet, PositionAttention, position_attention
from MPUNetCore.networks.blocks import BoxMaxPool

SMALL = (4, 8, 16, 32, 64)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def naive_danet(x, wq, bq, wk, bk, wv, bv, gamma):
    """DANet's position attention as published: full N x N energy, softmax, bmm (the reference)."""
    b, c = x.shape[:2]
    flat = x.reshape(b, c, -1)
    q = torch.einsum("oc,bcn->bon", wq, flat) + bq[:, None]
    k = torch.einsum("oc,bcn->bon", wk, flat) + bk[:, None]
    v = torch.einsum("oc,bcn->bon", wv, flat) + bv[:, None]
    energy = torch.bmm(q.permute(0, 2, 1), k)  # (B, N, N)
    attention = torch.softmax(energy, dim=-1)
    out = torch.bmm(v, attention.permute(0, 2, 1))
    return (gamma * out + flat).reshape(x.shape)


def _flat_weights(pam: PositionAttention):
    return [
        t.reshape(t.shape[0], -1) if t.dim() > 1 else t
        for conv in (pam.query, pam.key, pam.value)
        for t in (conv.weight, conv.bias)
    ]


# ------------------------------------------------------------------------------------------ structure
def test_released_parameter_counts_total_and_per_block():
    net = MPUNet(preset="released")
    assert n_params(net) == 21_507_255
    per_block = {
        "encoders": [7_408, 55_424, 221_440, 885_248, 3_539_968],
        "downs": [4_192, 16_576, 65_920, 885_504, 3_540_480],
        "decoders": [4_425_216, 1_549_056, 387_456, 96_960],
        "ups": [262_400, 65_664, 16_448],
        "gates": [66_435, 16_835, 4_323, 1_139],
        "heads": [514, 258, 130, 66],
    }
    for name, counts in per_block.items():
        assert [n_params(b) for b in getattr(net, name)] == counts, name
    assert n_params(net.bottleneck) == 5_392_195
    assert sum(sum(c) for c in per_block.values()) + 5_392_195 == 21_507_255


def test_released_details_elu_alpha_prelu_sharing():
    net = MPUNet(preset="released")
    assert [d.layers[3].alpha for d in net.downs] == [32.0, 64.0, 128.0, 256.0, 512.0]
    assert net.bottleneck.pre[2].weight.numel() == 1 and net.bottleneck.post[2].weight.numel() == 1
    assert net.encoders[1].layers[1].weight.numel() == 32 and net.decoders[0].layers[5].weight.numel() == 256
    assert net.bottleneck.attention.gamma.item() == 0.0
    assert net.input_multiple == 8
    assert MPUNet(preset="paper").downs[0].layers[3].alpha == 1.0


@pytest.mark.parametrize("shape", [(2, 3, 5, 6, 7), (1, 2, 1, 4, 3), (2, 3, 9, 8)])
def test_box_max_pool_equals_max_pool_values_and_gradients(shape):
    torch.manual_seed(9)
    x = torch.randn(shape)
    x[..., :2] = 0.5  # constant regions: ties
    pool = F.max_pool3d if len(shape) == 5 else F.max_pool2d
    with torch.no_grad():
        assert torch.equal(BoxMaxPool()(x), pool(x, 3, 1, 1))
    xg, xr = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    g = torch.randn(shape)
    BoxMaxPool()(xg).backward(g)
    pool(xr, 3, 1, 1).backward(g)
    assert torch.equal(xg.grad, xr.grad)


# --------------------------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("preset", ["released", "paper"])
@pytest.mark.parametrize("dims,shape", [(3, (1, 1, 16, 32, 32)), (2, (2, 1, 32, 48))])
def test_train_and_eval_outputs(preset, dims, shape):
    torch.manual_seed(0)
    net = MPUNet(preset=preset, spatial_dims=dims, out_channels=3, channels=SMALL)
    x = torch.randn(shape)
    out = net.train()(x)
    assert isinstance(out, list) and len(out) == 4
    for t in out:
        assert t.shape == (shape[0], 3, *shape[2:]) and t.dtype == torch.float32
    probs = net.eval()(x)
    assert isinstance(probs, torch.Tensor) and probs.shape == (shape[0], 3, *shape[2:])
    assert probs.min() >= 0
    torch.testing.assert_close(probs.sum(1), torch.ones_like(probs[:, 0]), atol=1e-5, rtol=0)


def eval_logits(net: MPUNet, x: torch.Tensor):
    """The four logits with every layer in eval mode: only the top module says "training"."""
    net.eval()
    dropout, net.dropout, net.training = net.dropout, 0.0, True
    try:
        with torch.no_grad():
            return net(x)
    finally:
        net.dropout, net.training = dropout, False


def test_released_eval_is_mean_of_head_softmaxes():
    torch.manual_seed(1)
    net = MPUNet(preset="released", channels=SMALL)
    x = torch.randn(1, 1, 8, 16, 16)
    net.train()(x)  # move the BatchNorm running statistics away from their initial values
    logits = eval_logits(net, x)
    with torch.no_grad():
        probs = net.eval()(x)
    expected = torch.stack([torch.softmax(t, 1) for t in logits]).mean(0)
    torch.testing.assert_close(probs, expected, atol=1e-6, rtol=0)


def test_paper_fusion_starts_as_logit_mean_and_is_trained():
    torch.manual_seed(2)
    net = MPUNet(preset="paper", channels=SMALL, dropout=0.0)
    x = torch.randn(1, 1, 16, 16, 16)
    out = net.train()(x)
    sum(t.square().mean() for t in out).backward()
    assert net.fusion.weight.grad.abs().sum() > 0 and net.heads[3].conv.weight.grad.abs().sum() > 0
    logits = eval_logits(net, x)
    with torch.no_grad():
        probs = net.eval()(x)
        heads = [net.heads[i](t, x.shape[2:]) for i, t in enumerate(_decoder_outputs(net, x))]
    torch.testing.assert_close(torch.softmax(logits[3], 1), probs, atol=1e-6, rtol=0)
    # at initialisation the fused logits are the mean of the four heads' logits
    torch.testing.assert_close(logits[3], torch.stack(heads).mean(0), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[:3], heads[:3], atol=0, rtol=0)


@pytest.mark.parametrize("preset,fusion", [("released", "learned"), ("paper", "mean")])
def test_fusion_override_swaps_only_the_fusion(preset, fusion):
    torch.manual_seed(4)
    default = MPUNet(preset=preset, channels=SMALL, out_channels=3)
    swapped = MPUNet(preset=preset, channels=SMALL, out_channels=3, fusion=fusion)
    extra = sum(p.numel() for p in swapped.parameters()) - sum(p.numel() for p in default.parameters())
    assert extra == (4 * 3 * 3 + 3) * (1 if fusion == "learned" else -1)  # one 1x1 conv, 12 -> 3 channels
    x = torch.randn(1, 1, 8, 16, 16)
    logits = eval_logits(swapped, x)
    with torch.no_grad():
        probs = swapped.eval()(x)
    if fusion == "learned":  # predicts with the fused logits (returned last in training)
        torch.testing.assert_close(probs, torch.softmax(logits[3], 1), atol=1e-6, rtol=0)
    else:  # predicts with the mean of the four heads' softmax
        expected = torch.stack([torch.softmax(t, 1) for t in logits]).mean(0)
        torch.testing.assert_close(probs, expected, atol=1e-6, rtol=0)


def _decoder_outputs(net: MPUNet, x: torch.Tensor):
    """Inputs of the four heads, captured with forward hooks (eval mode)."""
    captured = []
    hooks = [h.register_forward_hook(lambda m, args, out: captured.append(args[0])) for h in net.heads]
    try:
        net(x)
    finally:
        for h in hooks:
            h.remove()
    return captured


@pytest.mark.parametrize("size", [(8, 8, 8), (16, 24, 40), (24, 16, 16)])
def test_paper_position_embedding_handles_any_multiple_of_8(size):
    torch.manual_seed(3)
    net = MPUNet(preset="paper", channels=SMALL, patch_size=2, position_grid=(1, 2, 2)).eval()
    with torch.no_grad():
        probs = net(torch.randn(1, 1, *size))
    assert probs.shape == (1, 2, *size) and torch.isfinite(probs).all()


@pytest.mark.parametrize("preset", ["released", "paper"])
def test_config_rebuilds_the_same_network(preset):
    net = MPUNet(preset=preset, spatial_dims=2, in_channels=2, out_channels=3, channels=SMALL, dropout=0.1)
    config = json.loads(json.dumps(net.config))
    again = MPUNet(**config)
    assert again.config == net.config
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in net.state_dict().items()
    }


def test_in_channels_other_than_one():
    net = MPUNet(preset="released", in_channels=3, channels=SMALL).eval()
    assert net(torch.randn(1, 3, 8, 16, 16)).shape == (1, 2, 8, 16, 16)


def test_dropout_only_in_training():
    torch.manual_seed(4)
    net = MPUNet(preset="released", channels=SMALL, dropout=0.5)
    x = torch.randn(1, 1, 8, 16, 16)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(x), atol=0, rtol=0)
        net.train()
        a, b = net(x), net(x)
    assert not torch.equal(a[0], b[0])  # dropout active in training
    net0 = MPUNet(preset="released", channels=SMALL, dropout=0.0).train()
    with torch.no_grad():
        assert all(torch.equal(u, v) for u, v in zip(net0(x), net0(x)))


def test_attention_implementations_agree_inside_the_network():
    torch.manual_seed(5)
    nets = [MPUNet(preset="released", channels=SMALL, attention_impl=i).eval() for i in ("chunked", "sdpa")]
    nets[1].load_state_dict(nets[0].state_dict())
    for net in nets:
        net.bottleneck.attention.gamma.data.fill_(0.7)
    x = torch.randn(1, 1, 16, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(nets[0](x), nets[1](x), atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------- attention
@pytest.mark.parametrize("impl", ["chunked", "sdpa", "auto"])
@pytest.mark.parametrize("chunk", [None, 7])
def test_position_attention_matches_naive_danet_forward_and_gradients(impl, chunk):
    torch.manual_seed(6)
    pam = PositionAttention(spatial_dims=3, channels=64, impl=impl)
    pam.gamma.data.fill_(0.8)  # gamma starts at 0: a nonzero value exercises the attention path
    x = torch.randn(2, 64, 3, 5, 7, requires_grad=True)
    if chunk is not None:
        pam.attend = lambda t: _attend_with_chunk(pam, t, chunk)
    out = pam(x)
    params = [x, *(t for c in (pam.query, pam.key, pam.value) for t in (c.weight, c.bias)), pam.gamma]
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, params, grad_out)

    x_ref = x.detach().clone().requires_grad_(True)
    weights = [w.detach().clone().requires_grad_(True) for w in _flat_weights(pam)]
    gamma_ref = pam.gamma.detach().clone().requires_grad_(True)
    ref = naive_danet(x_ref, *weights, gamma_ref)
    ref_grads = torch.autograd.grad(ref, [x_ref, *weights, gamma_ref], grad_out)

    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    names = ["x", "query.weight", "query.bias", "key.weight", "key.bias", "value.weight", "value.bias"]
    for name, g, r in zip([*names, "gamma"], grads, ref_grads):
        torch.testing.assert_close(g.reshape(r.shape), r, atol=1e-5, rtol=1e-5, msg=name)


def _attend_with_chunk(pam, x, chunk):
    out = position_attention(
        pam._tokens(pam.query(x)), pam._tokens(pam.key(x)), pam._tokens(pam.value(x)), 1.0, pam.impl, chunk
    )
    return out.transpose(2, 3).reshape(x.shape)


@pytest.mark.parametrize("impl", ["chunked", "sdpa"])
def test_multi_head_attention_matches_reference(impl):
    torch.manual_seed(7)
    q, k, v = (torch.randn(2, 4, 50, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    out = position_attention(q, k, v, scale=8**-0.5, impl=impl, chunk_size=16)
    ref = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, dim=-1) @ v
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g)):
        torch.testing.assert_close(a, b)
    small = [t.detach()[:1, :2, :11, :3].clone().requires_grad_(True) for t in (q, k, v)]
    assert torch.autograd.gradcheck(
        lambda a, b, c: position_attention(a, b, c, scale=0.3, impl=impl, chunk_size=4), small
    )


def test_chunked_attention_keeps_half_precision_dtype():
    q = k = torch.randn(1, 1, 40, 4, dtype=torch.bfloat16)
    v = torch.randn(1, 1, 40, 16, dtype=torch.bfloat16)
    out = position_attention(q, k, v, impl="chunked")
    ref = torch.softmax(q.float() @ k.float().transpose(-1, -2), -1) @ v.float()
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)


# ------------------------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"preset": "transformer"}, "unknown preset"),
        ({"spatial_dims": 1}, "spatial_dims"),
        ({"out_channels": 1}, "out_channels"),
        ({"in_channels": 0}, "in_channels"),
        ({"channels": (16, 32, 64, 128)}, "channels"),
        ({"channels": (3, 8, 16, 32, 64)}, "channels"),
        ({"channels": (4, 8, 16, 32, 36)}, "divisible by 8"),
        ({"dropout": 1.0}, "dropout"),
        ({"elu_alpha": -1}, "elu_alpha"),
        ({"attention_impl": "flash"}, "attention_impl"),
        ({"fusion": "max"}, "fusion must be"),
        ({"depth": 4}, "unknown override"),
        ({"heads": 4}, "only for preset='paper'"),
        ({"preset": "paper", "heads": 3}, "heads=3 must divide"),
        ({"preset": "paper", "patch_size": 0}, "patch_size"),
        ({"preset": "paper", "position_grid": (2, 2)}, "position_grid"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MPUNet(**kwargs)


def test_bad_inputs_raise_value_error():
    net = MPUNet(preset="released", channels=SMALL)
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.zeros(1, 1, 12, 16, 16))
    with pytest.raises(ValueError, match="C=1"):
        net(torch.zeros(1, 2, 8, 16, 16))
    with pytest.raises(ValueError, match="B, C, D, H, W"):
        net(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="impl"):
        position_attention(
            torch.zeros(1, 1, 4, 2), torch.zeros(1, 1, 4, 2), torch.zeros(1, 1, 4, 2), impl="x"
        )


def test_softmax_reference_is_independent_of_chunking():
    torch.manual_seed(8)
    q, k, v = torch.randn(1, 1, 300, 32), torch.randn(1, 1, 300, 32), torch.randn(1, 1, 300, 256)
    ref = F.softmax(q @ k.transpose(-1, -2), -1) @ v
    for chunk in (1, 64, 299, 1000):
        torch.testing.assert_close(position_attention(q, k, v, chunk_size=chunk), ref, atol=1e-5, rtol=1e-5)
