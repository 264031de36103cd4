"""The MPU-Net hybrid loss (paper section 3.4, eq. 19): Tversky + lambda * deep-supervised cross-entropy.

Reading of eq. 19 implemented here:

* The Tversky term carries no output index: it is computed ONCE, on the network's prediction. By
  default (``tversky_on="mean"``) that is the mean of the outputs' softmax probabilities, which is
  exactly MPU-Net's fused prediction (eq. 18; the released model averages its four heads' softmax).
  ``"last"`` uses the last output only (the U-Net baseline predicts with its last head), ``"each"``
  sums one Tversky term per output (the structure of the released training loop).
* alpha weights false positives and beta false negatives (in eq. 19, alpha multiplies
  sum P_pos * G_neg and beta sum P_neg * G_pos), 0.3 / 0.7 by default, so missed voxels cost more.
* The cross-entropy term is summed over the deep-supervision outputs ``m`` and scaled by lambda
  (``ce_weight``). Eq. 19 writes a per-class binary cross-entropy with a typo (``log(1 - log P)``) and
  the text calls it a special case of multi-class cross-entropy; we use the multi-class
  cross-entropy of the logits (log-softmax, ``F.cross_entropy``), averaged over voxels rather than
  summed (a sum would scale with the volume size), optionally class-balanced ([91]).
* Everything is computed from LOGITS: softmax for Tversky, log-softmax for the cross-entropy. (The
  released code applied a sigmoid to softmax outputs, squashing them into [0.5, 0.73]; not here.)
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["HybridLoss", "tversky_loss", "balanced_class_weights", "labels_from_target"]

Outputs = Union[torch.Tensor, Sequence[torch.Tensor]]
ClassWeights = Union[None, str, Sequence[float], torch.Tensor]
_TVERSKY_ON = ("mean", "last", "each")


def labels_from_target(target: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Convert a target to an integer label map that matches a prediction.

    Args:
        target: a label map ``(B, *spatial)`` or ``(B, 1, *spatial)`` (integer, bool, or float with
            integral values), or a one-hot map ``(B, C, *spatial)`` with values 0/1 summing to 1.
        reference: the prediction ``(B, C, *spatial)`` the target belongs to (logits or probabilities).

    Returns:
        A ``torch.long`` label map ``(B, *spatial)`` on the target's device, values in ``[0, C)``.

    Raises:
        ValueError: if the shapes do not match, a label is outside ``[0, C)`` or a one-hot map is not
            one-hot.
    """
    if not isinstance(target, torch.Tensor):
        raise ValueError(f"target must be a torch.Tensor, got {type(target).__name__}.")
    num_classes = reference.shape[1]
    batch_spatial = (reference.shape[0], *reference.shape[2:])
    if target.ndim == reference.ndim and target.shape[1] == 1:
        target = target[:, 0]
    if target.ndim == reference.ndim:
        if tuple(target.shape) != tuple(reference.shape):
            raise ValueError(
                f"One-hot target shape {tuple(target.shape)} does not match the prediction "
                f"{tuple(reference.shape)}: give a (B, {num_classes}, *spatial) one-hot map or a "
                f"(B, *spatial) label map with values 0..{num_classes - 1}."
            )
        values_ok = bool(((target == 0) | (target == 1)).all())
        if not values_ok or not bool((target.sum(dim=1) == 1).all()):
            raise ValueError(
                "A target with one channel per class must be one-hot (values 0/1, exactly one 1 per "
                "voxel); soft labels are not supported."
            )
        return target.long().argmax(dim=1)
    if target.ndim != reference.ndim - 1 or tuple(target.shape) != batch_spatial:
        raise ValueError(
            f"Target shape {tuple(target.shape)} does not match the prediction {tuple(reference.shape)}: "
            f"expected a label map {batch_spatial}, (B, 1, *spatial) or a one-hot map "
            f"{tuple(reference.shape)}."
        )
    if target.is_floating_point():
        if not bool((target == target.round()).all()):
            raise ValueError("A floating-point label map must hold integral class indices.")
    elif target.is_complex():
        raise ValueError("A label map must be integer, bool or integral float, not complex.")
    labels = target.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"Target labels span {int(labels.min())}..{int(labels.max())} but the prediction has "
            f"{num_classes} channels (classes 0..{num_classes - 1}); check out_channels or the labels."
        )
    return labels


def balanced_class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency class weights ``N / (C * n_c)`` of a label map (classes absent get 0).

    Args:
        labels: integer label map, any shape, values in ``[0, num_classes)``.
        num_classes: number of classes C.

    Returns:
        A float tensor of shape ``(num_classes,)`` on the labels' device.
    """
    counts = torch.bincount(labels.reshape(-1), minlength=num_classes).to(torch.float64)
    weights = torch.where(counts > 0, labels.numel() / (num_classes * counts.clamp(min=1)), 0.0)
    return weights.float()


def _tversky_from_probabilities(
    probs: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    beta: float,
    include_background: bool,
    smooth: float,
    batch: bool,
) -> torch.Tensor:
    one_hot = F.one_hot(labels, probs.shape[1]).movedim(-1, 1).to(probs.dtype)
    if not include_background:
        probs, one_hot = probs[:, 1:], one_hot[:, 1:]
    dims = tuple(range(2, probs.ndim))
    if batch:
        dims = (0, *dims)
    tp = (probs * one_hot).sum(dims)
    fp = (probs * (1 - one_hot)).sum(dims)
    fn = ((1 - probs) * one_hot).sum(dims)
    index = (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)
    return (1 - index).mean()


def _check_tversky_args(alpha: float, beta: float, smooth: float) -> None:
    if alpha < 0 or beta < 0 or alpha + beta <= 0:
        raise ValueError(f"alpha and beta must be >= 0 and not both 0, got alpha={alpha}, beta={beta}.")
    if smooth < 0:
        raise ValueError(f"smooth must be >= 0, got {smooth}.")


def tversky_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 0.3,
    beta: float = 0.7,
    include_background: bool = False,
    smooth: float = 1e-5,
    batch: bool = False,
    softmax: bool = True,
) -> torch.Tensor:
    """Tversky loss ``1 - (TP + s) / (TP + alpha FP + beta FN + s)``, averaged over classes and samples.

    Same definition as MONAI's ``TverskyLoss(softmax=..., smooth_nr=s, smooth_dr=s)``.

    Args:
        input: logits ``(B, C, *spatial)`` (or probabilities with ``softmax=False``), C >= 2.
        target: label map ``(B, *spatial)`` / ``(B, 1, *spatial)`` or one-hot ``(B, C, *spatial)``.
        alpha: weight of false positives.
        beta: weight of false negatives.
        include_background: if False, channel 0 (background) is left out of the average.
        smooth: added to numerator and denominator (an empty class predicted empty costs 0).
        batch: if True, sum TP/FP/FN over the batch before the ratio (one index per class).
        softmax: if True, ``input`` holds logits and a softmax over channels is applied.

    Returns:
        Scalar loss tensor.
    """
    _check_tversky_args(alpha, beta, smooth)
    _check_prediction(input, "input")
    labels = labels_from_target(target, input).to(input.device)
    probs = torch.softmax(input, dim=1) if softmax else input
    return _tversky_from_probabilities(probs, labels, alpha, beta, include_background, smooth, batch)


def _check_prediction(tensor: torch.Tensor, name: str) -> None:
    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor of logits (B, C, *spatial).")
    if tensor.ndim < 3 or tensor.shape[1] < 2:
        raise ValueError(
            f"{name} must be (B, C, *spatial) with C >= 2 classes (background included), "
            f"got shape {tuple(tensor.shape)}."
        )


class HybridLoss(nn.Module):
    """MPU-Net's hybrid loss (eq. 19): Tversky on the prediction + lambda * sum of per-output cross-entropy.

    ``loss = T(prediction) + ce_weight * sum_m w_m * CE(outputs[m], target)``, where the prediction is
    chosen by ``tversky_on`` (see the module docstring for this reading of eq. 19) and ``w_m`` are
    ``output_weights`` (all 1 by default, as in eq. 19).

    Args:
        alpha: Tversky weight of false positives (0.3 in the paper and the released code).
        beta: Tversky weight of false negatives (0.7).
        ce_weight: lambda, the weight of the cross-entropy term.
        class_weights: cross-entropy class weights: None (unweighted), ``"balanced"`` (inverse class
            frequency ``N / (C * n_c)`` of each batch's target) or one weight per class.
        include_background: include the background channel in the Tversky average. False by default:
            for two classes this is eq. 19's Tversky index of the foreground.
        smooth: Tversky smoothing added to numerator and denominator.
        batch: compute the Tversky index over the whole batch instead of per sample.
        tversky_on: ``"mean"`` (mean of the outputs' softmax: MPU-Net's fused prediction), ``"last"``
            (last output: the U-Net baseline's prediction) or ``"each"`` (one term per output,
            weighted by ``output_weights``). Irrelevant for a single output tensor.
        output_weights: optional weight per deep-supervision output (same order as the outputs).

    Example::

        >>> loss_fn = HybridLoss(class_weights="balanced")
        >>> logits = [torch.randn(1, 3, 8, 16, 16, requires_grad=True) for _ in range(4)]
        >>> labels = torch.randint(0, 3, (1, 8, 16, 16))
        >>> loss_fn(logits, labels).backward()
    """

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.7,
        ce_weight: float = 1.0,
        class_weights: ClassWeights = None,
        include_background: bool = False,
        smooth: float = 1e-5,
        batch: bool = False,
        tversky_on: str = "mean",
        output_weights: Optional[Sequence[float]] = None,
    ) -> None:
        super().__init__()
        _check_tversky_args(alpha, beta, smooth)
        if ce_weight < 0:
            raise ValueError(f"ce_weight (lambda) must be >= 0, got {ce_weight}.")
        if tversky_on not in _TVERSKY_ON:
            raise ValueError(f"tversky_on must be one of {_TVERSKY_ON}, got {tversky_on!r}.")
        if isinstance(class_weights, str) and class_weights != "balanced":
            raise ValueError(f"class_weights must be None, 'balanced' or a sequence, got {class_weights!r}.")
        if class_weights is not None and not isinstance(class_weights, str):
            weights = torch.as_tensor(class_weights, dtype=torch.float32).reshape(-1)
            if weights.numel() == 0 or bool((weights < 0).any()) or not bool(torch.isfinite(weights).all()):
                raise ValueError(f"class_weights must be finite and >= 0, got {class_weights!r}.")
            self.register_buffer("_fixed_class_weights", weights, persistent=False)
        else:
            self._fixed_class_weights = None
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.ce_weight = float(ce_weight)
        self.class_weights = class_weights
        self.include_background = bool(include_background)
        self.smooth = float(smooth)
        self.batch = bool(batch)
        self.tversky_on = tversky_on
        self.output_weights = None if output_weights is None else [float(w) for w in output_weights]

    def _ce_class_weights(self, labels: torch.Tensor, logits: torch.Tensor) -> Optional[torch.Tensor]:
        num_classes = logits.shape[1]
        if self.class_weights is None:
            return None
        if isinstance(self.class_weights, str):
            weights = balanced_class_weights(labels, num_classes)
        else:
            weights = self._fixed_class_weights
            if weights.numel() != num_classes:
                raise ValueError(
                    f"class_weights has {weights.numel()} entries but the outputs have {num_classes} "
                    f"classes; give one weight per class (background first)."
                )
        return weights.to(device=logits.device, dtype=logits.dtype)

    def components(self, outputs: Outputs, target: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The loss and its two terms, for logging.

        Args:
            outputs: logits ``(B, C, *spatial)``, or a list/tuple of them (deep supervision, all of the
                same shape, e.g. deepest first with the final prediction last).
            target: label map ``(B, *spatial)`` / ``(B, 1, *spatial)`` or one-hot ``(B, C, *spatial)``.

        Returns:
            ``{"tversky": ..., "ce": ..., "loss": tversky + ce_weight * ce}`` (scalar tensors; ``"ce"`` is
            the weighted sum over outputs before lambda).
        """
        logits = self._as_list(outputs)
        labels = labels_from_target(target, logits[0]).to(logits[0].device)
        weights = self.output_weights or [1.0] * len(logits)
        if len(weights) != len(logits):
            raise ValueError(f"output_weights has {len(weights)} entries for {len(logits)} outputs.")

        def tversky(probs: torch.Tensor) -> torch.Tensor:
            return _tversky_from_probabilities(
                probs, labels, self.alpha, self.beta, self.include_background, self.smooth, self.batch
            )

        if self.tversky_on == "each":
            tv = sum(w * tversky(torch.softmax(x, dim=1)) for w, x in zip(weights, logits))
        elif self.tversky_on == "last":
            tv = tversky(torch.softmax(logits[-1], dim=1))
        else:
            tv = tversky(torch.stack([torch.softmax(x, dim=1) for x in logits]).mean(0))

        class_weights = self._ce_class_weights(labels, logits[0])
        ce = sum(w * F.cross_entropy(x, labels, weight=class_weights) for w, x in zip(weights, logits))
        return {"tversky": tv, "ce": ce, "loss": tv + self.ce_weight * ce}

    def forward(self, outputs: Outputs, target: torch.Tensor) -> torch.Tensor:
        """Compute the hybrid loss; see :meth:`components` for the arguments."""
        return self.components(outputs, target)["loss"]

    @staticmethod
    def _as_list(outputs: Outputs) -> List[torch.Tensor]:
        logits = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        if not logits:
            raise ValueError("outputs is empty: give a logits tensor or a non-empty list of them.")
        for i, x in enumerate(logits):
            _check_prediction(x, f"outputs[{i}]")
            if x.shape != logits[0].shape:
                raise ValueError(
                    f"All deep-supervision outputs must have the same shape (upsample the heads to the "
                    f"input size), got {tuple(logits[0].shape)} and {tuple(x.shape)} at index {i}."
                )
        return logits
