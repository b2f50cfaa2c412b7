"""Training losses (cross-entropy or BCE, plus soft Dice) and per-class IoU / Dice metrics.

Targets are class ids (N, H, W) throughout; for the sigmoid activation they are one-hot encoded over all
classes, background included, so both activations train the same number of output channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.errors import ConfigError

__all__ = [
    "Activation",
    "dice_loss",
    "SegmentationLoss",
    "confusion_counts",
    "iou_and_dice_per_class",
]

Activation = Literal["softmax", "sigmoid"]


def _probabilities(logits: torch.Tensor, activation: Activation) -> torch.Tensor:
    if activation == "softmax":
        return logits.softmax(dim=1)
    if activation == "sigmoid":
        return logits.sigmoid()
    raise ConfigError(f"activation {activation!r} is not known; use 'softmax' or 'sigmoid'")


def _one_hot_and_valid(
    target: torch.Tensor, num_classes: int, ignore_index: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot target (N, C, H, W) as float, and the valid-pixel mask (N, 1, H, W) as float."""
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    one_hot = F.one_hot(safe.long(), num_classes).permute(0, 3, 1, 2).float()
    valid_f = valid.unsqueeze(1).float()
    return one_hot * valid_f, valid_f


def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    activation: Activation = "softmax",
    eps: float = 1.0,
    class_weights: torch.Tensor | Sequence[float] | None = None,
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Soft Dice loss: ``1 - weighted mean over classes of (2|X∩Y| + eps) / (|X| + |Y| + eps)``.

    Sums run over the whole batch and all pixels, per class; ``X`` are the predicted probabilities and ``Y``
    the one-hot target. Pixels equal to ``ignore_index`` count in neither.

    Args:
        logits: (N, C, H, W) raw scores.
        target: (N, H, W) class ids.
        activation: "softmax" over classes or "sigmoid" per class.
        eps: smoothing added to numerator and denominator (keeps absent classes at Dice 1).
        class_weights: optional (C,) weights for the mean over classes.
        ignore_index: class id of pixels to leave out.
    """
    num_classes = logits.shape[1]
    probs = _probabilities(logits, activation)
    one_hot, valid = _one_hot_and_valid(target, num_classes, ignore_index)
    probs = probs * valid
    dims = (0, 2, 3)
    intersection = (probs * one_hot).sum(dims)
    cardinality = probs.sum(dims) + one_hot.sum(dims)
    dice = (2 * intersection + eps) / (cardinality + eps)
    if class_weights is None:
        return 1 - dice.mean()
    weights = torch.as_tensor(class_weights, dtype=dice.dtype, device=dice.device)
    return 1 - (dice * weights).sum() / weights.sum()


class SegmentationLoss(nn.Module):
    """Cross-entropy (softmax) or per-class BCE-with-logits (sigmoid), plus ``dice_weight`` times Dice.

    ``forward`` also takes a list of logits (U-Net++ deep supervision in training mode) and returns the
    mean of the losses of the heads.

    Args:
        activation: "softmax" (multi-class CE) or "sigmoid" (BCE per class on a one-hot target).
        dice_weight: weight of the Dice term; 0 gives plain CE / BCE.
        class_weights: optional (C,) weights for both terms.
        ignore_index: class id of pixels to leave out of both terms.
        eps: Dice smoothing.
    """

    def __init__(
        self,
        activation: Activation = "softmax",
        dice_weight: float = 1.0,
        class_weights: Sequence[float] | torch.Tensor | None = None,
        ignore_index: int | None = None,
        eps: float = 1.0,
    ) -> None:
        super().__init__()
        if activation not in ("softmax", "sigmoid"):
            raise ConfigError(f"loss activation {activation!r} is not known; use 'softmax' or 'sigmoid'")
        self.activation: Activation = activation
        self.dice_weight = dice_weight
        self.ignore_index = ignore_index
        self.eps = eps
        # A buffer so that .to(device) moves the weights with the module.
        self.class_weights: torch.Tensor | None
        weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", weights)

    def forward(self, logits: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if not isinstance(logits, torch.Tensor):
            return torch.stack([self._single(head, target) for head in logits]).mean()
        return self._single(logits, target)

    def _single(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.long()
        if self.activation == "softmax":
            base = F.cross_entropy(
                logits,
                target,
                weight=self.class_weights,
                ignore_index=-100 if self.ignore_index is None else self.ignore_index,
            )
        else:
            one_hot, valid = _one_hot_and_valid(target, logits.shape[1], self.ignore_index)
            per_pixel = F.binary_cross_entropy_with_logits(logits, one_hot, reduction="none")
            if self.class_weights is not None:
                per_pixel = per_pixel * self.class_weights.view(1, -1, 1, 1)
            base = (per_pixel * valid).sum() / (valid.sum() * logits.shape[1]).clamp_min(1)
        if self.dice_weight == 0:
            return base
        dice = dice_loss(
            logits,
            target,
            activation=self.activation,
            eps=self.eps,
            class_weights=self.class_weights,
            ignore_index=self.ignore_index,
        )
        return base + self.dice_weight * dice


def confusion_counts(
    pred: np.ndarray | torch.Tensor,
    target: np.ndarray | torch.Tensor,
    num_classes: int,
    ignore_index: int | None = None,
) -> np.ndarray:
    """Confusion matrix (C, C) of pixel counts: rows are target classes, columns predicted classes.

    Args:
        pred: predicted class ids, any shape.
        target: true class ids, same shape.
        num_classes: number of classes.
        ignore_index: target class id of pixels to leave out.
    """
    pred_np, target_np = (
        (a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)).ravel()
        for a in (pred, target)
    )
    if pred_np.shape != target_np.shape:
        raise ValueError(f"pred has {pred_np.size} pixels but target has {target_np.size}")
    keep = np.ones(target_np.shape, bool) if ignore_index is None else target_np != ignore_index
    pred_np = pred_np[keep].astype(np.int64)
    target_np = target_np[keep].astype(np.int64)
    ids = np.concatenate([pred_np, target_np])
    if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
        raise ValueError(f"class ids must lie in [0, {num_classes}); set ignore_index for other labels")
    counts = np.bincount(target_np * num_classes + pred_np, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_and_dice_per_class(
    counts: np.ndarray, class_names: Sequence[str] | None = None
) -> dict[str, dict[str, float]]:
    """IoU and Dice of each class from a confusion matrix, keyed by class name (or index as a string).

    ``IoU = TP / (TP + FP + FN)``, ``Dice = 2 TP / (2 TP + FP + FN)``; a class absent from both prediction
    and target gets NaN (undefined, not perfect), so means over classes should use ``nanmean``.
    """
    counts = np.asarray(counts, dtype=np.float64)
    tp = np.diag(counts)
    fp = counts.sum(axis=0) - tp
    fn = counts.sum(axis=1) - tp
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(tp))]
    if len(names) != len(tp):
        raise ValueError(f"{len(names)} class names for a {len(tp)}-class confusion matrix")
    result: dict[str, dict[str, float]] = {}
    for name, t, p, n in zip(names, tp, fp, fn, strict=True):
        union = t + p + n
        result[name] = {
            "iou": float(t / union) if union else float("nan"),
            "dice": float(2 * t / (2 * t + p + n)) if union else float("nan"),
        }
    return result
