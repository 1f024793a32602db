"""The affinities exp(-|e_p - e_q|^2) of every pixel p and the neighbour q of each SPN gate.

The 12 (pixel, neighbour) links are 4 kinds of pixel pair, each seen from both ends: the
offset d of every link and the offset -d are one pair kind. Each kind's affinity is computed
once over the padded embedding and sliced twice.

In training the padding and the 4 kinds go through one autograd function whose backward adds
every kind's gradient into a single gradient of the padded embedding, recomputing the
differences: plain autograd would keep the 4 (B, E, H, W) differences and the unpadded
embedding for the backward, and build a zero-filled padded-size gradient for each of the 8
slices the differences are taken from.
"""
import torch
import torch.nn.functional as F
from torch import Tensor

from .export_mode import exporting
from .gate_normalization import NEIGHBOUR_OFFSETS

PAIR_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1))


def _pair_ends(padded: Tensor, dy: int, dx: int) -> tuple[Tensor, Tensor]:
    """Views of the two ends of every pair of kind (dy, dx) on a map padded by one pixel:
    pair [i, j] links padded[i, j + x0] and padded[i + dy, j + x0 + dx], x0 = max(0, -dx)."""
    height, width = padded.shape[-2:]
    x0 = max(0, -dx)
    first = padded[:, :, : height - dy, x0 : width - abs(dx) + x0]
    second = padded[:, :, dy:, x0 + dx : x0 + dx + width - abs(dx)]
    return first, second


def _pair_affinities(padded: Tensor) -> list[Tensor]:
    affinities = []
    for dy, dx in PAIR_OFFSETS:
        first, second = _pair_ends(padded, dy, dx)
        affinities.append(torch.exp(-(first - second).square().sum(dim=1, keepdim=True)))
    return affinities


def _replicate_padded(embedding: Tensor) -> Tensor:
    return F.pad(embedding, (1, 1, 1, 1), mode="replicate")


class _PairAffinities(torch.autograd.Function):
    """embedding -> the 4 pair kinds' affinities over its replicate-padded copy."""

    @staticmethod
    def forward(ctx, embedding: Tensor):
        padded = _replicate_padded(embedding)
        affinities = _pair_affinities(padded)
        ctx.save_for_backward(padded, *affinities)
        return tuple(affinities)

    @staticmethod
    def backward(ctx, *grads):
        padded, *affinities = ctx.saved_tensors
        grad_padded = torch.zeros_like(padded)
        for (dy, dx), affinity, grad in zip(PAIR_OFFSETS, affinities, grads):
            if grad is None:
                continue
            first, second = _pair_ends(padded, dy, dx)
            # d exp(-|f - s|^2) / df = -2 (f - s) exp(-|f - s|^2), and the opposite for s.
            term = (first - second).mul_(grad * affinity * -2)
            grad_first, grad_second = _pair_ends(grad_padded, dy, dx)
            grad_first.add_(term)
            grad_second.sub_(term)
        # The padding repeats the border pixels: their copies' gradients go back to them.
        grad_padded[..., 1] += grad_padded[..., 0]
        grad_padded[..., -2] += grad_padded[..., -1]
        grad_padded[..., 1, :] += grad_padded[..., 0, :]
        grad_padded[..., -2, :] += grad_padded[..., -1, :]
        return grad_padded[..., 1:-1, 1:-1]


def neighbour_affinities(embedding: Tensor) -> Tensor:
    """exp(-|e_p - e_q|^2) for each pixel p and the neighbour q of every (direction, gate) of
    NEIGHBOUR_OFFSETS, (B, 12, H, W); q outside the image is the nearest border pixel."""
    h, w = embedding.shape[-2:]
    if embedding.requires_grad and torch.is_grad_enabled() and not exporting():
        affinities = _PairAffinities.apply(embedding)
    else:
        affinities = _pair_affinities(_replicate_padded(embedding))
    pairs = dict(zip(PAIR_OFFSETS, affinities))
    maps = []
    for offsets in NEIGHBOUR_OFFSETS:
        for dy, dx in offsets:
            # The pair kind and which end p is: p = (1 + y, 1 + x) in padded coordinates.
            kind, start = ((dy, dx), (1, 1)) if (dy, dx) in pairs else ((-dy, -dx), (1 + dy, 1 + dx))
            row, column = start[0], start[1] - max(0, -kind[1])
            maps.append(pairs[kind][:, :, row : row + h, column : column + w])
    return torch.cat(maps, dim=1)
