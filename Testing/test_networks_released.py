"""load_released_state_dict: a state dict with the authors' key names and shapes loads, and predicts the same.

The key/shape table of the released network is written out here from its module list (names, layer
order inside each nn.Sequential, shapes), independently of the library's mapping. The reference
forward pass below is written with torch.nn.functional directly on those named tensors, following the
released wiring (background §3), so a wrongly placed tensor changes the result.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from MPUNetCore.networks import MPUNet, load_released_checkpoint, load_released_state_dict

FULL = (16, 32, 64, 128, 256)
SMALL = (4, 8, 16, 32, 64)


def released_key_shapes(c=FULL, in_ch=1, out_ch=2):
    """Every key of the released MPUNet's state dict with its shape (their widths: c=FULL)."""
    shapes = {}

    def conv(name, i, o, k):
        shapes[name + ".weight"] = (o, i, k, k, k)
        shapes[name + ".bias"] = (o,)

    def bn(name, ch):
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{p}"] = (ch,)
        shapes[name + ".num_batches_tracked"] = ()

    def stage(name, seq, i, o, n):
        for j in range(n):
            conv(f"{name}.{seq}.{2 * j}", i if j == 0 else o, o, 3)
            shapes[f"{name}.{seq}.{2 * j + 1}.weight"] = (o,)

    for n, (i, o) in enumerate([(in_ch, c[0]), (c[1], c[1]), (c[2], c[2]), (c[3], c[3]), (c[4], c[4])], 1):
        stage(f"encoder{n}", "encoder_stage", i, o, 2)
    dec = [(c[3], c[4]), (c[3] + c[2], c[3]), (c[2] + c[1], c[2]), (c[1] + c[0], c[1]), (c[0] // 2, 2)]
    for n, (i, o) in enumerate(dec, 1):
        stage(f"decoder{n}", "decoder_stage", i, o, 3)
    downs = [(c[0], c[1], 2), (c[1], c[2], 2), (c[2], c[3], 2), (c[3], c[4], 3), (c[4], 2 * c[4], 3)]
    for n, (i, o, k) in enumerate(downs, 1):
        conv(f"down{n}.down_conv.1", i, o, k)
        bn(f"down{n}.down_conv.2", o)
    for n, (i, o) in enumerate([(2 * c[4], c[4]), (c[4], c[3]), (c[3], c[2]), (c[2], c[1])], 1):
        shapes[f"up{n}.up_conv.0.weight"] = (i, o, 2, 2, 2)  # ConvTranspose: (in, out, k, k, k)
        shapes[f"up{n}.up_conv.0.bias"] = (o,)
        shapes[f"up{n}.up_conv.1.weight"] = (o,)
    for n, i in enumerate([c[4], c[3], c[2], c[1], 2], 1):
        conv(f"map{n}.map_conv.0", i, out_ch, 1)
    for n, ch in zip((4, 3, 2, 1), (c[4], c[3], c[2], c[1])):
        for part in ("Wx", "Wg"):
            conv(f"Att{n}.{part}.0", ch, ch // 2, 1)
            bn(f"Att{n}.{part}.1", ch // 2)
        conv(f"Att{n}.psi.0", ch // 2, 1, 1)
        bn(f"Att{n}.psi.1", 1)
    conv("PCL.attn.0", 2 * c[4], c[4], 3)
    bn("PCL.attn.1", c[4])
    shapes["PCL.attn.2.weight"] = (1,)
    conv("PCL.attn.3.query_conv", c[4], c[4] // 8, 1)
    conv("PCL.attn.3.key_conv", c[4], c[4] // 8, 1)
    conv("PCL.attn.3.value_conv", c[4], c[4], 1)
    shapes["PCL.attn.3.gamma"] = (1,)
    conv("PCL.attn.4", c[4], c[4], 3)
    bn("PCL.attn.5", c[4])
    shapes["PCL.attn.6.weight"] = (1,)
    return shapes


def random_released_state_dict(c=FULL, seed=0, out_ch=2):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in released_key_shapes(c, out_ch=out_ch).items():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[key] = 0.2 * torch.randn(shape, generator=g)
    return sd


def reference_forward(sd, x):
    """The released network in eval mode, written with torch.nn.functional on their named tensors."""

    def conv(t, name, stride=1, padding=None):
        w = sd[name + ".weight"]
        return F.conv3d(t, w, sd[name + ".bias"], stride, w.shape[-1] // 2 if padding is None else padding)

    def bn(t, name):
        return F.batch_norm(
            t, sd[name + ".running_mean"], sd[name + ".running_var"], sd[name + ".weight"], sd[name + ".bias"]
        )

    def stage(t, name, seq, n):
        for j in range(n):
            t = F.prelu(conv(t, f"{name}.{seq}.{2 * j}"), sd[f"{name}.{seq}.{2 * j + 1}.weight"])
        return t

    def down(t, n, stride):
        t = F.max_pool3d(t, 3, 1, 1)
        t = bn(conv(t, f"down{n}.down_conv.1", stride, 0 if stride == 2 else 1), f"down{n}.down_conv.2")
        return F.elu(t, alpha=float(t.shape[1]))  # ELU(alpha = channel count), as released

    def up(t, n):
        t = F.conv_transpose3d(t, sd[f"up{n}.up_conv.0.weight"], sd[f"up{n}.up_conv.0.bias"], stride=2)
        return F.prelu(t, sd[f"up{n}.up_conv.1.weight"])

    def gate(t, g, n):
        a = bn(conv(t, f"Att{n}.Wx.0"), f"Att{n}.Wx.1")
        b = F.interpolate(bn(conv(g, f"Att{n}.Wg.0"), f"Att{n}.Wg.1"), a.shape[2:], mode="trilinear")
        return t * torch.sigmoid(bn(conv(F.relu(a + b), f"Att{n}.psi.0"), f"Att{n}.psi.1"))

    def pam(t):
        t = F.prelu(bn(conv(t, "PCL.attn.0"), "PCL.attn.1"), sd["PCL.attn.2.weight"])
        b, ch = t.shape[:2]
        q = conv(t, "PCL.attn.3.query_conv").reshape(b, -1, t[0, 0].numel())
        k = conv(t, "PCL.attn.3.key_conv").reshape(b, -1, t[0, 0].numel())
        v = conv(t, "PCL.attn.3.value_conv").reshape(b, ch, -1)
        att = torch.softmax(q.transpose(1, 2) @ k, dim=-1)
        t = sd["PCL.attn.3.gamma"] * (v @ att.transpose(1, 2)).reshape(t.shape) + t
        return F.prelu(bn(conv(t, "PCL.attn.4"), "PCL.attn.5"), sd["PCL.attn.6.weight"])

    def head(t, n, factor):
        t = F.interpolate(conv(t, f"map{n}.map_conv.0"), scale_factor=factor, mode="trilinear")
        return torch.softmax(t, dim=1)

    e1 = stage(x, "encoder1", "encoder_stage", 2) + x
    e2 = stage(d := down(e1, 1, 2), "encoder2", "encoder_stage", 2) + d
    e3 = stage(d := down(e2, 2, 2), "encoder3", "encoder_stage", 2) + d
    e4 = stage(d := down(e3, 3, 2), "encoder4", "encoder_stage", 2) + d
    e5 = stage(d := down(e4, 4, 1), "encoder5", "encoder_stage", 2) + d
    b = pam(down(e5, 5, 1))
    y = gate(stage(e4, "decoder1", "decoder_stage", 3) + b, b, 4)
    outs = [head(y, 1, 8)]
    for n, skip, factor in ((2, e3, 4), (3, e2, 2), (4, e1, 1)):
        u = up(y, n)
        y = gate(stage(torch.cat([u, skip], 1), f"decoder{n}", "decoder_stage", 3) + u, u, 5 - n)
        outs.append(head(y, n, factor))
    return sum(outs) / 4


def test_key_table_matches_the_published_parameter_count():
    shapes = released_key_shapes()
    total = sum(
        torch.Size(s).numel()
        for k, s in shapes.items()
        if not k.split(".")[-1].startswith(("running", "num"))
    )
    assert total == 22_557_009  # the released model, unused modules included (background §3)


def test_full_size_state_dict_loads_every_tensor_where_expected():
    sd = random_released_state_dict()
    net = MPUNet(preset="released")
    ignored = load_released_state_dict(net, {"net": sd, "optimizer": {}, "epoch": 600})
    assert sorted(ignored) == sorted(k for k in sd if k.startswith(("up1.", "decoder5.", "map5.")))
    ours = net.state_dict()
    # a bijection: every used source tensor lands in exactly one of our tensors, and all are filled
    used = [v for k, v in sd.items() if k not in ignored]
    assert len(used) == len(ours)
    fingerprint = Counter((tuple(v.shape), round(float(v.double().sum()), 6)) for v in used)
    assert fingerprint == Counter((tuple(v.shape), round(float(v.double().sum()), 6)) for v in ours.values())
    # a few placements spelled out
    for theirs, mine in [
        ("encoder1.encoder_stage.0.weight", net.encoders[0].layers[0].weight),
        ("encoder5.encoder_stage.3.weight", net.encoders[4].layers[3].weight),
        ("down5.down_conv.2.running_mean", net.downs[4].layers[2].running_mean),
        ("decoder1.decoder_stage.4.bias", net.decoders[0].layers[4].bias),
        ("up2.up_conv.0.weight", net.ups[0].layers[0].weight),
        ("Att4.Wg.1.running_var", net.gates[0].g_proj[1].running_var),
        ("Att1.psi.0.weight", net.gates[3].psi[0].weight),
        ("map1.map_conv.0.weight", net.heads[0].conv.weight),
        ("map4.map_conv.0.bias", net.heads[3].conv.bias),
        ("PCL.attn.2.weight", net.bottleneck.pre[2].weight),
        ("PCL.attn.3.query_conv.weight", net.bottleneck.attention.query.weight),
        ("PCL.attn.3.gamma", net.bottleneck.attention.gamma),
        ("PCL.attn.5.weight", net.bottleneck.post[1].weight),
    ]:
        assert torch.equal(sd[theirs], mine), theirs


@pytest.mark.parametrize("wrap", ["plain", "net", "module"])
def test_loaded_model_predicts_like_the_released_forward(wrap):
    sd = random_released_state_dict(SMALL, seed=1)
    given = {"plain": sd, "net": {"net": sd, "epoch": 3}, "module": {f"module.{k}": v for k, v in sd.items()}}
    net = MPUNet(preset="released", channels=SMALL)
    load_released_state_dict(net, given[wrap])
    x = torch.randn(1, 1, 16, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), reference_forward(sd, x), atol=1e-5, rtol=1e-5)


def test_errors_list_missing_unexpected_and_misshaped_keys():
    sd = random_released_state_dict(SMALL)
    net = MPUNet(preset="released", channels=SMALL)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    broken = dict(sd)
    del broken["encoder2.encoder_stage.2.weight"]
    broken["PCL.attn.3.extra"] = torch.zeros(1)
    with pytest.raises(ValueError) as info:
        load_released_state_dict(net, broken)
    assert "missing 1: encoder2.encoder_stage.2.weight" in str(info.value)
    assert "unexpected 1: PCL.attn.3.extra" in str(info.value)
    three_classes = random_released_state_dict(SMALL, out_ch=3)
    with pytest.raises(ValueError, match=r"wrong shape 8: map1\.map_conv\.0\.weight \(3, 64"):
        load_released_state_dict(net, three_classes)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # nothing loaded
    with pytest.raises(ValueError, match="preset='released', spatial_dims=3"):
        load_released_state_dict(MPUNet(preset="paper", channels=SMALL), sd)
    with pytest.raises(ValueError, match="expected a state dict"):
        load_released_state_dict(net, {"epoch": 3})


class NotATensor:
    pass


def test_checkpoint_file_is_read_weights_only(tmp_path):
    sd = random_released_state_dict(SMALL, seed=3)
    path = tmp_path / "best_model.pth"
    torch.save({"net": sd, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]}, "epoch": 12}, path)
    net = MPUNet(preset="released", channels=SMALL)
    load_released_checkpoint(net, path)
    assert torch.equal(net.bottleneck.attention.value.weight, sd["PCL.attn.3.value_conv.weight"])
    with pytest.raises(ValueError, match="not found"):
        load_released_checkpoint(net, tmp_path / "missing.pth")
    unsafe = tmp_path / "pickled.pth"
    torch.save({"net": sd, "extra": NotATensor()}, unsafe)
    with pytest.raises(ValueError, match="weights-only"):
        load_released_checkpoint(net, unsafe)
