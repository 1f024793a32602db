"""The pairwise network g of the paper: a guidance CNN whose gates drive SPN propagation.

The guidance CNN is a small encoder-decoder at 1, 1/2 and 1/4 resolution with
additive skips, so the gates see both the image's edges (full resolution) and
some context; a final 1x1 conv writes the gate maps (4 directions x [a | b | c],
the layout of ``ial_ext.nn.SpatialPropagation``). ``gate_layout`` says whose they are:
- "shared" (default): the paper's 12 affinity matrices (section 3.2.2), one per
  direction and neighbour, applied to every class channel.
- "per_class": 12 maps per class (12C), for comparison; every operation on the
  gates then costs C times as much (21 classes on VOC, 81 on COCO).

Two ways to turn those maps into gates (``gate_mode``):
- "direct": the conv's output is the gate, as in SPN. It starts as a weak
  smoothing and must learn edge awareness from the weak labels alone.
- "similarity" (default): gate = modulation (sigmoid of the conv, per direction
  and neighbour, and per class with per-class gates) x affinity of the two linked pixels, exp(-|e_p - e_q|^2) over their colours and
  a learned embedding. Propagation then stops at image edges from the first
  iteration; on the synthetic demo this refined the unary map by +3 to +5 mIoU
  where the direct gates, trained the same way, changed it by less than 1.

``strength`` (default on): a learned propagation strength per class and direction,
(4, C) numbers (log-scale, starting at 1) that scale the class's gates before their
normalisation, so one set of maps still serves every class while the background,
say, spreads further than an object. The 12 maps stay shared; their cost does not
grow with C.

Export-friendly: only convolutions, GroupNorm, ReLU, bilinear resizes to the
skip's (symbolic) size and the spn_scan op; no branch depends on tensor values
and any H, W works (odd sizes included).
"""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import SpatialPropagation, normalize_guidance
from ..ops import similarity_gates
from ..nn.spatial_propagation import GATES_PER_DIRECTION, NUM_DIRECTIONS
from .layers import ConvNormAct
from .memory_format import convolution_input, standard_layout
from .pointwise import PointwiseConv2d, pointwise_heads
from .spec import RebuildableNetwork, check_num_classes
# Initial gates: b (the straight neighbour) starts at 0.1 and a, c at 0, plus
# small noise from the conv weights (std ~0.01-0.05 per gate). Each directional
# scan is then h_t ~ 0.9 x_t + 0.1 h_{t-1}: a weak smoothing reaching about one
# pixel, so the refined map starts as the unary map (argmax kept almost
# everywhere) and training learns affinities from there. The weights are small
# but not zero, so gradients reach the guidance CNN from the first step.
INITIAL_STRAIGHT_GATE = 0.1
INITIAL_GATE_WEIGHT_STD = 0.01
PROBABILITY_FLOOR = 1e-6
GATE_MODES = ("similarity", "direct")
GATE_LAYOUTS = ("shared", "per_class")
EMBEDDING_CHANNELS = 8
# Similarity gates start with a strong, edge-stopped propagation: the
# modulation starts at sigmoid(3) = 0.95 and the three gates share it, so inside a
# region of constant colour a + b + c ~ 0.95 while a colour step of two standard
# deviations brings the gates below 0.02.
INITIAL_MODULATION_BIAS = 3.0


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
        full = self.full_res(convolution_input(images))
        half = self.half_res(full)
        quarter = self.quarter_res(half)
        half = self.fuse_half(half + self._upsample_to(quarter, half))
        return standard_layout(self.fuse_full(full + self._upsample_to(half, full)))


class PairwiseNetwork(RebuildableNetwork):
    """Refines unary probabilities with learned affinities (the paper's alpha_p = G alpha_u).

    guidance(images) -> raw gates (B, 12, H, W), or (B, 12 * num_classes, H, W) with
    ``gate_layout="per_class"`` (normalised inside the propagation);
    propagate(unary, guidance) -> refined probabilities;
    forward(images, unary) does both. Call guidance() and propagate() separately
    to also feed the gates to the region smoothness loss without computing them twice.
    """

    # Checkpoints written before gate_layout (strength) existed hold per-class gates (no strengths).
    SPEC_DEFAULTS_BEFORE_OPTION = {"gate_layout": "per_class", "strength": False}

    def __init__(self, num_classes: int, width: int = 16, gate_mode: str = "similarity",
                 gate_layout: str = "shared", strength: bool = True):
        super().__init__()
        check_num_classes(num_classes)
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"PairwiseNetwork width must be a positive int, got {width!r}")
        if gate_mode not in GATE_MODES:
            raise ValueError(f"gate_mode must be one of {GATE_MODES}, got {gate_mode!r}")
        if gate_layout not in GATE_LAYOUTS:
            raise ValueError(f"gate_layout must be one of {GATE_LAYOUTS}, got {gate_layout!r}")
        if not isinstance(strength, bool):
            raise ValueError(f"strength must be True or False, got {strength!r}")
        self.num_classes = num_classes
        self.gate_mode = gate_mode
        self.gate_layout = gate_layout
        # Gate maps per direction and neighbour: one, or one per class.
        self.gate_channels = 1 if gate_layout == "shared" else num_classes
        self.features = GuidanceNetwork(width)
        self.gates = PointwiseConv2d(width, NUM_DIRECTIONS * GATES_PER_DIRECTION * self.gate_channels)
        if gate_mode == "similarity":
            self.embedding = PointwiseConv2d(width, EMBEDDING_CHANNELS)
            nn.init.zeros_(self.embedding.weight)  # at first the gates see the image's colours only
            nn.init.zeros_(self.embedding.bias)
        self.propagation = SpatialPropagation()
        # log of the (4, C) strengths; at 0 the network starts as it would without them.
        self.log_strength = nn.Parameter(torch.zeros(NUM_DIRECTIONS, num_classes)) if strength else None
        self._initialize_gates()
        self._remember_kwargs(num_classes=num_classes, width=width, gate_mode=gate_mode, gate_layout=gate_layout,
                              strength=strength)

    @classmethod
    def upgrade_spec_kwargs(cls, kwargs: dict) -> dict:
        return {**cls.SPEC_DEFAULTS_BEFORE_OPTION, **kwargs}

    def _initialize_gates(self) -> None:
        nn.init.normal_(self.gates.weight, std=INITIAL_GATE_WEIGHT_STD)
        bias = self.gates.bias.detach().view(NUM_DIRECTIONS, GATES_PER_DIRECTION, self.gate_channels)
        if self.gate_mode == "similarity":
            bias.fill_(INITIAL_MODULATION_BIAS)
            return
        bias.zero_()
        bias[:, 1] = INITIAL_STRAIGHT_GATE

    def guidance(self, images: Tensor) -> Tensor:
        """Raw gates (B, 12 * M, H, W): 4 directions x [a | b | c] x M maps, M = 1 with
        shared gates, num_classes with per-class gates.

        "direct": a 1x1 conv of the guidance features writes the gates (SPN's design).
        "similarity": each gate is a learned modulation in (0, 1) times the
        affinity exp(-|e_p - e_q|^2) of the pixel p and the neighbour q it links to,
        with e the image's colours and a learned embedding: gates fall at image edges
        from the first iteration, and training shapes which edges matter.
        """
        features = self.features(images)
        if self.gate_mode == "direct":
            return self.gates(features)
        logits, embedding = pointwise_heads(features, self.gates, self.embedding)
        return similarity_gates(logits, torch.cat([images, embedding], dim=1), 1 / GATES_PER_DIRECTION)

    def propagate(self, unary_probabilities: Tensor, guidance: Tensor) -> Tensor:
        """SPN on (B, C, H, W) probabilities, max over 4 directions, floored at
        PROBABILITY_FLOOR and renormalised over classes."""
        merged = self.merged_scores(unary_probabilities, guidance)
        # where() keeps a boolean mask for the backward, clamp_min would keep the whole map.
        floored = torch.where(merged > PROBABILITY_FLOOR, merged, PROBABILITY_FLOOR)
        return floored / floored.sum(dim=1, keepdim=True)

    def merged_scores(self, unary_probabilities: Tensor, guidance: Tensor) -> Tensor:
        """`propagate` before its floor and renormalisation: the max of the four scans. Four
        scans merged by max need not sum to 1 over the classes, and in training eq. 7 floors
        and renormalises them at the labelled pixels only
        (refined_map_loss(..., floor=PROBABILITY_FLOOR))."""
        strength = None if self.log_strength is None else self.log_strength.exp().to(unary_probabilities.dtype)
        return self.propagation(unary_probabilities, guidance, strength)

    def normalized_guidance(self, guidance: Tensor) -> Tensor:
        """The gates G of eq. 8: the guidance normalised to |a| + |b| + |c| <= 1 per direction
        (normalize_guidance). Similarity gates are within that bound by construction (each is
        at most 1/3) and come back as they are."""
        return guidance if self.gate_mode == "similarity" else normalize_guidance(guidance)

    def forward(self, images: Tensor, unary_probabilities: Tensor) -> Tensor:
        return self.propagate(unary_probabilities, self.guidance(images))
