"""Metric column names: one definition shared by validation, evaluation, reports and plots."""

from __future__ import annotations

import pytest
import torch

from MPUNetCore.metrics import METRIC_KEYS
from Training.metric_keys import LABELS, LITS_METRICS, PAPER_METRICS, TRAIN_METRICS, metric_key
from Training.validation import PatchConfusion, best_value


def test_a_misspelt_metric_or_part_fails_naming_the_valid_names() -> None:
    assert metric_key("val", "liver", "dice") == "val_liver_dice"
    with pytest.raises(ValueError, match="unknown metric 'dcie': use one of dice, iou"):
        metric_key("val", "liver", "dcie")
    with pytest.raises(ValueError, match="unknown part 'test'"):
        metric_key("test", "liver", "dice")


def test_every_named_metric_is_computed_by_mpunetcore_and_has_a_label() -> None:
    for metric in (*PAPER_METRICS, *LITS_METRICS, *TRAIN_METRICS):
        assert metric in METRIC_KEYS and metric in LABELS


def test_patch_metrics_are_written_under_the_shared_names_with_hand_computed_values() -> None:
    confusion = PatchConfusion({"liver": (1, 2), "tumor": (2,)}, fuse="last")
    target = torch.tensor([[[[0, 1, 1, 2]]]])  # (B, z, y, x)
    logits = torch.full((1, 3, 1, 1, 4), -10.0)
    for x, label in enumerate([0, 1, 2, 2]):  # prediction 0, 1, 2, 2
        logits[0, label, 0, 0, x] = 10.0
    confusion.add(logits, target)
    row = confusion.metrics()
    assert set(row) == {metric_key("train", c, m) for c in ("liver", "tumor") for m in TRAIN_METRICS}
    # liver (labels 1, 2): predicted {1, 2, 3}, reference {1, 2, 3} -> Dice 1; tumour: {2, 3} vs {3} -> 2/3
    assert row[metric_key("train", "liver", "dice")] == pytest.approx(1.0)
    assert row[metric_key("train", "tumor", "dice")] == pytest.approx(2 * 1 / (2 + 1))
    assert best_value({"val_liver_dice": 0.5}, "liver_dice") == 0.5
