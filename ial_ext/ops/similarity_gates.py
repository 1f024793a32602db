"""The pairwise network's similarity gates as one op: ``torch.ops.ial.similarity_gates``.

``similarity_gates(logits, embedding, scale)`` is scale x sigmoid(logits) x the affinity
exp(-|e_p - e_q|^2) of each pixel p and the neighbour q its gate links to
(NEIGHBOUR_OFFSETS; q outside the image is the nearest border pixel), one affinity per
link broadcast over the link's M maps. The CPU kernel (csrc/similarity_gates) works row by
row without the 12 affinity maps, the sigmoid or their product as tensors, and its backward
recomputes them. Under export, and on CUDA until a kernel has run on a GPU, the composite
below runs (``neighbour_affinities`` and torch ops).
"""
import torch
from torch import Tensor

from .checks import check_like_x
from .export_mode import exporting
from .gate_normalization import GATES_PER_DIRECTION, NUM_DIRECTIONS
from .neighbour_affinities import neighbour_affinities

LINKS = NUM_DIRECTIONS * GATES_PER_DIRECTION


def similarity_gates(logits: Tensor, embedding: Tensor, scale: float = 1.0) -> Tensor:
    """Gates (B, 12M, H, W) from modulation logits and a per-pixel embedding.

    Args:
        logits: (B, 12M, H, W) float32, float64, float16 or bfloat16: 4 directions
            (left->right, right->left, top->bottom, bottom->top) x [a | b | c] x M maps.
        embedding: (B, E, H, W) of the logits' dtype, E >= 1 (the image's colours and
            learned features).
        scale: multiplies every gate.

    Returns:
        gates[b, (d, j, m), p] = scale * sigmoid(logits[b, (d, j, m), p]) *
        exp(-sum_e (embedding[b, e, p] - embedding[b, e, q])^2), q the neighbour
        NEIGHBOUR_OFFSETS[d][j] of p, clamped into the image.
    """
    if exporting():
        return similarity_gates_composite(logits, embedding, scale)
    return torch.ops.ial.similarity_gates.default(logits, embedding, float(scale))


def similarity_gates_composite(logits: Tensor, embedding: Tensor, scale: float = 1.0) -> Tensor:
    """``similarity_gates`` from torch ops (any device, differentiable by autograd)."""
    b, channels, h, w = logits.shape
    affinity = neighbour_affinities(embedding).view(b, NUM_DIRECTIONS, GATES_PER_DIRECTION, 1, h, w)
    modulation = torch.sigmoid(logits).view(b, NUM_DIRECTIONS, GATES_PER_DIRECTION, channels // LINKS, h, w)
    return (affinity * modulation).mul_(scale).view(b, channels, h, w)


def _similarity_gates_backward_composite(grad: Tensor, logits: Tensor, embedding: Tensor, scale: float):
    with torch.enable_grad():
        logits = logits.detach().requires_grad_()
        embedding = embedding.detach().requires_grad_()
        gates = similarity_gates_composite(logits, embedding, scale)
        return torch.autograd.grad(gates, (logits, embedding), grad)


def _check_args(op: str, logits: Tensor, embedding: Tensor) -> None:
    # Mirrors check_gate_args in csrc/similarity_gates/similarity_gates.cpp.
    torch._check(logits.dim() == 4, lambda: f"{op}: logits must be 4-D (B, 12M, H, W), got {logits.dim()}-D")
    torch._check(
        embedding.dim() == 4, lambda: f"{op}: embedding must be 4-D (B, E, H, W), got {embedding.dim()}-D"
    )
    torch._check(
        logits.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64),
        lambda: f"{op}: logits must be float16, bfloat16, float32 or float64, got {logits.dtype}",
    )
    check_like_x(op, "embedding", embedding, logits)
    torch._check(
        logits.shape[1] % LINKS == 0 and logits.shape[1] > 0,
        lambda: f"{op}: logits must have 12M channels (4 directions x 3 gates x M maps), got {logits.shape[1]}",
    )
    b, _, h, w = logits.shape
    torch._check(
        embedding.shape[0] == b and tuple(embedding.shape[2:]) == (h, w) and embedding.shape[1] > 0,
        lambda: f"{op}: embedding must have shape (B, E, H, W) = ({b}, E, {h}, {w}) with E >= 1 for logits "
        f"of shape {tuple(logits.shape)}, got {tuple(embedding.shape)}",
    )


@torch.library.register_fake("ial::similarity_gates")
def _similarity_gates_fake(logits, embedding, scale):
    _check_args("similarity_gates", logits, embedding)
    return logits.new_empty(logits.shape)


@torch.library.register_fake("ial::similarity_gates_backward")
def _similarity_gates_backward_fake(grad, logits, embedding, scale):
    _check_args("similarity_gates_backward", logits, embedding)
    torch._check(grad.shape == logits.shape, lambda: "similarity_gates_backward: grad must have the shape of logits")
    return logits.new_empty(logits.shape), embedding.new_empty(embedding.shape)


torch.library.register_kernel("ial::similarity_gates", "cuda", similarity_gates_composite)
torch.library.register_kernel("ial::similarity_gates_backward", "cuda", _similarity_gates_backward_composite)


def _setup_context(ctx, inputs, output):
    logits, embedding, scale = inputs
    # The backward recomputes the affinities and the sigmoid: only the inputs are kept.
    ctx.save_for_backward(logits, embedding)
    ctx.scale = scale


def _backward(ctx, grad):
    logits, embedding = ctx.saved_tensors
    grad_logits, grad_embedding = torch.ops.ial.similarity_gates_backward.default(grad, logits, embedding, ctx.scale)
    return grad_logits, grad_embedding, None


torch.library.register_autograd("ial::similarity_gates", _backward, setup_context=_setup_context)
