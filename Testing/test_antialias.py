"""Anti-aliased downsampling into the network grid (``Preprocessing(antialias=True)``).

References: scipy's ``gaussian_filter1d`` for the blur, the skimage rule for its width, and properties
(a constant stays constant, white noise of a fine-pixel scan loses most of its variance, the option
off changes nothing and leaves cards as they were).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from MPUNetCore.inference import Preprocessing, to_network_space
from MPUNetCore.inference.resampling import antialias_sigma, gaussian_blur_axis, resample_to_shape


def test_blur_matches_scipy_along_each_axis() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 9, 11)).astype(np.float32)
    for dim in (1, 2, 3):
        for sigma in (0.4, 1.0, 1.85):
            ours = gaussian_blur_axis(torch.from_numpy(x), sigma, dim).numpy()
            ref = ndimage.gaussian_filter1d(x, sigma, axis=dim, mode="nearest", truncate=3.0)
            np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert gaussian_blur_axis(torch.from_numpy(x), 0.0, 1).data_ptr() == torch.from_numpy(x).data_ptr()


def test_sigma_rule_blurs_only_axes_that_get_coarser() -> None:
    assert antialias_sigma(3.0) == 1.0  # skimage: (factor - 1) / 2
    assert antialias_sigma(1.0) == 0.0 and antialias_sigma(0.5) == 0.0
    ramp = torch.arange(16 * 8 * 8, dtype=torch.float32).reshape(16, 8, 8)
    # upsampling in-plane and keeping z: no blur, the same as without the option
    torch.testing.assert_close(
        resample_to_shape(ramp, (16, 16, 16), antialias=True), resample_to_shape(ramp, (16, 16, 16))
    )


def test_constant_stays_constant_and_fine_pixel_noise_averages_out() -> None:
    """0.8 mm pixels and 1 mm slices onto a 3 mm grid: white noise keeps nearly all of its standard
    deviation when sampled, and loses most of it when averaged first (a 3 mm reconstruction of the
    same scan would have about 1/(3.75 x 3.75 x 3)^0.5 ~ 0.15 of it)."""
    prep = Preprocessing(hu_window=(-1000, 1000), scale=1.0, target_spacing=(3.0, 3.0), slice_spacing=3.0)
    smooth = Preprocessing(**{**prep.to_dict(), "antialias": True})
    constant = np.full((30, 96, 96), 40.0, dtype=np.float32)
    image, _ = to_network_space(constant, (0.8, 0.8, 1.0), smooth)
    np.testing.assert_allclose(image.numpy(), 40.0, atol=1e-3)
    noise = np.random.default_rng(1).normal(0.0, 50.0, size=(60, 192, 192)).astype(np.float32)
    sampled = to_network_space(noise, (0.8, 0.8, 1.0), prep)[0][2:-2, 4:-4, 4:-4].std()
    averaged = to_network_space(noise, (0.8, 0.8, 1.0), smooth)[0][2:-2, 4:-4, 4:-4].std()
    assert sampled > 0.5 * 50.0
    assert averaged < 0.3 * 50.0 and averaged < 0.4 * sampled


def test_option_off_is_the_old_preprocessing_and_cards_keep_their_keys() -> None:
    prep = Preprocessing(target_spacing=(3.0, 3.0), slice_spacing=3.0)
    assert "antialias" not in prep.to_dict()  # cards and cache keys made without it are unchanged
    on = Preprocessing.from_dict({**prep.to_dict(), "antialias": True})
    assert on.antialias and on.to_dict()["antialias"] is True
    assert Preprocessing.from_dict(on.to_dict()) == on
    with pytest.raises(ValueError, match="antialias"):
        Preprocessing(antialias="yes")  # type: ignore[arg-type]


def test_training_config_carries_the_option_to_the_cache_and_the_card(tmp_path) -> None:
    from Training.cache import preprocessing_from_config
    from Training.config import load_config

    config = tmp_path / "c.toml"
    config.write_text(
        '[data]\nroot = "x"\n'
        "[preprocessing]\ntarget_spacing = [3.0, 3.0]\nslice_spacing = 3.0\nantialias = true\n"
    )
    assert preprocessing_from_config(load_config(config)).antialias is True
