"""The channels-last forward (``MPUNetCore.inference.layout``) against the plain float32 forward.

Reference everywhere: the model called as loaded on an NCDHW tensor, PyTorch choosing its kernels.
oneDNN sums in another order, so probabilities agree to float32 rounding and labels agree except
where two classes tie within that rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from torch import nn

from MPUNetCore.bundle import load_bundle
from MPUNetCore.inference import layout as L
from MPUNetCore.inference.engine import predict_network_probabilities
from MPUNetCore.inference.preprocessing import Preprocessing
from MPUNetCore.inference.resampling import probabilities_to_labels
from MPUNetCore.inference.settings import InferenceSettings, InferenceSettingsError
from MPUNetCore.inference.sliding_window import sliding_window_predict
from MPUNetCore.networks import MPUNet
from MPUNetCore.phantom import make_phantom
from MPUNetCore.registry import BUILTIN_REGISTRY
from MPUNetCore.volume_io import read_volume

DEMO = BUILTIN_REGISTRY.parent / "demo-phantom.json"
TOL = 1e-4  # float32 rounding of sums over up to 27 x 256 terms, compounded through the network


@pytest.fixture(scope="module")
def demo():
    return load_bundle(DEMO)


def _labels_agree(a: torch.Tensor, b: torch.Tensor, probs: torch.Tensor) -> None:
    """Argmax equal wherever the top two classes of the reference differ by more than TOL."""
    top2 = probs.topk(2, dim=0).values
    clear = (top2[0] - top2[1]) > TOL
    assert torch.equal(a[clear], b[clear])
    assert (a != b).float().mean().item() <= 1e-4  # Dice >= 0.9999 in the worst case


@pytest.mark.parametrize("window", [(16, 64, 64), (8, 32, 48)])
def test_demo_window_probabilities_match_plain_forward(demo, window):
    torch.manual_seed(0)
    x = torch.rand(1, 1, *window) * 2 - 1
    with torch.inference_mode():
        ref = demo.model(x)
        out = L.layout_forward(demo.model, "channels_last")(x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() < TOL
    _labels_agree(out.argmax(1)[0], ref.argmax(1)[0], ref[0])


def test_demo_model_itself_is_left_contiguous(demo):
    L.layout_forward(demo.model, "channels_last")
    weight = demo.model.encoders[1].layers[0].weight
    assert weight.is_contiguous() and not weight.is_contiguous(memory_format=torch.channels_last_3d)


@pytest.mark.parametrize("seed", [3, 11])
def test_phantom_probabilities_and_labels_unchanged(demo, seed):
    image, _ = make_phantom(seed, shape=(24, 96, 96), spacing=(2.0, 2.0, 3.0))
    hu, spacing = sitk.GetArrayFromImage(image).astype(np.float32), image.GetSpacing()
    prep = Preprocessing.from_dict(demo.card.preprocessing)
    base = InferenceSettings(window=(16, 64, 64), device="cpu")
    probs = {
        lay: predict_network_probabilities(hu, spacing, demo.model, prep, base.replace(layout=lay))[0]
        for lay in ("contiguous", "channels_last")
    }
    assert (probs["channels_last"] - probs["contiguous"]).abs().max().item() < TOL
    _labels_agree(probs["channels_last"].argmax(0), probs["contiguous"].argmax(0), probs["contiguous"])


def test_real_ct_probabilities_and_labels_unchanged(demo, real_ct_dir):
    volume = read_volume(real_ct_dir)
    prep = Preprocessing.from_dict(demo.card.preprocessing)
    base = demo.card.inference.replace(device="cpu")
    runs = {
        lay: predict_network_probabilities(
            volume.array, volume.spacing, demo.model, prep, base.replace(layout=lay)
        )
        for lay in ("contiguous", "channels_last")
    }
    ref, ours = runs["contiguous"][0], runs["channels_last"][0]
    assert (ours - ref).abs().max().item() < TOL
    _labels_agree(ours.argmax(0), ref.argmax(0), ref)
    labels = {lay: probabilities_to_labels(p, transform.input_shape) for lay, (p, transform) in runs.items()}
    assert labels["contiguous"].shape == volume.array.shape
    assert (labels["channels_last"] != labels["contiguous"]).mean() <= 1e-4


def test_cache_converts_once_and_again_after_a_parameter_changes():
    net = MPUNet(preset="released", channels=(4, 8, 16, 32, 64)).eval()
    first = L.channels_last_parameters(net)
    assert L.channels_last_parameters(net) is first  # cached: no second conversion
    weight = first["encoders.1.layers.0.weight"]
    assert weight.is_contiguous(memory_format=torch.channels_last_3d)
    x = torch.rand(1, 1, 8, 16, 16)

    with torch.no_grad():  # in place: same storage, version counter bumped
        net.encoders[1].layers[0].weight.mul_(-2.0)
    second = L.channels_last_parameters(net)
    assert second is not first
    torch.testing.assert_close(second["encoders.1.layers.0.weight"], net.encoders[1].layers[0].weight)

    other = MPUNet(preset="released", channels=(4, 8, 16, 32, 64)).eval()
    net.load_state_dict(other.state_dict())
    third = L.channels_last_parameters(net)
    assert third is not second
    with torch.inference_mode():
        torch.testing.assert_close(L.layout_forward(net, "channels_last")(x), other(x), atol=TOL, rtol=0)

    net.heads[0].conv.weight = nn.Parameter(torch.zeros_like(net.heads[0].conv.weight))  # new tensor
    assert L.channels_last_parameters(net) is not third


@pytest.mark.parametrize(
    "shape, kwargs",
    [
        ((1, 3, 9, 10, 11), dict(stride=2, padding=1)),
        ((2, 4, 6, 7, 8), dict(padding=2, dilation=2, groups=2)),
        ((1, 1, 16, 16, 16), dict(stride=(1, 2, 2), padding=(0, 1, 1))),
    ],
)
def test_onednn_convolution_matches_torch_conv3d(shape, kwargs):
    torch.manual_seed(1)
    x = torch.randn(shape)
    w = torch.randn(6, shape[1] // kwargs.get("groups", 1), 3, 3, 3)
    b = torch.randn(6)
    ref = F.conv3d(x, w, b, **kwargs)
    with torch.no_grad(), L.OneDNNConvolutions():
        out = F.conv3d(L.to_channels_last(x), w.contiguous(memory_format=torch.channels_last_3d), b, **kwargs)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_onednn_mode_leaves_autograd_to_torch():
    conv = nn.Conv3d(2, 3, 3, padding=1)
    x = torch.randn(1, 2, 4, 4, 4, requires_grad=True)
    with L.OneDNNConvolutions():
        conv(x).sum().backward()
    assert x.grad is not None and conv.weight.grad is not None


def test_one_channel_input_gets_channels_last_strides():
    x = torch.rand(1, 1, 4, 5, 6)
    assert x.contiguous(memory_format=torch.channels_last_3d).stride() == x.stride()  # the no-op
    y = L.to_channels_last(x)
    assert y.stride()[1] == 1 and y.stride()[-1] == 1 and torch.equal(x, y)


class Tiny2D(nn.Module):
    input_multiple = 8
    spatial_dims = 2

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1))

    def forward(self, x):
        return torch.softmax(self.body(x), dim=1)


def test_two_d_model_channels_last_matches():
    image = torch.rand(5, 24, 32) * 2 - 1
    net = Tiny2D().eval()
    ref = sliding_window_predict(image, net, window=(1, 16, 16), layout="contiguous", device="cpu")
    out = sliding_window_predict(image, net, window=(1, 16, 16), layout="channels_last", device="cpu")
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_rule_and_setting():
    net3, cpu = MPUNet(preset="released", channels=(4, 8, 16, 32, 64)), torch.device("cpu")
    assert L.choose_layout("contiguous", net3, (48, 256, 256), cpu) == "contiguous"
    assert L.choose_layout("channels_last", Tiny2D(), (1, 16, 16), cpu) == "channels_last"
    assert L.choose_layout("auto", Tiny2D(), (1, 256, 256), cpu) == "contiguous"
    assert L.choose_layout("auto", net3, (48, 256, 256), cpu) == "channels_last"
    assert L.choose_layout("auto", net3, (16, 64, 64), cpu) == "channels_last"
    assert L.choose_layout("auto", net3, (16, 32, 32), cpu) == "contiguous"  # small windows lose
    with pytest.raises(ValueError, match="layout must be one of"):
        L.choose_layout("nhwc", net3, (8, 8, 8), cpu)
    assert InferenceSettings(layout="CHANNELS_LAST").to_dict()["layout"] == "channels_last"
    with pytest.raises(InferenceSettingsError, match="layout must be one of"):
        InferenceSettings.from_dict({"layout": "nhwc"})
