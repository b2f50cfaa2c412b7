"""Training: a tiny real U-Net on tiny synthetic scenes learns, checkpoints, resumes, runs as a flow."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import geopandas as gpd
import pytest
import rasterio
import shapely
import torch
from pydantic import ValidationError

from models.augment import Augment
from models.checkpoint import load_checkpoint
from pipeline.errors import ConfigError
from pipeline.training.data import split_rows, synthetic_scenes
from models.device import NATIVE_BF16_FLAGS, cpu_flags
from pipeline.training.train import TrainConfig, last_checkpoint_path, train, train_from_paths, training_precision

torch.set_num_threads(1)

TINY = dict(
    arch_kwargs={"base_channels": 4, "depth": 2},
    tile_size=64,
    context_margin=8,
    batch_size=4,
    steps_per_epoch=8,
    lr=1e-2,
    warmup_steps=2,
    val_tiles=6,
    stats_tiles=8,
    augment=Augment(elastic_p=0.0),
    seed=3,
)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    sources = synthetic_scenes(tmp_path_factory.mktemp("syn"), seeds=[5, 6], size=192)
    return split_rows(sources, val_fraction=1 / 3, gap=16)


@pytest.fixture(scope="module")
def two_epochs(split, tmp_path_factory):
    config = TrainConfig(epochs=2, out=tmp_path_factory.mktemp("run") / "tiny.pt", **TINY)
    return config, train(config, *split, progress=False)


def test_two_epochs_lower_the_loss_and_write_a_loadable_checkpoint(two_epochs):
    config, result = two_epochs
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert result.history[1]["train_loss"] < result.history[0]["train_loss"]
    assert result.checkpoint == config.out and result.last == last_checkpoint_path(config.out)
    assert result.last.name == "tiny.last.pt"
    loaded = load_checkpoint(result.checkpoint)
    card = loaded.card
    assert card.gsd_m == pytest.approx(0.5)  # the synthetic scenes' pixels, which resampling will honour
    assert card.arch == "unet" and card.arch_kwargs == {
        "in_channels": 3,
        "num_classes": 3,
        "base_channels": 4,
        "depth": 2,
    }
    assert card.classes == ["background", "building", "road"] and card.bands == [1, 2, 3]
    assert card.activation == "softmax" and card.tile_size == 64 and card.context_margin == 8
    # Normalisation measured on the training tiles of these uint8 scenes.
    assert len(card.mean) == 3 and all(40 < m < 220 for m in card.mean) and all(5 < s < 100 for s in card.std)
    record = card.training
    assert record["seed"] == 3 and record["epochs"] == result.best["epoch"]
    assert record["best"]["per_class"]["building"]["iou"] == result.best["per_class"]["building"]["iou"]
    assert record["train_data"][0]["region"] == [0, 0, 112, 192] and record["val_data"][0]["region"][0] == 128
    assert set(result.best["per_class"]["road"]) == {"iou", "dice"}
    with torch.no_grad():
        assert loaded.model(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)


class _Interrupted(Exception):
    pass


def _interrupt(entry: dict) -> None:
    raise _Interrupted(f"killed after epoch {entry['epoch']}")


def test_last_state_loads_weights_only_and_resume_continues_the_same_run(two_epochs, split, tmp_path):
    config, result = two_epochs
    state = torch.load(result.last, weights_only=True)
    assert state["epoch"] == 2 and set(state["optimizer"]) == {"state", "param_groups"}
    same = config.model_copy(update={"out": tmp_path / "resumed.pt"})
    with pytest.raises(_Interrupted):
        train(same, *split, progress=False, on_epoch=_interrupt)
    assert torch.load(last_checkpoint_path(same.out), weights_only=True)["epoch"] == 1
    resumed = train(same.model_copy(update={"resume": True}), *split, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    # Interrupted after one epoch and resumed, the run ends exactly where the uninterrupted run ended.
    resumed_state = torch.load(resumed.last, weights_only=True)
    for key, value in state["model"].items():
        torch.testing.assert_close(resumed_state["model"][key], value, rtol=1e-6, atol=1e-7)
    assert resumed.history[1]["train_loss"] == pytest.approx(result.history[1]["train_loss"], rel=1e-6)
    # Asking for more epochs continues from the last one.
    longer = train(same.model_copy(update={"resume": True, "epochs": 3}), *split, progress=False)
    assert [h["epoch"] for h in longer.history] == [1, 2, 3]


def test_resume_refuses_a_state_of_different_settings(two_epochs, split):
    config, _ = two_epochs
    changed = config.model_copy(update={"lr": 0.5, "epochs": 3, "resume": True})
    with pytest.raises(ConfigError, match=r"settings \['lr'\] differ"):
        train(changed, *split, progress=False)


def test_init_fine_tunes_from_a_checkpoint_with_its_weights_and_normalization(two_epochs, split, tmp_path):
    config, result = two_epochs
    start = load_checkpoint(result.checkpoint)
    # One step at a learning rate too small to move a weight: what is saved is where the run started.
    tuned = TrainConfig(**{**TINY, "seed": 4, "lr": 1e-12, "warmup_steps": 0, "steps_per_epoch": 1},
                        epochs=1, init=result.checkpoint, out=tmp_path / "tuned.pt")
    done = load_checkpoint(train(tuned, *split, progress=False).checkpoint)
    assert done.card.mean == start.card.mean and done.card.std == start.card.std
    # Weights, not batch-norm running statistics (a training step updates those whatever the lr).
    for (name, a), b in zip(start.model.named_parameters(), done.model.parameters()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6, msg=name)
    # A fresh run of the same seed starts elsewhere: the init is what made them equal.
    fresh = load_checkpoint(train(tuned.model_copy(update={"init": None, "out": tmp_path / "fresh.pt"}),
                                  *split, progress=False).checkpoint)
    assert not torch.equal(fresh.model.head.weight, start.model.head.weight)


def test_init_refuses_a_checkpoint_of_another_model(two_epochs, split, tmp_path):
    _, result = two_epochs
    other = TrainConfig(**{**TINY, "arch_kwargs": {"base_channels": 8, "depth": 2}}, epochs=1,
                        init=result.checkpoint, out=tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="start from a checkpoint of the same model"):
        train(other, *split, progress=False)


def test_early_stopping_after_patience_epochs_without_improvement(split, tmp_path):
    # One building in the top-left corner, none in the validation band: the validation IoU is 0 at every
    # epoch, so no epoch after the first improves on it.
    scene = split[0][0]
    with rasterio.open(scene.image) as ds:
        x, y = ds.transform @ (4, 4)
        crs = ds.crs
    labels = tmp_path / "one.geojson"
    gpd.GeoDataFrame({"class": ["building"]}, geometry=[shapely.box(x, y - 5, x + 5, y)], crs=crs).to_file(
        labels, driver="GeoJSON", engine="pyogrio"
    )
    train_src, val_src = (replace(s, labels=labels) for s in (scene, split[1][0]))
    config = TrainConfig(
        **{**TINY, "steps_per_epoch": 2},
        classes=["background", "building"],
        epochs=6,
        patience=1,
        out=tmp_path / "m.pt",
    )
    result = train(config, [train_src], [val_src], progress=False)
    assert result.stopped_early and len(result.history) == 2 and result.best["epoch"] == 1
    assert [h["mean_iou"] for h in result.history] == [0.0, 0.0]


def test_config_is_validated_once():
    with pytest.raises(ValidationError, match="extra"):
        TrainConfig(epoch=3)
    with pytest.raises(ValidationError, match="in_channels"):
        TrainConfig(arch_kwargs={"in_channels": 3, "depth": 2})
    with pytest.raises(ValidationError, match=r"multiple of 2\*\*depth = 8"):
        TrainConfig(arch_kwargs={"depth": 3}, tile_size=100)
    with pytest.raises(ValidationError, match="background"):
        TrainConfig(classes=["building", "background"])


def test_train_from_paths_splits_a_single_scene_by_rows(split, tmp_path):
    scene = split[0][0]
    result = train_from_paths(
        [scene.image],
        scene.labels,
        out=tmp_path / "p.pt",
        classes=["background", "building"],
        val_fraction=0.4,
        progress=False,
        **{**TINY, "steps_per_epoch": 2},
        epochs=1,
    )
    record = load_checkpoint(result.checkpoint).card.training
    # 192 rows: validation is the bottom 77, half a tile (32 rows) apart from the 83 training rows.
    assert record["train_data"][0]["region"] == [0, 0, 83, 192]
    assert record["val_data"][0]["region"] == [115, 0, 77, 192]
    assert list(result.best["per_class"]) == ["background", "building"]


def test_sceneseg_train_init_fine_tunes_the_checkpoints_model_with_its_classes_and_thresholds(split, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app
    from tests.helpers import write_tiny_checkpoint

    separation = {"seed_confidence": 0.45, "min_seed_m2": 1.5, "grow_m": 2.0, "min_building_area_m2": 9.0}
    start = write_tiny_checkpoint(
        tmp_path / "start.pt", classes=("background", "building", "building_boundary", "building_contact"),
        boundary_m=1.0, contact_m=1.0, separation=separation,
    )
    scene = split[0][0]
    result = CliRunner().invoke(app, [
        "train", "--scenes", str(scene.image), "--labels", str(scene.labels), "--out", str(tmp_path / "ft.pt"),
        "--init", str(start), "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2", "--tile-size", "64",
        "--arch", "unetpp", "--classes", "background,road",  # ignored: the model is the checkpoint's
    ])
    assert result.exit_code == 0, result.output
    before, after = load_checkpoint(start).card, load_checkpoint(tmp_path / "ft.pt").card
    assert (after.arch, after.arch_kwargs, after.classes, after.bands) == (before.arch, before.arch_kwargs, before.classes, before.bands)
    assert (after.boundary_m, after.contact_m, after.separation) == (1.0, 1.0, separation)
    assert Path(after.training["config"]["init"]).resolve() == start.resolve()


def test_train_model_flow_runs_under_prefect(prefect_harness, split, tmp_path):
    from flows.train import train_model

    scene = split[0][0]
    config = TrainConfig(**{**TINY, "steps_per_epoch": 2, "loss": "bce"}, epochs=1, out=tmp_path / "flow.pt")
    summary = train_model([str(scene.image), str(split[0][1].image)], str(scene.labels), config)
    assert summary["checkpoint"] == str(tmp_path / "flow.pt") and summary["epochs"] == 1
    assert load_checkpoint(Path(summary["checkpoint"])).card.activation == "sigmoid"
    assert 0.0 <= summary["best"]["mean_iou"] <= 1.0
    building = summary["best"]["per_class"]["building"]
    assert f"| building | {building['iou']:.4f} | {building['dice']:.4f} |" in summary["report"]


CPU = torch.device("cpu")


def test_training_precision_auto_is_the_inference_rule_and_the_card_records_it(two_epochs):
    bf16 = training_precision(CPU, "auto", flags=frozenset({"avx512_bf16", "avx2"}))
    assert bf16 == {"precision": "bf16", "precision_reason": "auto: the CPU has native bf16 (avx512_bf16)"}
    fp32 = training_precision(CPU, "auto", flags=frozenset({"avx2", "fma"}))
    assert fp32["precision"] == "fp32" and "no native bf16" in fp32["precision_reason"]
    assert training_precision(CPU, "fp32", flags=frozenset({"amx_bf16"}))["precision"] == "fp32"
    assert training_precision(torch.device("cuda"), "auto", flags=frozenset())["precision"] == "bf16"
    config, result = two_epochs
    record = load_checkpoint(result.checkpoint).card.training
    expected = "bf16" if NATIVE_BF16_FLAGS & cpu_flags() else "fp32"
    assert record["precision"] == expected and record["precision_reason"].startswith("auto: ")


@pytest.mark.skipif(not NATIVE_BF16_FLAGS & cpu_flags(),
                    reason="this CPU has no native bf16 (amx_bf16 or avx512_bf16): torch emulates it, slowly")
def test_two_bf16_steps_match_fp32_losses(split, tmp_path):
    losses = {}
    for precision in ("fp32", "bf16"):
        config = TrainConfig(**{**TINY, "steps_per_epoch": 2}, epochs=1, precision=precision,
                             out=tmp_path / f"{precision}.pt")
        result = train(config, *split, progress=False)
        assert load_checkpoint(result.checkpoint).card.training["precision"] == precision
        losses[precision] = (result.history[0]["train_loss"], result.history[0]["val_loss"])
    assert losses["bf16"] != losses["fp32"]  # it did run in bf16
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.02)


def test_ema_weights_are_validated_saved_and_resumed(split, tmp_path):
    config = TrainConfig(**TINY, epochs=1, ema_decay=0.5, out=tmp_path / "ema.pt")
    result = train(config, *split, progress=False)
    state = torch.load(result.last, weights_only=True)
    saved = load_checkpoint(result.checkpoint).model.state_dict()
    for name, value in saved.items():
        torch.testing.assert_close(value, state["ema"][name])
    assert any(not torch.equal(state["ema"][k], state["model"][k]) for k in state["model"])
    resumed = train(config.model_copy(update={"epochs": 2, "resume": True}), *split, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2]


def test_the_train_command_and_train_config_have_one_set_of_defaults():
    """`sceneseg train` and TrainConfig (the flows' and the library's) train with the same defaults."""
    import inspect

    from flows.cli import train as train_command
    from pipeline.training.train import TrainConfig

    options = inspect.signature(train_command).parameters
    for name in ("epochs", "steps_per_epoch", "batch_size", "tile_size", "lr", "loss", "seed"):
        assert options[name].default == TrainConfig.model_fields[name].default, name
