"""Image formation: tissue map -> HU with texture -> PSF and slice profile -> noise -> output grid.

The expensive steps run on the simulation grid, which is aligned with the output grid with an integer
step ratio in-plane (and along z either an integer step ratio or ``m`` simulation slices per output slice,
so that a thick slice averages thin ones). The output (up to 512x512xN) is then reached by strided linear
interpolation in int16. Noise is added on the simulation grid and smoothed in-plane, so its grain is one
to two output pixels, as in reconstructed CT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

from ..phantom_shapes import blur3
from .appearance import label_lut
from .geometry import Scanner
from .upsample import upsample


@dataclass
class Sampling:
    """How the simulation grid maps onto the output grid.

    Attributes:
        size: output size ``(z, y, x)``.
        factor_xy: output pixels per simulation step in-plane.
        factor_z: output slices per simulation step (1 when ``sub_z`` > 1).
        sub_z: simulation slices per output slice (1 when ``factor_z`` > 1).
    """

    size: Tuple[int, int, int]
    factor_xy: int
    factor_z: int
    sub_z: int

    def to_output(self, array: np.ndarray) -> np.ndarray:
        """Sample a simulation-grid array onto the output grid (linear; integers stay integers)."""
        if self.sub_z > 1:
            array = array[:: self.sub_z]
        array = upsample(array, 0, self.factor_z, self.size[0])
        array = upsample(array, 1, self.factor_xy, self.size[1])
        return upsample(array, 2, self.factor_xy, self.size[2])

    def nearest(self, array: np.ndarray) -> np.ndarray:
        """Nearest-neighbour sampling onto the output grid (tissue codes)."""
        index = [np.arange(n) for n in self.size]
        z = index[0] * self.sub_z if self.sub_z > 1 else (index[0] + self.factor_z // 2) // self.factor_z
        y = (index[1] + self.factor_xy // 2) // self.factor_xy
        x = (index[2] + self.factor_xy // 2) // self.factor_xy
        return array[np.ix_(z, y, x)]


def gaussian_blur(array: np.ndarray, sigma_mm: Sequence[float], spacing: Sequence[float]) -> None:
    """In-place approximate Gaussian blur (repeated 3-tap binomial passes), sigma per axis (x, y, z) mm."""
    for axis, (sig, sp) in zip((2, 1, 0), zip(sigma_mm, spacing)):
        variance = (sig / sp) ** 2
        if variance < 0.02 or array.shape[axis] < 2:
            continue
        passes = int(np.ceil(variance / 0.5))
        weights = [0.0, 0.0, 0.0]
        weights[axis] = variance / (2 * passes)
        for _ in range(passes):
            blur3(array, weights)


def smooth_field(rng: np.random.Generator, shape: Sequence[int], step: int = 6) -> np.ndarray:
    """A smooth random field of about unit amplitude: coarse normal noise upsampled by ``step``."""
    coarse = rng.standard_normal(tuple(-(-n // step) + 1 for n in shape)).astype(np.float32)
    for axis, n in enumerate(shape):
        coarse = upsample(coarse, axis, step, n)
    return coarse


def render(
    rng: np.random.Generator,
    tissue: np.ndarray,
    spacing: Sequence[float],
    hu_mean: np.ndarray,
    hu_texture: np.ndarray,
    scanner: Scanner,
    sampling: Sampling,
) -> Tuple[np.ndarray, np.ndarray]:
    """The CT (int16 HU) and LiTS label map (uint8) on the output grid.

    Args:
        rng: random generator (noise and texture).
        tissue: tissue codes on the (output-aligned) simulation grid ``(z, y, x)``.
        spacing: simulation grid spacing (x, y, z) mm.
        hu_mean: HU per tissue code.
        hu_texture: texture amplitude (HU) per tissue code.
        scanner: the protocol (thickness, PSF, noise).
        sampling: the simulation -> output mapping.

    Returns:
        ``(hu, label)`` arrays ``(z, y, x)``.
    """
    hu = hu_mean[tissue]
    hu += hu_texture[tissue] * smooth_field(rng, tissue.shape)
    profile = scanner.thickness / 2.355  # slice sensitivity profile as a Gaussian of that FWHM
    psf = scanner.psf_fwhm / 2.355
    gaussian_blur(hu, (psf, psf, profile), spacing)
    # white noise smoothed in-plane to a grain of about one simulation voxel (uniform noise: fast,
    # and Gaussian enough once smoothed), averaged over the slice profile like the signal
    noise = rng.random(tissue.shape, dtype=np.float32)
    noise -= np.float32(0.5)
    gaussian_blur(noise, (0.6 * spacing[0], 0.6 * spacing[1], 0.5 * profile), spacing)
    noise *= np.float32(scanner.noise_sd / max(float(noise[::2, ::4, ::4].std()), 1e-6))
    hu += noise
    np.clip(hu, -1024, 3071, out=hu)
    image = sampling.to_output(np.rint(hu).astype(np.int16))
    if scanner.outside_value is not None:  # outside the reconstruction circle
        ny, nx = image.shape[1:]
        yy, xx = np.ogrid[:ny, :nx]
        outside = ((yy - (ny - 1) / 2) / (ny / 2)) ** 2 + ((xx - (nx - 1) / 2) / (nx / 2)) ** 2 > 1
        image[:, outside] = np.int16(scanner.outside_value)
    coded = sampling.to_output((label_lut()[tissue] * np.uint8(50)).astype(np.int16))
    label = (coded >= 25).astype(np.uint8)
    label += coded >= 75
    return image, label
