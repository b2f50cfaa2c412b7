"""The building recipe: scale and colour jitter, encoder learning rate, instance targets, selection hook."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.augment import Augment, augment, colour_jitter, scale_jitter
from models.checkpoint import load_checkpoint
from pipeline.training.data import split_rows, synthetic_scenes
from pipeline.training.targets import BOUNDARY, CONTACT, InstanceTargets
from pipeline.training.train import TrainConfig, _lr_at, _param_groups, train

torch.set_num_threads(1)


def test_scale_jitter_keeps_the_size_and_moves_image_and_mask_together():
    image = np.zeros((2, 32, 32), dtype=np.float32)
    image[:, 12:20, 12:20] = 1.0
    mask = (image[0] > 0).astype(np.int64)
    sums = set()
    for seed in range(6):
        out, out_mask = scale_jitter(image, mask, np.random.default_rng(seed), 0.3)
        assert out.shape == image.shape and out_mask.shape == mask.shape
        assert set(np.unique(out_mask)) <= {0, 1}
        assert np.abs((out_mask == 1).astype(int) - (out[0] > 0.5)).sum() <= 4  # same square, edges aside
        sums.add(int(out_mask.sum()))
    assert len(sums) > 2


def test_colour_jitter_changes_bands_apart_and_keeps_grey_grey():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(3, 8, 8)).astype(np.float32)
    out = colour_jitter(image, np.random.default_rng(2), 0.2, 0.3)
    ratios = (out / image).reshape(3, -1)
    assert out.dtype == np.float32 and not np.allclose(ratios[0], ratios[1])
    grey = np.ones((3, 4, 4), dtype=np.float32)
    assert np.allclose(colour_jitter(grey, np.random.default_rng(3), 0.0, 0.5), grey)


def test_augment_without_the_new_options_draws_what_it_always_drew():
    image = np.random.default_rng(0).normal(size=(3, 16, 16)).astype(np.float32)
    mask = np.zeros((16, 16), dtype=np.int64)
    a = augment(image, mask, np.random.default_rng(5), Augment())
    b = augment(image, mask, np.random.default_rng(5), Augment(scale=0.0, colour_gain=0.0, saturation=0.0))
    assert np.array_equal(a[0], b[0])
    c = augment(image, mask, np.random.default_rng(5), Augment(scale=0.2, colour_gain=0.1, saturation=0.2))
    assert not np.array_equal(a[0], c[0])


def test_encoder_gets_its_own_learning_rate():
    config = TrainConfig(arch="effunet-lite0", arch_kwargs={"decoder_channels": [8, 8, 8, 8, 8]}, lr=1e-3,
                         encoder_lr=2.5e-4, classes=["background", "building"], tile_size=64)
    from models.factory import create_model

    model = create_model("effunet-lite0", **config.full_arch_kwargs)
    groups = _param_groups(model, config)
    assert [g["lr_scale"] for g in groups] == [0.25, 1.0]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert _lr_at(config.warmup_steps - 1, 1000, config) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="multiple of 32"):
        TrainConfig(arch="effunet-lite0", arch_kwargs={}, tile_size=48)
    with pytest.raises(ValueError, match="pretrained"):
        TrainConfig(arch="effunet-lite0", arch_kwargs={"pretrained": True})


def test_instance_targets_train_and_the_best_epoch_is_chosen_by_the_score_hook(tmp_path):
    sources = synthetic_scenes(tmp_path / "syn", seeds=[5], size=128)
    train_src, val_src = split_rows(sources, val_fraction=0.5, gap=0)
    config = TrainConfig(
        arch="effunet-lite0",
        arch_kwargs={"decoder_channels": [8, 8, 8, 8, 8]},
        classes=["background", "building", "road", BOUNDARY, CONTACT],
        instance_targets=InstanceTargets(boundary_m=1.0, contact_m=1.0),
        tile_size=32,
        context_margin=8,
        batch_size=2,
        epochs=3,
        steps_per_epoch=1,
        warmup_steps=1,
        encoder_lr=1e-4,
        class_weights=[1, 1, 1, 3, 3],
        channels_last=True,
        augment=Augment(elastic_p=0.0, scale=0.2, colour_gain=0.1, saturation=0.2),
        val_tiles=2,
        stats_tiles=4,
        out=tmp_path / "m.pt",
    )
    scores = iter([0.2, 0.5, 0.1])
    calls = []

    def score_fn(model, mean, std):
        calls.append(model.training)
        return {"score": next(scores), "detail": 1}

    result = train(config, train_src, val_src, progress=False, score_fn=score_fn)
    assert calls == [False, False, False]
    assert [h["score"] for h in result.history] == [0.2, 0.5, 0.1]
    assert result.best["epoch"] == 2 and result.history[0]["selection"]["detail"] == 1
    card = load_checkpoint(result.checkpoint).card
    assert card.boundary_m == 1.0 and card.contact_m == 1.0 and card.classes[-2:] == [BOUNDARY, CONTACT]
    assert "pretrained" not in card.arch_kwargs
