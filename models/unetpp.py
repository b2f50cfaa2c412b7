"""U-Net++ (Zhou et al. 2018): nested, densely connected skip pathways between encoder and decoder.

Node ``X[i][j]`` sits at level ``i`` (``i`` poolings down) and column ``j``. Column 0 is the encoder; a node
with ``j >= 1`` is a DoubleConv over the concatenation of every earlier node of its level
``X[i][0..j-1]`` and the up-sampled ``X[i+1][j-1]``. The heads are 1x1 convs on ``X[0][1..depth]``.

Deep supervision: in training mode the model returns the list of all heads' logits (shallowest first) so the
loss can be taken on each (``SegmentationLoss`` averages a list); in eval mode it returns one tensor, the mean
of the heads' logits (the paper's "accurate mode"). Without deep supervision it returns the last head's
logits in both modes. Up-sampling and odd-size alignment follow ``models.unet``.
"""

from __future__ import annotations

import torch
from torch import nn

from models.unet import (
    DoubleConv,
    Up,
    UpMode,
    align_to,
    check_arch_options,
    check_input_size,
    encoder_levels,
    init_weights,
    unet_receptive_field,
)

__all__ = ["UNetPlusPlus"]


class UNetPlusPlus(nn.Module):
    """U-Net++ returning logits (N, num_classes, H, W) for any input H, W >= 2**depth.

    Args:
        in_channels: input bands.
        num_classes: output channels (classes, background included).
        base_channels: channels of level 0; level ``i`` has ``base_channels * 2**i``.
        depth: number of 2x2 poolings.
        deep_supervision: one head per decoder column (see the module docstring for what forward returns).
        up_mode: "bilinear" or "transpose", as in ``UNet``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 3,
        base_channels: int = 16,
        depth: int = 4,
        deep_supervision: bool = False,
        up_mode: UpMode = "bilinear",
    ) -> None:
        super().__init__()
        check_arch_options(
            in_channels=in_channels, num_classes=num_classes, base_channels=base_channels, depth=depth
        )
        self.depth = depth
        self.up_mode = up_mode
        self.deep_supervision = deep_supervision
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.encoder = encoder_levels(in_channels, widths)
        # Keys "i_j" name node X[i][j]; each up-sampler feeds exactly one node.
        self.ups = nn.ModuleDict()
        self.nodes = nn.ModuleDict()
        for j in range(1, depth + 1):
            for i in range(depth - j + 1):
                self.ups[f"{i}_{j}"] = Up(widths[i + 1], widths[i], up_mode)
                self.nodes[f"{i}_{j}"] = DoubleConv((j + 1) * widths[i], widths[i])
        n_heads = depth if deep_supervision else 1
        self.heads = nn.ModuleList([nn.Conv2d(widths[0], num_classes, kernel_size=1) for _ in range(n_heads)])
        init_weights(self)

    @property
    def receptive_field(self) -> int:
        """Theoretical receptive field in pixels across; the deepest path is the plain U-Net's."""
        return unet_receptive_field(self.depth, self.up_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        check_input_size(x, self.depth)
        grid: list[list[torch.Tensor]] = []
        for level, block in enumerate(self.encoder):
            x = block(x if level == 0 else self.pool(x))
            grid.append([x])
        for j in range(1, self.depth + 1):
            for i in range(self.depth - j + 1):
                same_level = grid[i][:j]
                up = align_to(self.ups[f"{i}_{j}"](grid[i + 1][j - 1]), same_level[0])
                grid[i].append(self.nodes[f"{i}_{j}"](torch.cat([*same_level, up], dim=1)))
        if not self.deep_supervision:
            return self.heads[0](grid[0][self.depth])
        outputs = [head(grid[0][j]) for j, head in enumerate(self.heads, start=1)]
        if self.training:
            return outputs
        return torch.stack(outputs).mean(dim=0)
