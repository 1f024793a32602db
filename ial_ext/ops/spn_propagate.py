"""The pairwise propagation as one op: ``torch.ops.ial.spn_propagate``.

``spn_propagate(x, guidance, strength)`` is ``max_d spn_scan(x, normalize_gates(s_d G_d), d)``
over the four directions (s_d the strengths of direction d, one per channel, 1 without
them), computed without the normalised gates or the four scans as tensors: the CPU kernel (csrc/spn_propagate) works plane by plane in cache and its
backward recomputes the scans instead of saving them. On CUDA the op runs the
composite below (the per-channel CUDA scan kernel and torch ops) until a fused
CUDA kernel has run on a GPU; the same composite is what the CPU tests check the
kernel's backward against.
"""
from typing import Optional

import torch
from torch import Tensor

from .checks import check_like_x
from .gate_normalization import GATES_PER_DIRECTION, NUM_DIRECTIONS, normalize_gates, normalize_gates_backward


def spn_propagate(x: Tensor, guidance: Tensor, strength: Optional[Tensor] = None) -> Tensor:
    """Element-wise max of the four SPN scans of ``x`` with normalised gates.

    Args:
        x: (B, C, H, W) float32, float64, float16 or bfloat16 (the last two
            accumulate in float32).
        guidance: raw gates of x's dtype, (B, 12C, H, W) per channel or
            (B, 12, H, W) shared by the channels: four directions (left->right,
            right->left, top->bottom, bottom->top) of [a | b | c].
        strength: optional (4, C) of x's dtype: direction d's gates of channel c are
            strength[d, c] x (a, b, c), before the normalisation. It gives shared
            gates a propagation strength per class; where s (|a| + |b| + |c|) > 1 the
            normalisation caps it.

    Returns:
        (B, C, H, W). Each direction's (a, b, c) is divided by
        max(1, |a| + |b| + |c|) first. Where directions tie for the maximum the
        gradient goes to the first of them.
    """
    return torch.ops.ial.spn_propagate.default(x, guidance, strength)


def _check_args(op: str, x: Tensor, guidance: Tensor, strength: Optional[Tensor] = None) -> None:
    # Mirrors check_propagate_args in csrc/spn_propagate/spn_propagate.cpp.
    torch._check(x.dim() == 4, lambda: f"{op}: x must be 4-D (B, C, H, W), got {x.dim()}-D")
    torch._check(
        guidance.dim() == 4,
        lambda: f"{op}: guidance must be 4-D, (B, 12C, H, W) or (B, 12, H, W), got {guidance.dim()}-D",
    )
    torch._check(
        x.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64),
        lambda: f"{op}: x must be float16, bfloat16, float32 or float64, got {x.dtype}",
    )
    check_like_x(op, "guidance", guidance, x)
    b, c, h, w = x.shape
    torch._check(
        tuple(guidance.shape) in ((b, 12 * c, h, w), (b, 12, h, w)),
        lambda: f"{op}: guidance must have shape (B, 12C, H, W) = {(b, 12 * c, h, w)} or, shared by the "
        f"channels, (B, 12, H, W) = {(b, 12, h, w)} for x of shape {tuple(x.shape)}, got {tuple(guidance.shape)}",
    )
    if strength is not None:
        # Mirrors check_strength in csrc/spn_propagate/spn_propagate.cpp.
        torch._check(
            tuple(strength.shape) == (NUM_DIRECTIONS, c),
            lambda: f"{op}: strength must have shape (4, C) = {(NUM_DIRECTIONS, c)} for x of shape "
            f"{tuple(x.shape)}, got {tuple(strength.shape)}",
        )
        check_like_x(op, "strength", strength, x)


@torch.library.register_fake("ial::spn_propagate")
def _spn_propagate_fake(x, guidance, strength=None):
    _check_args("spn_propagate", x, guidance, strength)
    return x.new_empty(x.shape)


@torch.library.register_fake("ial::spn_propagate_backward")
def _spn_propagate_backward_fake(grad, x, guidance, strength=None, x_requires_grad=True):
    _check_args("spn_propagate_backward", x, guidance, strength)
    torch._check(grad.shape == x.shape, lambda: "spn_propagate_backward: grad must have the shape of x")
    grad_strength = x.new_empty((0,)) if strength is None else strength.new_empty(strength.shape)
    grad_x = x.new_empty(x.shape if x_requires_grad else (0,))
    return grad_x, guidance.new_empty(guidance.shape), grad_strength


def scale_guidance(guidance: Tensor, strength: Tensor) -> Tensor:
    """The per-channel guidance (B, 12C, H, W) of ``strength`` (4, C) applied to ``guidance``
    (shared or per channel): direction d's gates of channel c times strength[d, c]."""
    b, _, h, w = guidance.shape
    c = strength.shape[1]
    per_direction = guidance.view(b, NUM_DIRECTIONS, GATES_PER_DIRECTION, -1, h, w)
    return (per_direction * strength.view(1, NUM_DIRECTIONS, 1, c, 1, 1)).reshape(b, -1, h, w)


def _directional_scans(x: Tensor, guidance: Tensor):
    normalized = [normalize_gates(g) for g in guidance.chunk(NUM_DIRECTIONS, dim=1)]
    scans = [torch.ops.ial.spn_scan.default(x, gates, d) for d, gates in enumerate(normalized)]
    return normalized, scans


def propagate_composite(x: Tensor, guidance: Tensor, strength: Optional[Tensor] = None) -> Tensor:
    """``spn_propagate`` from ``spn_scan`` and torch ops (any device); with strength, the
    gates of every channel are expanded."""
    if strength is not None:
        guidance = scale_guidance(guidance, strength)
    _, scans = _directional_scans(x, guidance)
    return torch.stack(scans).max(dim=0).values


def propagate_backward_composite(grad: Tensor, x: Tensor, guidance: Tensor, strength: Optional[Tensor] = None,
                                 x_requires_grad: bool = True):
    """The backward of ``spn_propagate`` from ``spn_scan_backward`` and torch ops (any device);
    without x_requires_grad, x's gradient is an empty (0,) tensor."""
    if not x_requires_grad:
        _, grad_guidance, grad_strength = propagate_backward_composite(grad, x, guidance, strength)
        return x.new_empty((0,)), grad_guidance, grad_strength
    if strength is not None:
        grad_x, grad_scaled, _ = propagate_backward_composite(grad, x, scale_guidance(guidance, strength))
        b, _, h, w = guidance.shape
        c = strength.shape[1]
        per_channel = grad_scaled.view(b, NUM_DIRECTIONS, GATES_PER_DIRECTION, c, h, w)
        raw = guidance.view(b, NUM_DIRECTIONS, GATES_PER_DIRECTION, -1, h, w)
        grad_strength = (per_channel * raw).sum(dim=(0, 2, 4, 5))
        grad_guidance = per_channel * strength.view(1, NUM_DIRECTIONS, 1, c, 1, 1)
        if raw.shape[3] == 1:  # shared gates: their gradient is the sum over the channels
            grad_guidance = grad_guidance.sum(dim=3, keepdim=True)
        return grad_x, grad_guidance.reshape(guidance.shape), grad_strength
    normalized, scans = _directional_scans(x, guidance)
    first_max = torch.stack(scans).max(dim=0).indices
    grad_x = torch.zeros_like(x)
    grad_guidance = []
    raw = guidance.chunk(NUM_DIRECTIONS, dim=1)
    for d in range(NUM_DIRECTIONS):
        routed = torch.where(first_max == d, grad, torch.zeros_like(grad))
        gx, grad_normalized = torch.ops.ial.spn_scan_backward.default(routed, x, normalized[d], scans[d], d)
        grad_x += gx
        grad_guidance.append(normalize_gates_backward(raw[d], grad_normalized))
    return grad_x, torch.cat(grad_guidance, dim=1), x.new_empty((0,))


torch.library.register_kernel("ial::spn_propagate", "cuda", propagate_composite)
torch.library.register_kernel("ial::spn_propagate_backward", "cuda", propagate_backward_composite)


def _setup_context(ctx, inputs, output):
    x, guidance, strength = inputs
    # The backward recomputes the scans: nothing of the size of four outputs is kept.
    ctx.save_for_backward(x, guidance, strength)


def _backward(ctx, grad):
    x, guidance, strength = ctx.saved_tensors
    x_requires_grad = ctx.needs_input_grad[0]
    grad_x, grad_guidance, grad_strength = torch.ops.ial.spn_propagate_backward.default(
        grad, x, guidance, strength, x_requires_grad)
    return grad_x if x_requires_grad else None, grad_guidance, None if strength is None else grad_strength


torch.library.register_autograd("ial::spn_propagate", _backward, setup_context=_setup_context)
