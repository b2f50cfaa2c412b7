"""U-Net (Ronneberger et al. 2015) with padded convolutions, so the output has the input's height and width.

Encoder: DoubleConv blocks and 2x2 max-pooling, channels doubling per level. Decoder: up-sampling (bilinear
followed by a 1x1 conv halving channels, or a 2x2 transposed conv), concatenation with the matching encoder
features, then a DoubleConv. A 1x1 conv gives the class logits.

Odd sizes: max-pooling floors, so an up-sampled map is never larger than its skip; it is zero-padded to the
skip's size (half before, half after). Inputs whose sides are multiples of ``2**depth`` need no padding, which
is why inference tiles are chosen that way.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.errors import ConfigError

__all__ = [
    "encoder_levels",
    "UpMode",
    "DoubleConv",
    "Up",
    "UNet",
    "align_to",
    "init_weights",
    "unet_receptive_field",
    "check_input_size",
    "check_arch_options",
]

UpMode = Literal["bilinear", "transpose"]
_UP_MODES: tuple[str, ...] = ("bilinear", "transpose")


class DoubleConv(nn.Sequential):
    """(3x3 conv, padding 1, no bias -> BatchNorm -> ReLU) twice."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """Double the spatial size and map ``in_channels`` to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, mode: UpMode) -> None:
        super().__init__()
        if mode == "transpose":
            self.up: nn.Module = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        elif mode == "bilinear":
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, out_channels, kernel_size=1),
            )
        else:
            raise ConfigError(f"up_mode {mode!r} is not known; use one of {list(_UP_MODES)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


def align_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Zero-pad ``x`` (N, C, h, w) to the height and width of ``ref``, half before and half after."""
    dr = ref.shape[-2] - x.shape[-2]
    dc = ref.shape[-1] - x.shape[-1]
    if dr == 0 and dc == 0:
        return x
    return F.pad(x, [dc // 2, dc - dc // 2, dr // 2, dr - dr // 2])


def encoder_levels(in_channels: int, widths: list[int]) -> nn.ModuleList:
    """The encoder's DoubleConv per level (``widths[i]`` channels at level ``i``), shared by the U-Net family."""
    return nn.ModuleList(
        [DoubleConv(in_channels, widths[0])] + [DoubleConv(widths[i - 1], widths[i]) for i in range(1, len(widths))]
    )


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal (ReLU gain) for convolutions, zero biases; BatchNorm weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def check_input_size(x: torch.Tensor, depth: int) -> None:
    """Raise if ``x`` is too small to survive ``depth`` poolings."""
    if x.ndim != 4:
        raise ValueError(f"model input must be (N, C, H, W), got shape {tuple(x.shape)}")
    smallest = 2**depth
    if min(x.shape[-2:]) < smallest:
        raise ValueError(
            f"input of {x.shape[-2]} x {x.shape[-1]} pixels is too small for depth {depth}: "
            f"each side needs at least {smallest} pixels; use larger tiles"
        )


def unet_receptive_field(depth: int, up_mode: UpMode = "bilinear") -> int:
    """Approximate theoretical receptive field (pixels across) of one output pixel of a U-Net of this depth.

    Counted along the deepest path: each 3x3 conv adds 2 steps of the current stride, each 2x2 pooling one,
    each bilinear up-sampling one coarse step (it reads two neighbours), a transposed 2x2 stride-2 conv none.
    Pooling alignment and the skip paths move the true extent by a few pixels either way.
    The useful context is usually much smaller than half of this (the effective receptive field decays
    quickly), so ``ModelCard.context_margin`` is a measured choice bounded by it, not this number.
    """
    size, stride = 1, 1
    for _ in range(depth):
        size += 2 * 2 * stride  # DoubleConv
        size += stride  # 2x2 max-pool
        stride *= 2
    size += 2 * 2 * stride  # bottleneck DoubleConv
    for _ in range(depth):
        if up_mode == "bilinear":
            size += stride
        stride //= 2
        size += 2 * 2 * stride  # decoder DoubleConv
    return size


class UNet(nn.Module):
    """U-Net: logits (N, num_classes, H, W) for an input (N, in_channels, H, W), any H, W >= 2**depth.

    Args:
        in_channels: input bands.
        num_classes: output channels (classes, background included).
        base_channels: channels of the first level; level ``i`` has ``base_channels * 2**i``.
        depth: number of 2x2 poolings (the bottleneck is at level ``depth``).
        up_mode: "bilinear" (bilinear x2, then a 1x1 conv halving channels) or "transpose" (2x2
            transposed conv).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 3,
        base_channels: int = 16,
        depth: int = 4,
        up_mode: UpMode = "bilinear",
    ) -> None:
        super().__init__()
        check_arch_options(
            in_channels=in_channels, num_classes=num_classes, base_channels=base_channels, depth=depth
        )
        self.depth = depth
        self.up_mode = up_mode
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.encoder = encoder_levels(in_channels, widths)
        self.ups = nn.ModuleList([Up(widths[i + 1], widths[i], up_mode) for i in reversed(range(depth))])
        self.decoder = nn.ModuleList([DoubleConv(2 * widths[i], widths[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)
        init_weights(self)

    @property
    def receptive_field(self) -> int:
        """Theoretical receptive field in pixels across (see :func:`unet_receptive_field`)."""
        return unet_receptive_field(self.depth, self.up_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.depth)
        skips = []
        for level, block in enumerate(self.encoder):
            x = block(x if level == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, block in zip(self.ups, self.decoder, strict=True):
            skip = skips.pop()
            x = block(torch.cat([skip, align_to(up(x), skip)], dim=1))
        return self.head(x)


def check_arch_options(**sizes: int) -> None:
    """Raise ConfigError unless every given size is a positive integer."""
    for name, value in sizes.items():
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"model option {name} must be a positive integer, got {value!r}")
