"""Whole-volume validation with the inference engine, and the metrics of training patches.

Validation segments each cached validation volume (already in network space) with
`MPUNetCore.inference.segment` — the same sliding window, blending and post-processing that users
get — using an identity `Preprocessing`, and scores it with `MPUNetCore.metrics` in millimetres of
the network grid: every metric of `METRIC_KEYS` per class, averaged over cases, plus Dice global.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from MPUNetCore.inference import InferenceSettings, Preprocessing, segment
from MPUNetCore.metrics import Confusion, DiceAccumulator, overlap_metrics

from .cache import CachedCase
from .config import Config, classes_of
from .metric_keys import DICE_GLOBAL, MEAN_DICE, TRAIN_METRICS, metric_key, val_key

CARD_SETTINGS = ("window", "overlap", "blending", "batch_size")


def card_settings(config: Config) -> InferenceSettings:
    """The settings an exported model card prescribes: the [inference] window, overlap, blending and
    batch size (TTA, post-processing and the device stay the user's choice)."""
    inf = config.inference.to_dict()
    return InferenceSettings.from_dict({k: inf[k] for k in CARD_SETTINGS}, source="config [inference]")


def inference_settings(config: Config, device: Any = "auto") -> InferenceSettings:
    """The settings `evaluate` runs with: the card's, plus the [inference] section's post-processing
    and TTA, on ``device``."""
    inf = config.inference
    return card_settings(config).replace(postprocess=inf.postprocess, tta=inf.tta, device=str(device))


def identity_preprocessing(config: Config) -> Preprocessing:
    """A `Preprocessing` that leaves cached network-space arrays as they are (air pads as -1)."""
    lo, hi = config.preprocessing.hu_window
    scale = config.preprocessing.scale
    return Preprocessing(
        hu_window=(lo / scale, hi / scale), scale=1.0, inplane_factor=1.0, slice_spacing=None
    )


def task_labels(label: np.ndarray, task: str) -> np.ndarray:
    """Reference labels of the task: liver task merges tumour into liver (0/1)."""
    label = np.asarray(label)
    return (label >= 1).astype(np.uint8) if task == "liver" else label.astype(np.uint8)


def validate(
    model: nn.Module,
    cases: Sequence[CachedCase],
    config: Config,
    device: torch.device,
    progress: Optional[Callable[[int, int], None]] = None,
    shard: Tuple[int, int] = (0, 1),
    gather: Optional[Callable[[Dict[str, Any]], List[Dict[str, Any]]]] = None,
) -> Tuple[Dict[str, float], List[Dict[str, Any]]]:
    """Segment every validation case and score it, optionally sharded over DDP processes.

    Args:
        shard: (rank, world): this process segments cases rank, rank + world, ...
        gather: collects every process's `{case: metrics}` (rank order); needed when world > 1.

    Returns:
        (`{"val_<class>_<metric>": mean, "val_<class>_dice_global": ..., "val_mean_dice": ...}`,
        one row per case and class with every metric), identical on every process and equal to
        an unsharded run (the cases are merged back in their original order).
    """
    rank, world = shard
    if world > 1 and gather is None:
        raise ValueError("validate: a sharded validation (world > 1) needs a gather function")
    classes = classes_of(config)
    prep = identity_preprocessing(config)
    # as `evaluate`, but without TTA (that is for `evaluate` only) and in the training precision
    settings = inference_settings(config, device).replace(tta=False, precision=config.train.amp)
    limit = config.inference.max_val_cases or len(cases)
    selected = list(cases[:limit])
    mine, share = DiceAccumulator(classes), selected[rank::world]
    for done, case in enumerate(share, 1):
        image = np.asarray(case.image())
        prediction = segment(image, case.spacing, model, prep, settings)
        reference = task_labels(case.label(), config.data.task)
        mine.add(case.name, prediction, reference, spacing=tuple(reversed(case.spacing)))
        if progress is not None:
            progress(done, len(share))
    scored: Dict[str, Any] = {}
    for part in gather(mine.cases) if gather is not None else [mine.cases]:
        scored.update(part)
    accumulator = DiceAccumulator(classes)
    accumulator.extend({case.name: scored[case.name] for case in selected})
    row: Dict[str, float] = {}
    for name, summary in accumulator.summary().items():
        for key, value in summary.items():
            if key.startswith("mean_"):
                row[metric_key("val", name, key[5:])] = float(value)
        row[metric_key("val", name, DICE_GLOBAL)] = float(summary[DICE_GLOBAL])
    row[val_key(MEAN_DICE)] = float(np.mean([row[metric_key("val", name, "dice")] for name in classes]))
    return row, accumulator.rows()


class PatchConfusion:
    """Confusion counts of the training patches' predictions, per class, summed over an epoch."""

    def __init__(self, classes: Dict[str, Sequence[int]], fuse: str = "mean") -> None:
        self.classes = {name: tuple(labels) for name, labels in classes.items()}
        self.counts = {name: [0, 0, 0, 0] for name in self.classes}
        self.fuse = fuse

    @torch.no_grad()
    def add(self, outputs: Any, target: torch.Tensor) -> None:
        """Add one batch of training logits (a list of deep-supervision outputs, or one tensor).

        The prediction is the network's own: the mean of the heads' softmax (`fuse="mean"`, MPU-Net
        with the released fusion) or the last output (`fuse="last"`: the learned fusion, the U-Net).
        """
        outputs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        if self.fuse == "last":
            outputs = outputs[-1:]
        probs = torch.stack([o.float().softmax(1) for o in outputs]).mean(0)
        prediction = probs.argmax(1)
        for name, labels in self.classes.items():
            pred = _member(prediction, labels)
            ref = _member(target, labels)
            tp = int((pred & ref).sum())
            n_pred, n_ref = int(pred.sum()), int(ref.sum())
            c = self.counts[name]
            c[0] += tp
            c[1] += n_pred - tp
            c[2] += n_ref - tp
            c[3] += pred.numel() - n_pred - n_ref + tp

    def merge(self, other_counts: Dict[str, List[int]]) -> None:
        """Add counts gathered from another process."""
        for name, counts in other_counts.items():
            self.counts[name] = [a + b for a, b in zip(self.counts[name], counts)]

    def metrics(self) -> Dict[str, float]:
        """`{"train_<class>_<metric>": value}` of the summed counts."""
        row = {}
        for name, counts in self.counts.items():
            values = overlap_metrics(Confusion(*counts))
            row.update({metric_key("train", name, key): float(values[key]) for key in TRAIN_METRICS})
        return row


def _member(labels: torch.Tensor, values: Sequence[int]) -> torch.Tensor:
    mask = labels == values[0]
    for v in values[1:]:
        mask |= labels == v
    return mask


def best_value(row: Dict[str, float], metric: str) -> float:
    """The validation value of `train.best_metric` in a metrics row (NaN when absent)."""
    value = row.get(val_key(metric), math.nan)
    return float(value)
