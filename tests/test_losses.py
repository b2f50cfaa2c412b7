"""Dice against hand-computed values, CE/BCE + Dice training on a learnable batch, IoU / Dice metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.losses import SegmentationLoss, confusion_counts, dice_loss, iou_and_dice_per_class
from models.unet import UNet
from models.unetpp import UNetPlusPlus

torch.set_num_threads(1)

# One 2 x 2 image, two classes. Probability of class 1 per pixel (row-major), class 0 gets the rest.
P1 = torch.tensor([[0.9, 0.2], [0.6, 0.1]], dtype=torch.float64)
TARGET = torch.tensor([[[1, 0], [1, 0]]])


def _softmax_logits(p1: torch.Tensor) -> torch.Tensor:
    # softmax([log(1 - p), log p]) == [1 - p, p]
    return torch.stack([torch.log(1 - p1), torch.log(p1)]).unsqueeze(0)


def test_dice_softmax_matches_hand_computation() -> None:
    # class 1: |X| = .9+.2+.6+.1 = 1.8, |Y| = 2, |X∩Y| = .9+.6 = 1.5 -> (2*1.5 + 1) / (1.8+2+1) = 4 / 4.8
    # class 0: |X| = .1+.8+.4+.9 = 2.2, |Y| = 2, |X∩Y| = .8+.9 = 1.7 -> (2*1.7 + 1) / (2.2+2+1) = 4.4 / 5.2
    expected = 1 - (4 / 4.8 + 4.4 / 5.2) / 2  # = 0.16025641...
    loss = dice_loss(_softmax_logits(P1), TARGET, activation="softmax", eps=1.0)
    assert loss.item() == pytest.approx(expected, abs=1e-9)
    assert expected == pytest.approx(0.1602564, abs=1e-6)


def test_dice_without_smoothing_and_with_class_weights() -> None:
    # eps = 0: class 1 -> 3 / 3.8, class 0 -> 3.4 / 4.2
    loss = dice_loss(_softmax_logits(P1), TARGET, eps=0.0)
    assert loss.item() == pytest.approx(1 - (3 / 3.8 + 3.4 / 4.2) / 2, abs=1e-9)
    # weights (1, 3) on (class 0, class 1): weighted mean (4.4/5.2 * 1 + 4/4.8 * 3) / 4
    weighted = dice_loss(_softmax_logits(P1), TARGET, class_weights=[1.0, 3.0])
    assert weighted.item() == pytest.approx(1 - (4.4 / 5.2 + 3 * 4 / 4.8) / 4, abs=1e-9)


def test_dice_ignore_index_drops_pixels() -> None:
    target = TARGET.clone()
    target[0, 1, 1] = 255  # the last pixel (p1 = 0.1, true class 0) is left out
    # class 1: |X| = .9+.2+.6 = 1.7, |Y| = 2, |X∩Y| = 1.5 -> 4 / 4.7
    # class 0: |X| = .1+.8+.4 = 1.3, |Y| = 1, |X∩Y| = .8 -> 2.6 / 3.3
    loss = dice_loss(_softmax_logits(P1), target, ignore_index=255)
    assert loss.item() == pytest.approx(1 - (4 / 4.7 + 2.6 / 3.3) / 2, abs=1e-9)


def test_dice_sigmoid_treats_channels_independently() -> None:
    # channel 0 at sigmoid 0.5 everywhere: |X| = 2, |Y| = 2, |X∩Y| = 1 -> (2 + 1) / (4 + 1) = 0.6
    # channel 1 as in the softmax case: 4 / 4.8
    logits = torch.stack([torch.zeros(2, 2, dtype=torch.float64), torch.logit(P1)]).unsqueeze(0)
    loss = dice_loss(logits, TARGET, activation="sigmoid")
    assert loss.item() == pytest.approx(1 - (0.6 + 4 / 4.8) / 2, abs=1e-9)


def _learnable_batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(2, 2, 32, 32, generator=gen)
    target = (image[:, 0] > 0.3).long() + (image[:, 1] > 1.0).long() * (image[:, 0] <= 0.3).long() * 2
    return image, target


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_loss_decreases_on_a_learnable_batch(activation: str) -> None:
    torch.manual_seed(0)
    image, target = _learnable_batch()
    model = UNet(2, 3, base_channels=4, depth=2)
    loss_fn = SegmentationLoss(activation=activation, dice_weight=1.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = loss_fn(model(image), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0]


def test_loss_averages_deep_supervision_heads_and_trains_unetpp() -> None:
    torch.manual_seed(0)
    image, target = _learnable_batch()
    model = UNetPlusPlus(2, 3, base_channels=4, depth=2, deep_supervision=True)
    loss_fn = SegmentationLoss(class_weights=[0.5, 1.0, 2.0], ignore_index=255)
    heads = model(image)
    assert loss_fn(heads, target).item() == pytest.approx(
        (loss_fn(heads[0], target).item() + loss_fn(heads[1], target).item()) / 2, rel=1e-6
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(10):
        opt.zero_grad()
        loss = loss_fn(model(image), target)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.8 * first


def test_bce_ignores_ignored_pixels() -> None:
    logits = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, :2] = 2
    loss_fn = SegmentationLoss(activation="sigmoid", dice_weight=0.0, ignore_index=9)
    # Changing only ignored pixels' logits must not change the loss.
    ignored = target.clone()
    ignored[0, 3] = 9
    changed = logits.clone()
    changed[0, :, 3] += 5.0
    assert loss_fn(logits, ignored).item() == pytest.approx(loss_fn(changed, ignored).item())
    assert loss_fn(logits, target).item() != pytest.approx(loss_fn(changed, target).item())


def test_confusion_counts_and_metrics_by_hand() -> None:
    target = np.array([[0, 0, 1], [1, 2, 2]])
    pred = np.array([[0, 1, 1], [1, 2, 0]])
    counts = confusion_counts(torch.from_numpy(pred), target, num_classes=4)
    # rows = target, cols = pred
    expected = np.zeros((4, 4), int)
    expected[0, 0] = 1
    expected[0, 1] = 1
    expected[1, 1] = 2
    expected[2, 2] = 1
    expected[2, 0] = 1
    np.testing.assert_array_equal(counts, expected)
    metrics = iou_and_dice_per_class(counts, ["background", "building", "road", "water"])
    # background: TP 1, FP 1 (road pixel predicted 0), FN 1 -> IoU 1/3, Dice 2/4
    assert metrics["background"] == pytest.approx({"iou": 1 / 3, "dice": 0.5})
    # building: TP 2, FP 1, FN 0 -> IoU 2/3, Dice 4/5
    assert metrics["building"] == pytest.approx({"iou": 2 / 3, "dice": 0.8})
    assert metrics["road"] == pytest.approx({"iou": 0.5, "dice": 2 / 3})
    assert math.isnan(metrics["water"]["iou"]) and math.isnan(metrics["water"]["dice"])


def test_confusion_counts_rejects_out_of_range_ids_unless_ignored() -> None:
    target = np.array([0, 1, 255])
    pred = np.array([0, 1, 1])
    with pytest.raises(ValueError, match="ignore_index"):
        confusion_counts(pred, target, num_classes=2)
    assert confusion_counts(pred, target, num_classes=2, ignore_index=255).sum() == 2
