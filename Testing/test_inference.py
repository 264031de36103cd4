"""Tests of the inference engine (MPUNetCore.inference) with small real networks defined here."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from MPUNetCore.inference import (
    InferenceCancelled,
    InferenceSettings,
    Preprocessing,
    body_box,
    importance_map,
    postprocess_labels,
    predict_probabilities,
    probabilities_to_grid,
    probabilities_to_labels,
    resample_to_shape,
    segment,
    select_device,
    sliding_window_predict,
    to_network_space,
    window_starts,
)
from MPUNetCore.inference.resampling import argmax_classes

IDENTITY = Preprocessing(inplane_factor=1.0, slice_spacing=None)


class ThresholdNet(nn.Module):
    """Pointwise 3-class model: class 1 for a < x < b, class 2 for x > b (x = preprocessed intensity).

    A 1x1x1 convolution with fixed weights gives the logits [0, k(x-a), k(x-a) + k(x-b)]; softmax gives
    the probabilities. Pointwise, so it commutes with windowing, padding and flips.
    """

    input_multiple = 8

    def __init__(self, a: float = 0.1, b: float = 0.5, k: float = 50.0, spatial_dims: int = 3):
        super().__init__()
        self.spatial_dims = spatial_dims
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        self.conv = conv(1, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([0.0, k, 2 * k]).view(3, 1, *([1] * spatial_dims)))
            self.conv.bias.copy_(torch.tensor([0.0, -k * a, -k * (a + b)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.conv(x), dim=1)


class TinyConvNet(nn.Module):
    """A tiny randomly initialised 3x3x3 conv net returning softmax probabilities."""

    input_multiple = 8

    def __init__(self, seed: int = 0, spatial_dims: int = 3, classes: int = 3):
        super().__init__()
        torch.manual_seed(seed)
        self.spatial_dims = spatial_dims
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        self.body = nn.Sequential(conv(1, 4, 3, padding=1), nn.ReLU(), conv(4, classes, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.body(x), dim=1)


class ListNet(TinyConvNet):
    def forward(self, x: torch.Tensor):  # type: ignore[override]
        return [super().forward(x)]


def _phantom(shape=(21, 37, 29)) -> tuple[np.ndarray, np.ndarray]:
    """Air background, a liver ellipsoid at 60 HU with a 150 HU tumour ball: (HU image, true labels)."""
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    labels = np.zeros(shape, np.uint8)
    labels[(z / 0.8) ** 2 + (y / 0.7) ** 2 + (x / 0.6) ** 2 < 1] = 1
    labels[(z - 0.1) ** 2 + (y - 0.1) ** 2 + x**2 < 0.3**2] = 2
    hu = np.choose(labels, [-1000.0, 60.0, 150.0]).astype(np.float32)
    return hu, labels


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


# ----------------------------------------------------------------------------------------- preprocessing


def test_hu_clip_and_scale_hand_checked():
    hu = np.array([-1000, -200, 0, 100, 200, 3000], np.int16).reshape(1, 1, 6)
    img, tr = to_network_space(hu, (1.0, 1.0, 1.0), IDENTITY)
    np.testing.assert_allclose(img.numpy().ravel(), [-1, -1, 0, 0.5, 1, 1])
    assert tr.network_shape == tr.input_shape == (1, 1, 6)
    assert hu[0, 0, 0] == -1000  # input untouched
    assert Preprocessing().pad_value == -1.0


def test_preprocessing_dict_roundtrip_and_validation():
    p = Preprocessing(hu_window=(-100, 250), scale=100, target_spacing=(0.8, 0.8), slice_spacing=None)
    assert p.inplane_factor is None  # target_spacing takes precedence
    assert Preprocessing.from_dict(p.to_dict()) == p
    assert Preprocessing.from_dict(Preprocessing().to_dict()) == Preprocessing()
    with pytest.raises(ValueError, match="unknown preprocessing keys"):
        Preprocessing.from_dict({"hu": 1})
    for bad in ({"hu_window": (200, -200)}, {"scale": 0}, {"slice_spacing": -1}, {"inplane_factor": None}):
        with pytest.raises(ValueError):
            Preprocessing(**bad)


def test_network_shape_and_spacing():
    img = np.zeros((8, 40, 30), np.float32)
    _, tr = to_network_space(img, (0.7, 0.8, 2.5), Preprocessing())
    assert tr.network_shape == (20, 20, 15)
    np.testing.assert_allclose(tr.network_spacing, (1.4, 1.6, 1.0))
    p = Preprocessing(target_spacing=(1.4, 2.0), slice_spacing=None)
    assert p.network_shape((8, 40, 30), (0.7, 0.8, 2.5)) == (8, 16, 15)


@pytest.mark.parametrize("out_shape", [(10, 6, 5), (3, 30, 17), (7, 13, 11)])
def test_chunked_resampling_equals_torch_trilinear(out_shape):
    x = torch.rand(2, 7, 13, 11)
    ref = F.interpolate(x[None], size=out_shape, mode="trilinear", align_corners=False)[0]
    ours = resample_to_shape(x.numpy(), out_shape, chunk_slices=3)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    labels = probabilities_to_labels(x, out_shape, chunk_slices=4)
    np.testing.assert_array_equal(labels, ref.argmax(0).numpy())


def test_label_volume_roundtrip_through_network_space():
    _, labels = _phantom((30, 64, 52))
    onehot = np.stack([labels == c for c in range(3)])
    prep = Preprocessing()  # in-plane x0.5, 1 mm slices
    spacing = (0.7, 0.7, 2.0)
    _, tr = to_network_space(labels.astype(np.float32), spacing, prep)
    net = resample_to_shape(onehot, tr.network_shape)
    assert net.shape == (3, 60, 32, 26)
    back = probabilities_to_labels(net, labels.shape)
    assert back.shape == labels.shape
    for c in (1, 2):
        assert _dice(back == c, labels == c) > 0.98
    probs = probabilities_to_grid(net, labels.shape)
    assert probs.shape == (3, *labels.shape)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)


def test_fast_argmax_equals_torch_argmax_with_ties():
    p = torch.randint(0, 3, (4, 3, 5, 6)).float()  # many exact ties
    torch.testing.assert_close(argmax_classes(p), p.argmax(1).to(torch.uint8))


# ----------------------------------------------------------------------------------------- sliding window


@pytest.mark.parametrize("blending", ["gaussian", "constant"])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.7])
def test_pointwise_model_sliding_equals_whole_volume(blending, overlap):
    img = torch.rand(20, 41, 35) * 2 - 1
    model = ThresholdNet()
    with torch.no_grad():
        ref = model(img[None, None])[0]
    out = sliding_window_predict(
        img, model, window=(8, 16, 24), overlap=overlap, blending=blending, batch_size=2, device="cpu"
    )
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("blending", ["gaussian", "constant"])
def test_agrees_with_monai_sliding_window_inference(blending):
    monai_inferers = pytest.importorskip("monai.inferers")
    model = TinyConvNet().eval()
    img = torch.rand(40, 48, 36)  # (size - window) divisible by the stride: same window positions
    win = (16, 24, 24)
    settings = InferenceSettings(window=win, overlap=0.5, blending=blending, device="cpu")
    with torch.no_grad():
        ref = monai_inferers.sliding_window_inference(img[None, None], win, 3, model, 0.5, blending)[0]
    ours = sliding_window_predict(img, model, settings.replace(batch_size=3))
    torch.testing.assert_close(
        ours, ref.as_tensor() if hasattr(ref, "as_tensor") else ref, atol=1e-5, rtol=1e-4
    )
    # unaligned size: our windows are evenly spaced, MONAI's last one is crowded -> close, not equal
    img2 = torch.rand(45, 50, 37)
    with torch.no_grad():
        ref2 = monai_inferers.sliding_window_inference(img2[None, None], win, 2, model, 0.5, blending)[0]
    ours2 = sliding_window_predict(img2, model, settings.replace(batch_size=2))
    diff = (ours2 - ref2).abs()
    assert float(diff.mean()) < 1e-2 and float(diff.max()) < 0.1  # window-border effects only


def test_window_positions_and_importance_match_monai():
    monai_utils = pytest.importorskip("monai.data.utils")
    for size in range(16, 130, 7):
        for overlap in (0.0, 0.25, 0.5, 0.75):
            ours = window_starts(size, 16, overlap)
            step = max(1, int(16 * (1 - overlap)))
            theirs = monai_utils.dense_patch_slices((size,), (16,), (step,))
            assert len(ours) == len(theirs), (size, overlap)
            assert ours[0] == 0 and ours[-1] == size - 16
            assert all(0 < b - a <= step for a, b in zip(ours, ours[1:]))
    ref = monai_utils.compute_importance_map((8, 16, 24), mode="gaussian", sigma_scale=0.125)
    torch.testing.assert_close(importance_map((8, 16, 24), "gaussian"), ref)


@pytest.mark.parametrize("shape", [(3, 10, 12), (1, 7, 5), (13, 37, 29), (50, 9, 120)])
def test_output_covers_exactly_the_input(shape):
    hu, labels = _phantom(shape)
    out = segment(hu, (1.0, 1.0, 1.0), ThresholdNet(), IDENTITY, window=(8, 16, 16), postprocess=False)
    assert out.shape == shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, labels)  # pointwise model: exact, padding included
    out2 = segment(hu, (0.8, 0.9, 2.5), TinyConvNet(), Preprocessing(), window=(8, 16, 16))
    assert out2.shape == shape


def test_segment_threshold_model_with_resampling_and_default_window():
    hu, labels = _phantom((30, 64, 60))
    # thresholds half-way between the classes' preprocessed values, so partial-volume voxels split evenly
    model = ThresholdNet(a=(-1.0 + 0.3) / 2, b=(0.3 + 0.75) / 2)
    out = segment(hu, (0.7, 0.7, 1.5), model, Preprocessing(), window=(48, 256, 256))
    assert out.shape == labels.shape
    assert _dice(out >= 1, labels >= 1) > 0.97
    assert _dice(out == 2, labels == 2) > 0.9


def test_tta_with_flip_equivariant_model_changes_nothing():
    img = torch.rand(18, 30, 26) * 2 - 1
    model = ThresholdNet()
    plain = sliding_window_predict(img, model, window=(8, 16, 16), overlap=0.5, device="cpu")
    mirrored = sliding_window_predict(img, model, window=(8, 16, 16), overlap=0.5, tta=True, device="cpu")
    torch.testing.assert_close(mirrored, plain, atol=1e-5, rtol=1e-5)
    some = sliding_window_predict(
        img, model, window=(8, 16, 16), overlap=0.5, tta=[(0,), (1, 2)], device="cpu"
    )
    torch.testing.assert_close(some, plain, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="tta flips"):
        sliding_window_predict(img, model, window=(8, 16, 16), tta=[(3,)], device="cpu")


def test_tta_averages_mirrored_predictions():
    img = torch.rand(8, 16, 16)
    model = TinyConvNet().eval()
    out = sliding_window_predict(img, model, window=(8, 16, 16), tta=[(2,)], device="cpu")
    with torch.no_grad():
        x = img[None, None]
        ref = (model(x) + model(x.flip(4)).flip(4)) / 2
    torch.testing.assert_close(out, ref[0], atol=1e-6, rtol=1e-5)


def test_2d_model_applied_slice_by_slice():
    img = torch.rand(5, 24, 16)
    model = TinyConvNet(spatial_dims=2).eval()
    with torch.no_grad():
        ref = model(img[:, None]).transpose(0, 1)  # slices as a batch -> (C, z, y, x)
    for window in [(24, 16), (1, 24, 16)]:
        out = sliding_window_predict(img, model, window=window, batch_size=3, device="cpu")
        torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    hu, labels = _phantom((6, 20, 30))
    out = segment(hu, (1, 1, 1), ThresholdNet(spatial_dims=2), IDENTITY, window=(16, 16), batch_size=4)
    np.testing.assert_array_equal(out, labels)
    with pytest.raises(ValueError, match="slice by slice"):
        sliding_window_predict(img, model, window=(8, 16, 16), device="cpu")
    with pytest.raises(ValueError, match="2-D model"):
        sliding_window_predict(img, TinyConvNet(), window=(16, 16), device="cpu")


def test_argument_validation():
    img = torch.rand(8, 16, 16)
    with pytest.raises(ValueError, match="input_multiple=8"):
        sliding_window_predict(img, ThresholdNet(), window=(48, 250, 256), device="cpu")
    model16 = ThresholdNet()
    model16.input_multiple = 16
    with pytest.raises(ValueError, match="input_multiple=16"):
        sliding_window_predict(img, model16, window=(8, 16, 16), device="cpu")
    for kwargs in ({"overlap": 1.0}, {"overlap": -0.1}, {"blending": "linear"}, {"batch_size": 0}):
        with pytest.raises(ValueError):
            sliding_window_predict(img, ThresholdNet(), window=(8, 16, 16), device="cpu", **kwargs)
    with pytest.raises(ValueError, match="deep-supervision"):
        sliding_window_predict(img, ListNet(), window=(8, 16, 16), device="cpu")


def test_progress_is_monotonic_and_ends_at_total():
    calls = []
    img = torch.rand(40, 20, 20)
    sliding_window_predict(
        img,
        ThresholdNet(),
        window=(8, 16, 16),
        overlap=0.5,
        batch_size=3,
        device="cpu",
        progress=lambda d, t: calls.append((d, t)),
    )
    totals = {t for _, t in calls}
    assert len(totals) == 1
    total = totals.pop()
    assert total == 9 * 2 * 2
    done = [d for d, _ in calls]
    assert done == sorted(set(done)) and done[-1] == total and done[0] == 3


@pytest.mark.parametrize("kind", ["event", "callable"])
def test_cancellation_mid_run(kind):
    event = threading.Event()
    cancel = event if kind == "event" else event.is_set
    calls = []

    def progress(done, total):
        calls.append(done)
        if done >= 2:
            event.set()

    hu, _ = _phantom((40, 20, 20))
    with pytest.raises(InferenceCancelled):
        segment(hu, (1, 1, 1), ThresholdNet(), IDENTITY, window=(8, 16, 16), progress=progress, cancel=cancel)
    assert calls == [1, 2]  # stopped at the next check


def test_eval_mode_restored_and_probabilities():
    model = TinyConvNet()
    model.train()
    hu, _ = _phantom((9, 16, 16))
    probs = predict_probabilities(hu, (1, 1, 1), model, IDENTITY, window=(8, 16, 16), device="cpu")
    assert model.training
    assert probs.shape == (3, 9, 16, 16) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)


def test_body_box_hand_built():
    img = -torch.ones(4, 64, 64)
    img[1, 10:20, 30:41] = 0.2
    ys, xs = body_box(img, air_value=-1.0, margin=2, multiple=8)
    assert (ys.start, ys.stop) == (7, 23)  # [8, 22) grown to 16 rows, centred
    assert xs.stop - xs.start == 16 and xs.start <= 28 and xs.stop >= 43
    assert body_box(-torch.ones(2, 8, 8), air_value=-1.0) is None
    assert body_box(img, air_value=-1.0, margin=40, multiple=8) is None  # the whole plane: no crop


def test_crop_to_body_skips_air_and_changes_nothing_for_a_pointwise_model():
    hu, labels = _phantom((16, 64, 64))
    hu[:, :, :] = np.where(np.abs(np.arange(64) - 20)[None, :, None] < 12, hu, -1000.0)  # body: rows 9-31
    labels = np.where(hu > -1000, labels, 0)
    counts = {}
    for crop in (True, False):
        calls = []
        out = segment(
            hu, (1, 1, 1), ThresholdNet(), IDENTITY, window=(8, 48, 48), overlap=0.0, crop_to_body=crop,
            progress=lambda d, t, c=calls: c.append(t),
        )  # fmt: skip
        np.testing.assert_array_equal(out, labels)
        counts[crop] = calls[-1]
    assert counts[True] < counts[False]


# ----------------------------------------------------------------------------------------- post-processing


def test_postprocessing_hand_built_case():
    lab = np.zeros((10, 30, 30), np.uint8)
    lab[2:8, 2:15, 2:15] = 1  # big liver blob
    lab[4:6, 5:8, 5:8] = 2  # tumour inside it
    lab[2:4, 20:24, 20:24] = 1  # small liver blob
    lab[3, 21:23, 21:23] = 2  # tumour inside the small blob
    lab[7:9, 25:28, 2:5] = 2  # tumour touching no liver
    expected = np.zeros_like(lab)
    expected[2:8, 2:15, 2:15] = lab[2:8, 2:15, 2:15]
    out = postprocess_labels(lab)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(postprocess_labels(lab, largest_liver=False, tumour_in_liver=False), lab)
    only_tumour_rule = postprocess_labels(lab, largest_liver=False)
    assert only_tumour_rule[7:9, 25:28, 2:5].max() == 0 and only_tumour_rule[3, 21, 21] == 2
    assert lab[8, 26, 3] == 2  # input untouched
    assert not postprocess_labels(np.zeros((4, 5, 6), np.uint8)).any()


def test_segment_postprocess_switch():
    hu, labels = _phantom((12, 32, 32))
    hu[1:3, 1:4, 1:4] = 60.0  # a separate small "liver" blob
    on = segment(hu, (1, 1, 1), ThresholdNet(), IDENTITY, window=(8, 16, 16))
    off = segment(hu, (1, 1, 1), ThresholdNet(), IDENTITY, window=(8, 16, 16), postprocess=False)
    np.testing.assert_array_equal(on, labels)
    assert off[1:3, 1:4, 1:4].min() == 1


# ----------------------------------------------------------------------------------------- devices


def test_select_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if (
        not torch.cuda.is_available()
        and getattr(torch.backends, "mps", None)
        and torch.backends.mps.is_available()
    ):
        expected = "mps"
    assert select_device("auto").type == expected
    assert select_device(None).type == expected
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        select_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            select_device("cuda")
