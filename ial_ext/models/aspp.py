"""Atrous spatial pyramid pooling (DeepLab v3) with GroupNorm."""
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .layers import ConvNormAct


class ASPP(nn.Module):
    """Parallel 1x1, dilated 3x3 (one per rate) and image-pooling branches, fused by a 1x1 conv.

    GroupNorm keeps the image-pooling branch (a 1x1 map) valid at any batch size.
    """

    def __init__(self, in_channels: int, out_channels: int, rates: Sequence[int], dropout: float = 0.1):
        super().__init__()
        if not rates or any(int(r) < 1 for r in rates):
            raise ValueError(f"ASPP rates must be a non-empty list of positive ints, got {rates!r}")
        self.branches = nn.ModuleList(
            [ConvNormAct(in_channels, out_channels, kernel_size=1)]
            + [ConvNormAct(in_channels, out_channels, dilation=int(r)) for r in rates]
        )
        self.image_pooling = nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                           ConvNormAct(in_channels, out_channels, kernel_size=1))
        self.project = nn.Sequential(
            ConvNormAct(out_channels * (len(rates) + 2), out_channels, kernel_size=1),
            nn.Dropout(dropout),
        )

    def forward(self, features: Tensor) -> Tensor:
        outputs = [branch(features) for branch in self.branches]
        outputs.append(self.image_pooling(features).expand_as(outputs[0]))
        return self.project(torch.cat(outputs, dim=1))
