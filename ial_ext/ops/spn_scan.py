"""SPN directional propagation: ``torch.ops.ial.spn_scan``.

The kernels live in csrc/spn_scan; this module registers what PyTorch needs
around them (autograd formula and fake kernels for tracing/compilation).
"""
import torch
from torch import Tensor

from .checks import check_like_x

LEFT_TO_RIGHT, RIGHT_TO_LEFT, TOP_TO_BOTTOM, BOTTOM_TO_TOP = range(4)


def spn_scan(x: Tensor, gates: Tensor, direction: int) -> Tensor:
    """Linear spatial propagation of ``x`` along one scan direction.

    Args:
        x: (B, C, H, W) float32, float64, float16 or bfloat16 (the last two
            accumulate in float32).
        gates: [a | b | c] of the dtype of x, either (B, 3C, H, W), one set per
            channel, or (B, 3, H, W), one set shared by all C channels (its
            gradient is then summed over the channels; C = 1 is both). At every
            pixel a, b and c weigh the three neighbours of the previous
            row/column (lower index, same index, higher index).
        direction: 0 left->right, 1 right->left, 2 top->bottom, 3 bottom->top.

    Returns:
        h of the shape of x, with
        ``h_t = (1 - a - b - c) x_t + a h_{t-1}[i-1] + b h_{t-1}[i] + c h_{t-1}[i+1]``
        where gates whose neighbour lies outside the image are dropped from
        both terms. The op does not normalise the gates.
    """
    return torch.ops.ial.spn_scan.default(x, gates, direction)


def _check_args(x: Tensor, gates: Tensor, direction: int) -> None:
    # Mirrors the C++ checks so traced/compiled code fails with the same message.
    torch._check(x.dim() == 4, lambda: f"spn_scan: x must be 4-D (B, C, H, W), got {x.dim()}-D")
    torch._check(
        gates.dim() == 4,
        lambda: f"spn_scan: gates must be 4-D, (B, 3C, H, W) or (B, 3, H, W), got {gates.dim()}-D",
    )
    torch._check(
        0 <= direction <= 3,
        lambda: f"spn_scan: direction must be 0, 1, 2 or 3, got {direction}",
    )
    torch._check(
        x.dtype.is_floating_point, lambda: f"spn_scan: x must be floating point, got {x.dtype}"
    )
    check_like_x("spn_scan", "gates", gates, x)
    b, c, h, w = x.shape
    torch._check(
        tuple(gates.shape) in ((b, 3 * c, h, w), (b, 3, h, w)),
        lambda: f"spn_scan: gates must have shape (B, 3C, H, W) = {(b, 3 * c, h, w)} or, shared by the "
        f"channels, (B, 3, H, W) = {(b, 3, h, w)} for x of shape {tuple(x.shape)}, got {tuple(gates.shape)}",
    )


@torch.library.register_fake("ial::spn_scan")
def _spn_scan_fake(x, gates, direction):
    _check_args(x, gates, direction)
    return x.new_empty(x.shape)


@torch.library.register_fake("ial::spn_scan_backward")
def _spn_scan_backward_fake(grad_h, x, gates, h, direction):
    _check_args(x, gates, direction)
    torch._check(grad_h.shape == x.shape, lambda: "spn_scan_backward: grad_h must match x")
    torch._check(h.shape == x.shape, lambda: "spn_scan_backward: h must match x")
    return x.new_empty(x.shape), gates.new_empty(gates.shape)


def _setup_context(ctx, inputs, output):
    x, gates, direction = inputs
    # The backward pass needs only the inputs and h itself.
    ctx.save_for_backward(x, gates, output)
    ctx.direction = direction


def _backward(ctx, grad_h):
    x, gates, h = ctx.saved_tensors
    grad_x, grad_gates = torch.ops.ial.spn_scan_backward.default(grad_h, x, gates, h, ctx.direction)
    return grad_x, grad_gates, None


torch.library.register_autograd("ial::spn_scan", _backward, setup_context=_setup_context)
