"""Training patches: which case each sample comes from, where it is cropped, how it is augmented.

Reproducibility by construction: the list of samples of an epoch is drawn from a generator seeded
with `(seed, epoch)`, and each sample's crop and augmentation from one seeded with
`(seed, epoch, position)`. So a sample never depends on which process or data-loader worker makes
it, on what came before it, or on whether the run was interrupted: a resumed epoch, a DDP run and
a run with several workers see exactly the same patches.
"""

from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .cache import CachedCase
from .config_sections import AugmentConfig


def epoch_plan(num_cases: int, num_samples: int, seed: int, epoch: int, multiple: int = 1) -> List[int]:
    """Case indices of one epoch: whole shuffled passes over the cases, padded to a multiple.

    Args:
        num_cases: training cases.
        num_samples: samples wanted (0: one per case).
        seed: the experiment seed.
        epoch: the epoch (0-based).
        multiple: the length is rounded up to a multiple of this (world size x batch size), so
            every process gets the same number of full batches.

    Returns:
        The case index of every sample position.
    """
    rng = np.random.default_rng([seed, epoch, 7])
    wanted = num_samples or num_cases
    wanted = int(math.ceil(wanted / multiple) * multiple)
    plan: List[int] = []
    while len(plan) < wanted:
        plan.extend(int(i) for i in rng.permutation(num_cases))
    return plan[:wanted]


class PatchSampler:
    """Random patches of cached cases with flips, small in-plane rotations and intensity changes.

    Args:
        cases: the cached training cases.
        patch: (D, H, W) in network voxels.
        task: "liver" (labels become 0/1) or "liver_tumor" (0/1/2).
        augment: the config's [augment] section.
        foreground_prob: probability that a patch is centred on a liver (or tumour) voxel.
        pad_value: image value of air, used where a case is smaller than the patch.
        seed: the experiment seed.
        tumor_prob: for "liver_tumor", the share of foreground-centred patches that are centred on
            a tumour voxel (when the case has one) rather than on a liver voxel.
    """

    def __init__(
        self,
        cases: Sequence[CachedCase],
        patch: Sequence[int],
        task: str,
        augment: AugmentConfig,
        foreground_prob: float,
        pad_value: float,
        seed: int,
        tumor_prob: float = 0.5,
    ) -> None:
        self.cases = list(cases)
        self.tumor_prob = float(tumor_prob)
        self.patch = tuple(int(p) for p in patch)
        self.task, self.augment = task, augment
        self.foreground_prob, self.pad_value, self.seed = float(foreground_prob), float(pad_value), int(seed)
        self._arrays: Dict[int, Tuple[np.ndarray, np.ndarray, Dict[str, np.ndarray]]] = {}

    def _case(self, index: int) -> Tuple[np.ndarray, np.ndarray, Dict[str, np.ndarray]]:
        if index not in self._arrays:  # opened lazily: each data-loader worker maps its own copy
            case = self.cases[index]
            self._arrays[index] = (case.image(), case.label(), case.foreground())
        return self._arrays[index]

    def sample(self, epoch: int, position: int, case_index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The patch at `position` of `epoch`: image (1, D, H, W) float32 and labels (D, H, W) int64."""
        rng = np.random.default_rng([self.seed, epoch, position])
        image, label, fg = self._case(case_index)
        start = self._start(rng, image.shape, fg)
        img, lab = self._crop(image, label, start)
        if self.task == "liver":
            lab = (lab >= 1).astype(np.uint8)
        img, lab = self._flip(rng, img, lab)
        x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
        y = torch.from_numpy(np.ascontiguousarray(lab)).to(torch.int64)
        x, y = self._rotate(rng, x, y)
        x = self._intensity(rng, x)
        return x[None], y

    def _start(self, rng: np.random.Generator, shape: Sequence[int], fg: Dict[str, np.ndarray]) -> List[int]:
        points = fg["liver"]
        if self.task == "liver_tumor" and len(fg["tumor"]) and rng.random() < self.tumor_prob:
            points = fg["tumor"]
        if len(points) and rng.random() < self.foreground_prob:
            centre = points[rng.integers(len(points))]
        else:
            centre = [rng.integers(s) for s in shape]
        start = []
        for c, size, p in zip(centre, shape, self.patch):
            jitter = int(rng.integers(-(p // 4), p // 4 + 1))  # the foreground voxel need not be central
            begin = int(c) - p // 2 + jitter
            start.append(min(max(begin, 0), size - p) if size >= p else -int(rng.integers(p - size + 1)))
        return start

    def _crop(
        self, image: np.ndarray, label: np.ndarray, start: Sequence[int]
    ) -> Tuple[np.ndarray, np.ndarray]:
        """The patch at `start`; beyond the case, edge slices along z and air in-plane.

        A scan ends along z because its range ended, not the patient: inference pads its windows with
        the edge slices (``sliding_window.pad_to_window``), so training does the same, labels included
        (they describe the repeated image). Air above and below would teach a thin scan to look like a
        body a few millimetres thick.
        """
        img = np.full(self.patch, self.pad_value, dtype=np.float32)
        lab = np.zeros(self.patch, dtype=np.uint8)
        z = np.clip(np.arange(start[0], start[0] + self.patch[0]), 0, image.shape[0] - 1)
        src, dst = [z], [slice(None)]
        for s, size, p in zip(start[1:], image.shape[1:], self.patch[1:]):
            lo, hi = max(s, 0), min(s + p, size)
            src.append(slice(lo, hi))
            dst.append(slice(lo - s, hi - s))
        img[tuple(dst)] = image[tuple(src)]  # one index array (z), slices in-plane: no np.ix_ grid
        lab[tuple(dst)] = label[tuple(src)]
        return img, lab

    def _flip(
        self, rng: np.random.Generator, img: np.ndarray, lab: np.ndarray
    ) -> Tuple[np.ndarray, np.ndarray]:
        for axis in self.augment.flip_axes:
            if rng.random() < self.augment.flip_prob:
                img, lab = np.flip(img, axis), np.flip(lab, axis)
        return img, lab

    def _rotate(
        self, rng: np.random.Generator, x: torch.Tensor, y: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        degrees = self.augment.rotate_degrees
        if degrees <= 0 or rng.random() >= self.augment.rotate_prob:
            return x, y
        angle = math.radians(rng.uniform(-degrees, degrees))
        d, h, w = x.shape
        cos, sin = math.cos(angle), math.sin(angle)
        # Rotation in voxel units about the patch centre, expressed in normalised grid coordinates.
        theta = torch.tensor(
            [[[cos, -sin * h / w, 0.0, 0.0], [sin * w / h, cos, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]]
        )
        grid = F.affine_grid(theta, [1, 1, d, h, w], align_corners=False)
        x = F.grid_sample(x[None, None], grid, mode="bilinear", padding_mode="border", align_corners=False)[
            0, 0
        ]
        y = F.grid_sample(
            y[None, None].float(), grid, mode="nearest", padding_mode="border", align_corners=False
        )
        return x, y[0, 0].round().to(torch.int64)

    def _intensity(self, rng: np.random.Generator, x: torch.Tensor) -> torch.Tensor:
        aug = self.augment
        if rng.random() >= aug.intensity_prob:
            return x
        scale = 1.0 + rng.uniform(-aug.intensity_scale, aug.intensity_scale)
        shift = rng.uniform(-aug.intensity_shift, aug.intensity_shift)
        x = x * scale + shift
        if aug.noise_std > 0:
            std = rng.uniform(0.0, aug.noise_std)
            noise = rng.standard_normal(tuple(x.shape), dtype=np.float32)
            x = x + torch.from_numpy(noise) * std
        return x


class EpochPatches(Dataset):
    """The patches of one epoch that one process trains on (positions `rank`, `rank + world`, ...)."""

    def __init__(
        self, sampler: PatchSampler, epoch: int, plan: Sequence[int], rank: int = 0, world: int = 1
    ) -> None:
        self.sampler, self.epoch = sampler, epoch
        self.items = [(pos, plan[pos]) for pos in range(rank, len(plan), world)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        position, case_index = self.items[index]
        return self.sampler.sample(self.epoch, position, case_index)
