"""A scan thinner than the window: padded along z with its edge slices, in-plane with air.

The reference is built independently: ``numpy.pad`` (edge along z, constant -1 in-plane) of the network
image, one direct forward of the model, the padding cropped away.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from MPUNetCore.inference import InferenceSettings, sliding_window_predict
from MPUNetCore.inference.sliding_window import pad_to_window
from Testing.test_inference import TinyConvNet


def _reference(image: np.ndarray, model: torch.nn.Module, window, air: float = -1.0) -> np.ndarray:
    shape = image.shape
    before = [(w - s) // 2 if w > s else 0 for s, w in zip(shape, window)]
    after = [max(w, s) - s - b for s, w, b in zip(shape, window, before)]
    padded = np.pad(image, [(before[0], after[0]), (0, 0), (0, 0)], mode="edge")
    padded = np.pad(padded, [(0, 0), (before[1], after[1]), (before[2], after[2])], constant_values=air)
    with torch.no_grad():
        out = model(torch.from_numpy(padded)[None, None]).numpy()[0]
    crop = tuple(slice(b, b + s) for b, s in zip(before, shape))
    return out[(slice(None), *crop)]


@pytest.mark.parametrize("depth", [1, 3, 7])
def test_thin_scan_windows_see_repeated_edge_slices_and_air_around(depth):
    rng = np.random.default_rng(depth)
    image = rng.uniform(-1, 1, (depth, 20, 12)).astype(np.float32)  # also thinner than the window in-plane
    model = TinyConvNet(seed=3).eval()
    settings = InferenceSettings(window=(16, 24, 16), overlap=0.25, blending="constant")
    got = sliding_window_predict(torch.from_numpy(image), model, settings, pad_value=-1.0).numpy()
    np.testing.assert_allclose(got, _reference(image, model, (16, 24, 16)), rtol=1e-5, atol=1e-6)
    assert got.shape == (3, *image.shape)


def test_pad_to_window_by_hand():
    image = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (C=1, z=2, y=1, x=2)
    out = pad_to_window(image, padded=(5, 3, 2), before=(1, 1, 0), pad_value=-1.0)
    expected = torch.tensor(
        [
            [
                [[-1, -1], [1, 2], [-1, -1]],
                [[-1, -1], [1, 2], [-1, -1]],
                [[-1, -1], [3, 4], [-1, -1]],
                [[-1, -1], [3, 4], [-1, -1]],
                [[-1, -1], [3, 4], [-1, -1]],
            ]
        ],  # fmt: skip
        dtype=torch.float32,
    )
    torch.testing.assert_close(out, expected)


def test_scans_as_deep_as_the_window_are_not_padded_along_z():
    image = torch.arange(16 * 8 * 8, dtype=torch.float32).reshape(1, 16, 8, 8)
    assert torch.equal(pad_to_window(image, (16, 8, 8), (0, 0, 0), -1.0), image)
