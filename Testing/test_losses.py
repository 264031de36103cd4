"""Tests for the hybrid Tversky + cross-entropy loss (MPUNetCore/losses.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai.losses import TverskyLoss

from MPUNetCore.losses import HybridLoss, balanced_class_weights, labels_from_target, tversky_loss


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _case(num_classes: int = 3, shape=(2, 6, 8, 10), n_outputs: int = 1, dtype=torch.float32):
    logits = [torch.randn(shape[0], num_classes, *shape[1:], dtype=dtype) for _ in range(n_outputs)]
    labels = torch.randint(0, num_classes, shape)
    return logits, labels


def _one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return F.one_hot(labels, num_classes).movedim(-1, 1).float()


@pytest.mark.parametrize("num_classes", [2, 3])
@pytest.mark.parametrize("include_background", [False, True])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("smooth", [1e-5, 1.0])
def test_tversky_matches_monai(num_classes, include_background, batch, smooth):
    (logits,), labels = _case(num_classes)
    monai = TverskyLoss(
        include_background=include_background,
        to_onehot_y=True,
        softmax=True,
        alpha=0.3,
        beta=0.7,
        smooth_nr=smooth,
        smooth_dr=smooth,
        batch=batch,
    )
    expected = monai(logits, labels[:, None])
    got = tversky_loss(
        logits, labels, alpha=0.3, beta=0.7, include_background=include_background, smooth=smooth, batch=batch
    )
    torch.testing.assert_close(got, expected)


def test_alpha_weights_false_positives_and_beta_false_negatives():
    # Binary, foreground only: 4 true foreground voxels; prediction marks 2 of them and 6 background ones.
    labels = torch.zeros(1, 1, 16, dtype=torch.long)
    labels[..., :4] = 1
    pred_fg = torch.zeros(1, 1, 16)
    pred_fg[..., 2:10] = 1.0  # TP = 2, FP = 6, FN = 2
    probs = torch.cat([1 - pred_fg, pred_fg], dim=1)
    got = tversky_loss(probs, labels, alpha=0.3, beta=0.7, smooth=0.0, softmax=False)
    assert got.item() == pytest.approx(1 - 2 / (2 + 0.3 * 6 + 0.7 * 2))
    swapped = tversky_loss(probs, labels, alpha=0.7, beta=0.3, smooth=0.0, softmax=False)
    assert swapped.item() == pytest.approx(1 - 2 / (2 + 0.7 * 6 + 0.3 * 2))


@pytest.mark.parametrize("num_classes", [2, 3])
def test_single_output_equals_tversky_plus_lambda_cross_entropy(num_classes):
    (logits,), labels = _case(num_classes)
    loss = HybridLoss(ce_weight=0.5)(logits, labels)
    monai = TverskyLoss(include_background=False, to_onehot_y=True, softmax=True, alpha=0.3, beta=0.7)
    expected = monai(logits, labels[:, None]) + 0.5 * F.cross_entropy(logits, labels)
    torch.testing.assert_close(loss, expected)


def test_fixed_class_weights_match_torch_cross_entropy():
    (logits,), labels = _case(3)
    weights = [0.2, 1.0, 5.0]
    terms = HybridLoss(class_weights=weights).components(logits, labels)
    torch.testing.assert_close(terms["ce"], F.cross_entropy(logits, labels, weight=torch.tensor(weights)))


def test_balanced_class_weights_are_inverse_frequency():
    labels = torch.tensor([0] * 12 + [1] * 3 + [2] * 1).reshape(1, 16)
    weights = balanced_class_weights(labels, 4)  # class 3 absent
    torch.testing.assert_close(weights, torch.tensor([16 / (4 * 12), 16 / (4 * 3), 16 / 4, 0.0]))
    logits = torch.randn(1, 4, 16)
    terms = HybridLoss(class_weights="balanced").components(logits, labels)
    torch.testing.assert_close(terms["ce"], F.cross_entropy(logits, labels, weight=weights))
    # Balanced: each present class contributes equally, so the loss is the mean of per-class mean CE.
    per_voxel = F.cross_entropy(logits, labels, reduction="none")[0]
    per_class = torch.stack([per_voxel[labels[0] == c].mean() for c in range(3)])
    torch.testing.assert_close(terms["ce"], per_class.mean())


@pytest.mark.parametrize("class_weights", [None, "balanced", (1.0, 2.0, 3.0)])
def test_label_map_shapes_and_one_hot_give_equal_results(class_weights):
    logits, labels = _case(3, n_outputs=2)
    loss_fn = HybridLoss(class_weights=class_weights)
    reference = loss_fn(logits, labels)
    torch.testing.assert_close(loss_fn(logits, labels[:, None]), reference)
    torch.testing.assert_close(loss_fn(logits, labels.to(torch.uint8)), reference)
    torch.testing.assert_close(loss_fn(logits, labels.float()), reference)
    torch.testing.assert_close(loss_fn(logits, _one_hot(labels, 3)), reference)
    torch.testing.assert_close(loss_fn(logits, _one_hot(labels, 3).bool()), reference)


def test_deep_supervision_list_default_reading():
    logits, labels = _case(3, n_outputs=4)
    terms = HybridLoss(ce_weight=0.7).components(logits, labels)
    fused = torch.stack([torch.softmax(x, 1) for x in logits]).mean(0)
    monai = TverskyLoss(include_background=False, to_onehot_y=True, softmax=False, alpha=0.3, beta=0.7)
    expected_tv = monai(fused, labels[:, None])
    expected_ce = sum(F.cross_entropy(x, labels) for x in logits)
    torch.testing.assert_close(terms["tversky"], expected_tv)
    torch.testing.assert_close(terms["ce"], expected_ce)
    torch.testing.assert_close(terms["loss"], expected_tv + 0.7 * expected_ce)
    # A tuple works as well as a list.
    torch.testing.assert_close(HybridLoss(ce_weight=0.7)(tuple(logits), labels), terms["loss"])


def test_deep_supervision_each_and_last_with_output_weights():
    logits, labels = _case(2, n_outputs=4)
    w = (0.4, 0.4, 0.4, 1.0)  # the released training loop's weighting at the start
    each = HybridLoss(tversky_on="each", output_weights=w)(logits, labels)
    per_output = [HybridLoss()(x, labels) for x in logits]
    torch.testing.assert_close(each, sum(wi * li for wi, li in zip(w, per_output)))
    last = HybridLoss(tversky_on="last").components(logits, labels)
    torch.testing.assert_close(last["tversky"], tversky_loss(logits[-1], labels))
    torch.testing.assert_close(last["ce"], sum(F.cross_entropy(x, labels) for x in logits))


def test_perfect_prediction_gives_near_zero_tversky():
    labels = torch.randint(0, 3, (2, 4, 8, 8))
    logits = 40.0 * (_one_hot(labels, 3) - 0.5)
    assert tversky_loss(logits, labels, include_background=True).item() < 1e-6
    terms = HybridLoss(include_background=True).components([logits, logits], labels)
    assert terms["tversky"].item() < 1e-6 and terms["ce"].item() < 1e-6
    # An absent class predicted absent costs nothing thanks to the smoothing in the numerator.
    labels[:] = 0
    logits = 40.0 * (_one_hot(labels, 3) - 0.5)
    assert tversky_loss(logits, labels).item() < 1e-6


def test_worst_prediction_gives_tversky_one():
    labels = torch.ones(1, 8, 8, dtype=torch.long)
    logits = 40.0 * (_one_hot(torch.zeros_like(labels), 2) - 0.5)
    assert tversky_loss(logits, labels).item() == pytest.approx(1.0, abs=1e-5)


def test_gradcheck_float64():
    logits, labels = _case(3, shape=(1, 2, 3, 2), n_outputs=2, dtype=torch.float64)
    logits = [x.requires_grad_() for x in logits]
    loss_fn = HybridLoss(class_weights="balanced", include_background=True, smooth=1e-3)
    assert torch.autograd.gradcheck(lambda a, b: loss_fn([a, b], labels), tuple(logits))
    each = HybridLoss(tversky_on="each", ce_weight=0.3)
    assert torch.autograd.gradcheck(lambda a, b: each([a, b], labels), tuple(logits))


def test_loss_trains_a_tiny_model_down():
    # Property: gradient descent on the logits reduces the loss and reaches the labels.
    labels = torch.randint(0, 3, (1, 4, 6, 6))
    logits = torch.zeros(1, 3, 4, 6, 6, requires_grad=True)
    loss_fn = HybridLoss(class_weights="balanced")
    opt = torch.optim.Adam([logits], lr=0.5)
    first = loss_fn(logits, labels).item()
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn(logits, labels)
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
    assert torch.equal(logits.argmax(1), labels)


@pytest.mark.parametrize(
    "make_target,match",
    [
        (lambda: torch.randint(0, 3, (2, 6, 8, 9)), "does not match"),
        (lambda: torch.randint(0, 3, (3, 6, 8, 10)), "does not match"),
        (lambda: torch.randint(0, 4, (2, 6, 8, 10)) + 1, "3 channels"),
        (lambda: -torch.ones(2, 6, 8, 10, dtype=torch.long), "3 channels"),
        (lambda: torch.rand(2, 6, 8, 10) * 2, "integral"),
        (lambda: torch.zeros(2, 2, 6, 8, 10), "does not match"),
        (lambda: torch.full((2, 3, 6, 8, 10), 1 / 3), "one-hot"),
        (lambda: torch.ones(2, 3, 6, 8, 10), "one-hot"),
    ],
)
def test_target_mismatch_raises_value_error(make_target, match):
    logits, _ = _case(3)
    with pytest.raises(ValueError, match=match):
        HybridLoss()(logits, make_target())


def test_bad_outputs_and_arguments_raise_value_error():
    logits, labels = _case(3)
    with pytest.raises(ValueError, match="same shape"):
        HybridLoss()([logits[0], logits[0][..., :5]], labels)
    with pytest.raises(ValueError, match="C >= 2"):
        HybridLoss()(torch.randn(2, 1, 6, 8, 10), labels)
    with pytest.raises(ValueError, match="floating-point"):
        HybridLoss()(labels[:, None], labels)
    with pytest.raises(ValueError, match="empty"):
        HybridLoss()([], labels)
    with pytest.raises(ValueError, match="class_weights has 2"):
        HybridLoss(class_weights=(1.0, 2.0))(logits, labels)
    with pytest.raises(ValueError, match="output_weights"):
        HybridLoss(output_weights=(1.0, 1.0))(logits, labels)
    for kwargs in (
        {"alpha": -0.1},
        {"alpha": 0.0, "beta": 0.0},
        {"smooth": -1.0},
        {"ce_weight": -1.0},
        {"class_weights": "inverse"},
        {"class_weights": (1.0, -1.0)},
        {"tversky_on": "first"},
    ):
        with pytest.raises(ValueError):
            HybridLoss(**kwargs)


def test_labels_from_target_returns_long_label_map():
    (logits,), labels = _case(3)
    out = labels_from_target(_one_hot(labels, 3), logits)
    assert out.dtype == torch.long and torch.equal(out, labels)
