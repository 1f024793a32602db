"""The pairwise refinement of the paper: four SPN scans merged by max."""
import functools

import torch
from torch import Tensor, nn

from ..ops.spn_scan import spn_scan

NUM_DIRECTIONS = 4
GATES_PER_DIRECTION = 3

# (row, column) offset of the neighbour each gate a, b, c links to, per scan direction:
# left->right, right->left, top->bottom, bottom->top (DESIGN.md, op 1).
NEIGHBOUR_OFFSETS = (
    ((-1, -1), (0, -1), (1, -1)),
    ((-1, 1), (0, 1), (1, 1)),
    ((-1, -1), (-1, 0), (-1, 1)),
    ((1, -1), (1, 0), (1, 1)),
)


def normalize_gates(gates: Tensor) -> Tensor:
    """Scales (a, b, c) so that |a| + |b| + |c| <= 1 at every pixel.

    ``gates`` is (B, 3C, H, W) laid out as [a | b | c]. Gates already inside
    the bound are left as they are, so all-zero gates stay zero (no 0/0).
    """
    b, three_c, h, w = gates.shape
    split = gates.view(b, GATES_PER_DIRECTION, three_c // GATES_PER_DIRECTION, h, w)
    scale = split.abs().sum(dim=1, keepdim=True).clamp_min(1.0)
    return (split / scale).view(b, three_c, h, w)


def normalize_guidance(guidance: Tensor) -> Tensor:
    """The gates G the propagation uses: each of the four directions of a (B, 12C, H, W)
    guidance map normalised by `normalize_gates`."""
    return torch.cat([normalize_gates(gates) for gates in guidance.chunk(NUM_DIRECTIONS, dim=1)], dim=1)


class SpatialPropagation(nn.Module):
    """Refines a probability map with learned directional affinities (SPN).

    forward(unary, guidance):
        unary: (B, C, H, W) probabilities to refine.
        guidance: (B, 12C, H, W) raw gates, four directions (left->right,
            right->left, top->bottom, bottom->top) of [a | b | c], C channels each.
    Returns the element-wise max over the four propagated maps, (B, C, H, W).
    """

    def forward(self, unary: Tensor, guidance: Tensor) -> Tensor:
        if unary.dim() != 4 or guidance.dim() != 4:
            raise ValueError(
                "SpatialPropagation expects 4-D unary (B, C, H, W) and guidance "
                f"(B, 12C, H, W), got {tuple(unary.shape)} and {tuple(guidance.shape)}"
            )
        b, c, h, w = unary.shape
        expected = (b, NUM_DIRECTIONS * GATES_PER_DIRECTION * c, h, w)
        if tuple(guidance.shape) != expected:
            raise ValueError(
                f"SpatialPropagation: guidance must have shape {expected} for unary "
                f"{tuple(unary.shape)}, got {tuple(guidance.shape)}"
            )
        propagated = [
            spn_scan(unary, normalize_gates(gates), direction)
            for direction, gates in enumerate(guidance.chunk(NUM_DIRECTIONS, dim=1))
        ]
        return functools.reduce(torch.maximum, propagated)
