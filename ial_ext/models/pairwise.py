"""The pairwise network g of the paper: a guidance CNN whose gates drive SPN propagation.

The guidance CNN is a small encoder-decoder at 1, 1/2 and 1/4 resolution with
additive skips, so the gates see both the image's edges (full resolution) and
some context; a final 1x1 conv writes the 12 gate maps per class (4 directions
x [a | b | c] x C channels, the layout of ``ial_ext.nn.SpatialPropagation``).

Export-friendly: only convolutions, GroupNorm, ReLU, bilinear resizes to the
skip's (symbolic) size and the spn_scan op; no branch depends on tensor values
and any H, W works (odd sizes included).
"""
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import SpatialPropagation
from .layers import ConvNormAct
from .spec import RebuildableNetwork, check_num_classes

NUM_DIRECTIONS = 4
GATES_PER_DIRECTION = 3  # a, b, c: previous-row/column neighbours at lower, same, higher index
# Initial gates: b (the straight neighbour) starts at 0.1 and a, c at 0, plus
# small noise from the conv weights (std ~0.01-0.05 per gate). Each directional
# scan is then h_t ~ 0.9 x_t + 0.1 h_{t-1}: a weak smoothing reaching about one
# pixel, so the refined map starts as the unary map (argmax kept almost
# everywhere) and training learns affinities from there. The weights are small
# but not zero, so gradients reach the guidance CNN from the first step.
INITIAL_STRAIGHT_GATE = 0.1
INITIAL_GATE_WEIGHT_STD = 0.01
# The merged map is floored and renormalised over classes: four scans with
# per-class (possibly negative) gates merged by max need not sum to 1, and the
# trainer's loss takes its log.
PROBABILITY_FLOOR = 1e-6


class GuidanceNetwork(nn.Module):
    """Image (B, 3, H, W) -> features (B, width, H, W) for the gate conv."""

    def __init__(self, width: int):
        super().__init__()
        self.full_res = nn.Sequential(ConvNormAct(3, width), ConvNormAct(width, width))
        self.half_res = nn.Sequential(ConvNormAct(width, 2 * width, stride=2), ConvNormAct(2 * width, 2 * width))
        self.quarter_res = nn.Sequential(ConvNormAct(2 * width, 2 * width, stride=2),
                                     ConvNormAct(2 * width, 2 * width, dilation=2))
        self.fuse_half = ConvNormAct(2 * width, width)
        self.fuse_full = ConvNormAct(width, width)

    @staticmethod
    def _upsample_to(x: Tensor, reference: Tensor) -> Tensor:
        return F.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, images: Tensor) -> Tensor:
        full = self.full_res(images)
        half = self.half_res(full)
        quarter = self.quarter_res(half)
        half = self.fuse_half(half + self._upsample_to(quarter, half))
        return self.fuse_full(full + self._upsample_to(half, full))


class PairwiseNetwork(RebuildableNetwork):
    """Refines unary probabilities with learned affinities (the paper's alpha_p = G alpha_u).

    guidance(images) -> raw gates (B, 12 * num_classes, H, W) (normalised inside
    the propagation); propagate(unary, guidance) -> refined probabilities;
    forward(images, unary) does both. Call guidance() and propagate() separately
    to also feed the gates to the region smoothness loss without computing them twice.
    """

    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()
        check_num_classes(num_classes)
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"PairwiseNetwork width must be a positive int, got {width!r}")
        self.num_classes = num_classes
        self.features = GuidanceNetwork(width)
        self.gates = nn.Conv2d(width, NUM_DIRECTIONS * GATES_PER_DIRECTION * num_classes, 1)
        self.propagation = SpatialPropagation()
        self._initialize_gates()
        self._remember_kwargs(num_classes=num_classes, width=width)

    def _initialize_gates(self) -> None:
        nn.init.normal_(self.gates.weight, std=INITIAL_GATE_WEIGHT_STD)
        bias = self.gates.bias.detach().view(NUM_DIRECTIONS, GATES_PER_DIRECTION, self.num_classes)
        bias.zero_()
        bias[:, 1] = INITIAL_STRAIGHT_GATE

    def guidance(self, images: Tensor) -> Tensor:
        """Raw gates (B, 12 * num_classes, H, W): 4 directions x [a | b | c] x classes."""
        return self.gates(self.features(images))

    def propagate(self, unary_probabilities: Tensor, guidance: Tensor) -> Tensor:
        """SPN on (B, C, H, W) probabilities, max over 4 directions, renormalised over classes."""
        refined = self.propagation(unary_probabilities, guidance).clamp_min(PROBABILITY_FLOOR)
        return refined / refined.sum(dim=1, keepdim=True)

    def forward(self, images: Tensor, unary_probabilities: Tensor) -> Tensor:
        return self.propagate(unary_probabilities, self.guidance(images))
