"""U-Net family: output size equals input size for any size, factory names, deep supervision outputs."""

from __future__ import annotations

import pytest
import torch

from models.factory import available_models, create_model
from models.unet import UNet, unet_receptive_field
from models.unetpp import UNetPlusPlus
from pipeline.errors import ConfigError

torch.set_num_threads(1)

ODD = (97, 131)


@pytest.mark.parametrize("in_channels", [1, 3, 4, 8])
@pytest.mark.parametrize("up_mode", ["bilinear", "transpose"])
def test_unet_output_matches_input_size(in_channels: int, up_mode: str) -> None:
    torch.manual_seed(0)
    model = UNet(in_channels=in_channels, num_classes=3, base_channels=4, depth=3, up_mode=up_mode)
    x = torch.randn(2, in_channels, *ODD)
    model.train()
    assert model(x).shape == (2, 3, *ODD)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 3, *ODD)


@pytest.mark.parametrize("in_channels", [1, 3, 4, 8])
@pytest.mark.parametrize("deep_supervision", [False, True])
def test_unetpp_output_matches_input_size(in_channels: int, deep_supervision: bool) -> None:
    torch.manual_seed(0)
    depth = 3
    model = UNetPlusPlus(in_channels, 2, base_channels=4, depth=depth, deep_supervision=deep_supervision)
    x = torch.randn(1, in_channels, *ODD)
    model.train()
    out = model(x)
    if deep_supervision:
        assert isinstance(out, list) and len(out) == depth
        assert all(head.shape == (1, 2, *ODD) for head in out)
    else:
        assert out.shape == (1, 2, *ODD)
    model.eval()
    with torch.no_grad():
        single = model(x)
    assert isinstance(single, torch.Tensor) and single.shape == (1, 2, *ODD)


def test_unetpp_eval_with_deep_supervision_averages_heads() -> None:
    torch.manual_seed(0)
    model = UNetPlusPlus(3, 2, base_channels=4, depth=2, deep_supervision=True)
    x = torch.randn(1, 3, 32, 40)
    with torch.no_grad():
        # Training mode returns the heads' list; BatchNorm kept on running stats so both paths agree.
        model.train()
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
        heads = model(x)
        model.eval()
        averaged = model(x)
    assert len(heads) == 2 and not torch.allclose(heads[0], heads[1])
    torch.testing.assert_close(averaged, torch.stack(heads).mean(0))


def test_size_is_exact_for_several_sizes_and_skips_concatenate() -> None:
    model = UNet(2, 3, base_channels=4, depth=2).eval()
    for rows, cols in [(4, 4), (5, 7), (16, 33), (64, 64)]:
        with torch.no_grad():
            assert model(torch.randn(1, 2, rows, cols)).shape == (1, 3, rows, cols)
    # Concatenation: the decoder block at level 0 reads 2 * base channels (skip + upsampled).
    assert model.decoder[-1][0].in_channels == 8


def test_too_small_input_is_refused_with_the_minimum() -> None:
    model = UNet(1, 2, base_channels=4, depth=3)
    with pytest.raises(ValueError, match="at least 8"):
        model(torch.randn(1, 1, 7, 20))


def test_kaiming_init_and_batchnorm_init() -> None:
    torch.manual_seed(0)
    model = UNet(3, 3, base_channels=8, depth=2)
    conv = model.encoder[1][0]  # 8 -> 16 channels, fan_in = 8 * 9
    expected_std = (2 / (8 * 9)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.15)
    bn = model.encoder[1][1]
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def test_receptive_field_bounds_the_measured_dependence() -> None:
    # The gradient of one central output pixel is non-zero only inside its receptive field.
    model = UNet(1, 1, base_channels=4, depth=2, up_mode="transpose").eval().double()
    x = torch.randn(1, 1, 96, 96, dtype=torch.double, requires_grad=True)
    model(x)[0, 0, 48, 48].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    measured = int(rows.max() - rows.min() + 1)
    assert abs(measured - unet_receptive_field(2, "transpose")) <= 4


def test_factory_builds_both_and_lists_names_on_error() -> None:
    assert available_models() == ["effunet-lite0", "unet", "unetpp"]
    assert isinstance(create_model("unet", in_channels=1, num_classes=2, base_channels=4, depth=2), UNet)
    assert isinstance(create_model("unetpp", base_channels=4, depth=2), UNetPlusPlus)
    with pytest.raises(ConfigError) as err:
        create_model("segformer")
    assert "unet" in str(err.value) and "unetpp" in str(err.value) and "segformer" in str(err.value)


def test_factory_rejects_unknown_options_and_bad_values() -> None:
    with pytest.raises(ConfigError, match="deep_supervision"):
        create_model("unet", deep_supervision=True)
    with pytest.raises(ConfigError, match="up_mode"):
        create_model("unet", base_channels=4, depth=2, up_mode="nearest")
    with pytest.raises(ConfigError, match="depth"):
        create_model("unetpp", depth=0)


def test_auto_precision_is_bf16_where_the_cpu_has_it_and_fp32_elsewhere():
    import torch

    from models.device import choose_precision

    cpu = torch.device("cpu")
    amx = frozenset({"sse2", "avx512f", "amx_bf16", "amx_tile"})
    zen3 = frozenset({"sse2", "avx2", "fma"})
    dtype, why = choose_precision(cpu, "auto", flags=amx)
    assert dtype == torch.bfloat16 and "amx_bf16" in why
    assert choose_precision(cpu, "auto", flags=frozenset({"avx512_bf16"}))[0] == torch.bfloat16
    dtype, why = choose_precision(cpu, "auto", flags=zen3)
    assert dtype is None and "no native bf16" in why
    assert choose_precision(cpu, "fp32", flags=amx)[0] is None
    assert choose_precision(cpu, "bf16", flags=zen3)[0] == torch.bfloat16
    assert choose_precision(torch.device("cuda"), "auto", flags=zen3)[0] == torch.bfloat16


@pytest.mark.parametrize(("arch", "kwargs"), [("unet", {"base_channels": 4, "depth": 3}),
                                              ("unetpp", {"base_channels": 4, "depth": 2}),
                                              ("effunet-lite0", {"decoder_channels": [16, 8, 8, 8, 8]})])
def test_folding_batchnorm_leaves_no_batchnorm_and_the_same_logits(arch, kwargs) -> None:
    import copy

    from models.fuse import fold_batchnorm

    torch.manual_seed(0)
    model = create_model(arch, in_channels=3, num_classes=4, **kwargs)
    model.train()
    with torch.no_grad():  # running statistics far from the initial 0 / 1
        for _ in range(3):
            model(torch.randn(2, 3, 64, 64) * 3 + 1)
    model.eval()
    folded = copy.deepcopy(model)
    batchnorms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert fold_batchnorm(folded) == batchnorms > 0
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)


def test_the_predictor_runs_the_folded_model(tiny_checkpoint) -> None:
    from models.checkpoint import load_checkpoint
    from pipeline.raster.infer import InferenceSettings, Predictor

    loaded = load_checkpoint(tiny_checkpoint)
    predictor = Predictor(loaded.model, loaded.card.activation, InferenceSettings(device="cpu"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in predictor.model.modules())
