"""Random-number state of a training process: seeded per epoch, saved and restored for an exact resume."""

from __future__ import annotations

import random
from typing import Any, Dict

import numpy as np
import torch


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed python, numpy and torch for one epoch of one process."""
    value = int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])
    random.seed(value)
    np.random.seed(value)  # noqa: NPY002 - the global state, for code that uses it
    torch.manual_seed(value)


def rng_states() -> Dict[str, Any]:
    """The python/numpy/torch RNG states as plain data (loadable with `weights_only=True`)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    states = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Dict[str, Any]) -> None:
    """Restore what `rng_states` returned."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss_value = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss_value))  # noqa: NPY002
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
