"""Building blocks shared by the project's own (non-ResNet) layers.

The heads (ASPP, the pairwise guidance CNN) normalise with GroupNorm by
default: ASPP's image-pooling branch is a 1x1 map, where BatchNorm has no
statistics at batch size 1, and GroupNorm computes the same function in train
and eval mode, so a prediction never depends on the rest of the batch or on
running averages. The small backbone picks BatchNorm (see small_backbone.py).
"""
import math
from collections.abc import Callable

from torch import nn

MAX_GROUPS = 8


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups (the largest count dividing ``channels``)."""
    return nn.GroupNorm(math.gcd(MAX_GROUPS, channels), channels)


class ConvNormAct(nn.Sequential):
    """3x3 (or ``kernel_size``) conv -> norm (GroupNorm by default) -> ReLU; "same" padding.

    With stride 2 the output size is ceil(input / 2), so strides compose to ceil(H / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 dilation: int = 1, norm: Callable[[int], nn.Module] = group_norm):
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                      dilation=dilation, bias=False),
            norm(out_channels),
            nn.ReLU(inplace=True),
        )
        nn.init.kaiming_normal_(self[0].weight, mode="fan_out", nonlinearity="relu")
