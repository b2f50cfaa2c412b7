"""Checkpoints: round trip, stable ids, atomic writes, and refusal of unsafe, corrupt or mismatched files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from models import checkpoint as ckpt
from models.checkpoint import (
    ModelCard,
    checkpoint_id,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from models.factory import create_model
from pipeline.errors import CheckpointError

torch.set_num_threads(1)

ARCH_KWARGS = {"in_channels": 3, "num_classes": 3, "base_channels": 4, "depth": 2}


def _card(**changes: Any) -> ModelCard:
    fields: dict[str, Any] = {
        "arch": "unet",
        "arch_kwargs": dict(ARCH_KWARGS),
        "classes": ["background", "building", "road"],
        "bands": [3, 2, 1],
        "mean": [100.0, 90.0, 80.0],
        "std": [30.0, 25.0, 20.0],
        "tile_size": 64,
        "context_margin": 8,
        "training": {"epochs": 1, "seed": 0},
    }
    fields.update(changes)
    return ModelCard(**fields)


def _model(seed: int = 0, **kwargs: Any) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(kwargs.pop("arch", "unet"), **{**ARCH_KWARGS, **kwargs})


def test_round_trip_gives_the_same_outputs(tmp_path: Path) -> None:
    model = _model().eval()
    path = tmp_path / "sub" / "model.pt"
    card = _card()
    cid = save_checkpoint(path, model, card)
    loaded = load_checkpoint(path)
    assert not loaded.model.training
    assert loaded.card == card and loaded.checkpoint_id == cid and loaded.path == path
    x = torch.randn(1, 3, 37, 50)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x), rtol=0, atol=0)
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary file left behind


def test_round_trip_unetpp_with_deep_supervision(tmp_path: Path) -> None:
    kwargs = {**ARCH_KWARGS, "deep_supervision": True}
    model = _model(arch="unetpp", deep_supervision=True).eval()
    path = tmp_path / "pp.pt"
    save_checkpoint(path, model, _card(arch="unetpp", arch_kwargs=kwargs))
    loaded = load_checkpoint(path)
    x = torch.randn(2, 3, 32, 33)
    with torch.no_grad():
        out = loaded.model(x)
        assert isinstance(out, torch.Tensor)
        torch.testing.assert_close(out, model(x), rtol=0, atol=0)


def test_checkpoint_id_is_stable_and_depends_on_the_weights(tmp_path: Path) -> None:
    card = _card()
    first = save_checkpoint(tmp_path / "a.pt", _model(seed=0), card)
    again = save_checkpoint(tmp_path / "b.pt", _model(seed=0), card)
    other = save_checkpoint(tmp_path / "c.pt", _model(seed=1), card)
    assert re.fullmatch(r"unet-[0-9a-f]{12}", first)
    assert first == again != other
    assert load_checkpoint(tmp_path / "b.pt").checkpoint_id == first
    state = _model(seed=0).state_dict()
    assert checkpoint_id("unet", dict(reversed(list(state.items())))) == first
    # Overwriting keeps the newest weights under the same name.
    save_checkpoint(tmp_path / "a.pt", _model(seed=1), card)
    assert load_checkpoint(tmp_path / "a.pt").checkpoint_id == other


class _WritesMarker:
    """Unpickling this calls open(marker, "w"): proof of code execution if the file appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def test_pickled_objects_are_refused_and_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed.txt"
    path = tmp_path / "evil.pt"
    payload = {
        "format": "sceneseg-checkpoint",
        "format_version": 1,
        "card": _card().model_dump(mode="json"),
        "state_dict": _model().state_dict(),
        "extra": _WritesMarker(marker),
    }
    torch.save(payload, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert not marker.exists()
    message = str(err.value)
    assert str(path) in message and "Python objects" in message and "save_checkpoint" in message
    # The payload is live: an unrestricted load would have run it.
    torch.load(path, weights_only=False)["extra"].close()
    assert marker.exists()


def test_custom_class_instance_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "object.pt"
    torch.save({"format": "sceneseg-checkpoint", "model": _CustomThing()}, path)
    with pytest.raises(CheckpointError, match="Python objects"):
        load_checkpoint(path)


class _CustomThing:
    value = 1


def test_corrupt_and_truncated_files_name_the_file(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 20)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(garbage)
    assert str(garbage) in str(err.value) and "corrupt" in str(err.value)

    good = tmp_path / "good.pt"
    save_checkpoint(good, _model(), _card())
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(truncated)
    assert str(truncated) in str(err.value)

    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=re.escape(str(empty))):
        load_checkpoint(empty)


def test_missing_file_and_unknown_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match=re.escape(str(missing))):
        load_checkpoint(missing)
    with pytest.raises(CheckpointError, match="does not exist"):
        find_checkpoint(str(missing))
    # Bare names resolve inside the packaged weights directory.
    monkeypatch.setattr(ckpt, "WEIGHTS_DIR", tmp_path)
    save_checkpoint(tmp_path / "synthetic-demo.pt", _model(), _card())
    assert find_checkpoint("synthetic-demo") == tmp_path / "synthetic-demo.pt"
    assert load_checkpoint("synthetic-demo").card.arch == "unet"
    with pytest.raises(CheckpointError) as err:
        find_checkpoint("no-such-model")
    assert "no-such-model" in str(err.value) and "synthetic-demo" in str(err.value)


def _raw_save(path: Path, **overrides: Any) -> Path:
    payload: dict[str, Any] = {
        "format": "sceneseg-checkpoint",
        "format_version": 1,
        "card": _card().model_dump(mode="json"),
        "state_dict": _model().state_dict(),
    }
    payload.update(overrides)
    torch.save(payload, path)
    return path


def test_wrong_format_version_card_and_weights_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a sceneseg checkpoint"):
        load_checkpoint(_raw_save(tmp_path / "fmt.pt", format="other"))
    plain = tmp_path / "plain_state_dict.pt"
    torch.save(_model().state_dict(), plain)
    with pytest.raises(CheckpointError, match="not a sceneseg checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(CheckpointError, match="format_version 2"):
        load_checkpoint(_raw_save(tmp_path / "ver.pt", format_version=2))
    bad_card = {**_card().model_dump(mode="json"), "std": [30.0, 0.0, 20.0]}
    with pytest.raises(CheckpointError, match="invalid model card"):
        load_checkpoint(_raw_save(tmp_path / "card.pt", card=bad_card))
    wide = _model(base_channels=8).state_dict()
    with pytest.raises(CheckpointError, match="weights do not match") as err:
        load_checkpoint(_raw_save(tmp_path / "shape.pt", state_dict=wide))
    assert "shape" in str(err.value)
    with pytest.raises(CheckpointError, match="weights do not match"):
        save_checkpoint(tmp_path / "mismatch.pt", _model(arch="unetpp"), _card())
    assert not (tmp_path / "mismatch.pt").exists()


def test_card_validation() -> None:
    assert _card().activation == "softmax" and _card().created_at.endswith("+00:00")
    with pytest.raises(ValidationError, match="must all be equal"):
        _card(bands=[1, 2])
    with pytest.raises(ValidationError, match="num_classes"):
        _card(classes=["background", "building"])
    with pytest.raises(ValidationError, match="std must be > 0"):
        _card(std=[1.0, -1.0, 1.0])
    with pytest.raises(ValidationError, match="background"):
        _card(classes=["building", "background", "road"])
    with pytest.raises(ValidationError, match=r"multiple of 2\*\*depth = 4"):
        _card(tile_size=66)
    with pytest.raises(ValidationError, match="1-based"):
        _card(bands=[0, 1, 2])
    with pytest.raises(ValidationError, match="not known"):
        _card(arch="segformer")
    with pytest.raises(ValidationError, match="Extra inputs"):
        _card(colour="red")
