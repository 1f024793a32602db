"""SPN's stability condition on the gates, |a| + |b| + |c| <= 1 (DESIGN.md, op 1).

(a, b, c) <- (a, b, c) / max(1, |a| + |b| + |c|): gates inside the bound are left
as they are, so all-zero gates stay zero (no 0/0). Written with torch ops, so it
is differentiable by autograd; ``spn_propagate`` applies the same map inside its
kernel.
"""
import torch
from torch import Tensor

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

    ``gates`` is [a | b | c]: (B, 3C, H, W) per channel or (B, 3, H, W) shared.
    """
    b, three_c, h, w = gates.shape
    split = gates.view(b, GATES_PER_DIRECTION, three_c // GATES_PER_DIRECTION, h, w)
    scale = split.abs().sum(dim=1, keepdim=True).clamp_min(1.0)
    return (split / scale).view(b, three_c, h, w)


def normalize_gates_backward(gates: Tensor, grad: Tensor) -> Tensor:
    """The gradient of ``normalize_gates`` at ``gates`` for the incoming ``grad``, the
    derivative autograd takes (at |a| + |b| + |c| = 1 the scaled branch, as clamp_min)."""
    b, three_c, h, w = gates.shape
    raw = gates.view(b, GATES_PER_DIRECTION, three_c // GATES_PER_DIRECTION, h, w)
    g = grad.reshape(raw.shape)
    total = raw.abs().sum(dim=1, keepdim=True)
    scaled = total >= 1
    inverse = torch.where(scaled, 1 / total.clamp_min(1), torch.ones_like(total))
    dot = torch.where(scaled, (g * raw).sum(dim=1, keepdim=True) * inverse * inverse, torch.zeros_like(total))
    return (g * inverse - raw.sign() * dot).view(b, three_c, h, w)


def normalize_guidance(guidance: Tensor) -> Tensor:
    """The gates G the propagation uses: each of the four directions of a guidance map,
    (B, 12C, H, W) per channel or (B, 12, H, W) shared, normalised by `normalize_gates`."""
    b, twelve_c, h, w = guidance.shape
    # The four directions are consecutive [a | b | c] blocks: normalise them as four batch items.
    per_direction = guidance.reshape(b * NUM_DIRECTIONS, twelve_c // NUM_DIRECTIONS, h, w)
    return normalize_gates(per_direction).view(b, twelve_c, h, w)
