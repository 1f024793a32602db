"""The pairwise refinement of the paper: four SPN scans merged by max."""
import functools
from typing import Optional

import torch
from torch import Tensor, nn

from ..ops.export_mode import exporting
from ..ops.gate_normalization import (
    GATES_PER_DIRECTION, NEIGHBOUR_OFFSETS, NUM_DIRECTIONS, normalize_gates, normalize_guidance,
)
from ..ops.spn_propagate import scale_guidance, spn_propagate
from ..ops.spn_scan import spn_scan

__all__ = ["NEIGHBOUR_OFFSETS", "SpatialPropagation", "exporting", "normalize_gates", "normalize_guidance"]


class SpatialPropagation(nn.Module):
    """Refines a probability map with learned directional affinities (SPN).

    forward(unary, guidance, strength=None):
        unary: (B, C, H, W) probabilities to refine.
        guidance: raw gates, (B, 12, H, W) shared by the C classes (the paper's 12
            affinity maps) or (B, 12C, H, W) per class: four directions
            (left->right, right->left, top->bottom, bottom->top) of [a | b | c].
        strength: optional (4, C), each class's propagation strength per direction:
            its gates are strength x guidance before the normalisation.
    Returns the element-wise max over the four propagated maps, (B, C, H, W).

    ``fused`` (default): one ``spn_propagate`` op, which neither materialises the
    normalised gates nor keeps the four scans. Under ``torch.export`` /
    ``torch.onnx.export`` (``torch.compiler.is_exporting()`` or
    ``torch.onnx.is_in_onnx_export()``), or with ``fused=False``, the module runs
    the composite (``normalize_gates``, four ``spn_scan``, ``torch.maximum``),
    whose ``spn_scan`` has an ONNX translation; the two agree to rounding.
    """

    def __init__(self, fused: bool = True):
        super().__init__()
        self.fused = fused

    def forward(self, unary: Tensor, guidance: Tensor, strength: Optional[Tensor] = None) -> Tensor:
        if unary.dim() != 4 or guidance.dim() != 4:
            raise ValueError(
                "SpatialPropagation expects 4-D unary (B, C, H, W) and guidance "
                f"(B, 12, H, W) or (B, 12C, H, W), got {tuple(unary.shape)} and {tuple(guidance.shape)}"
            )
        b, c, h, w = unary.shape
        per_direction = NUM_DIRECTIONS * GATES_PER_DIRECTION
        accepted = ((b, per_direction, h, w), (b, per_direction * c, h, w))
        if tuple(guidance.shape) not in accepted:
            raise ValueError(
                f"SpatialPropagation: guidance must have shape {accepted[0]} (shared) or {accepted[1]} "
                f"(per class) for unary {tuple(unary.shape)}, got {tuple(guidance.shape)}"
            )
        if self.fused and not exporting():
            return spn_propagate(unary, guidance, strength)
        if strength is not None:
            guidance = scale_guidance(guidance, strength)
        propagated = [
            spn_scan(unary, normalize_gates(gates), direction)
            for direction, gates in enumerate(guidance.chunk(NUM_DIRECTIONS, dim=1))
        ]
        return functools.reduce(torch.maximum, propagated)

    def extra_repr(self) -> str:
        return f"fused={self.fused}"
