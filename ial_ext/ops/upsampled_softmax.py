"""The unary probabilities in one op: ``torch.ops.ial.upsampled_softmax``.

``upsampled_softmax(logits, size, present)`` is the softmax over the classes of the
logits resized bilinearly (align_corners=False) to ``size``, with the classes not
``present`` in an image at probability 0: ``alpha_u`` of a segmentation network whose
logits come at its output stride. The CPU kernel (csrc/upsampled_softmax) writes the
output once, without the resized logits as a tensor; its backward is the composite's.
Under export, and on CUDA, the composite below runs (torch ops).
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .export_mode import exporting


def upsampled_softmax(logits: Tensor, size: Sequence[int], present: Optional[Tensor] = None) -> Tensor:
    """Class probabilities (B, C, H, W) from logits (B, C, h, w).

    Args:
        logits: (B, C, h, w) float32, float64, float16 or bfloat16 (the last two
            computed in float32).
        size: (H, W) of the output.
        present: optional (B, C) bool on the logits' device: the classes an image
            may contain. The others get probability 0; where an image has none,
            every class gets 1 / C.

    Returns:
        softmax over dim 1 of F.interpolate(logits, size, mode="bilinear",
        align_corners=False), with absent classes' logits at the dtype's lowest value.
    """
    size = [int(s) for s in size]
    if exporting():
        return upsampled_softmax_composite(logits, size, present)
    return torch.ops.ial.upsampled_softmax.default(logits, size, present)


def upsampled_softmax_composite(logits: Tensor, size: Sequence[int], present: Optional[Tensor] = None) -> Tensor:
    """``upsampled_softmax`` from torch ops (any device, differentiable by autograd)."""
    resized = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
    if present is not None:
        resized = resized.masked_fill(~present[:, :, None, None], torch.finfo(resized.dtype).min)
    return resized.softmax(dim=1)


def _check_args(logits: Tensor, size, present: Optional[Tensor]) -> None:
    # Mirrors check_softmax_args in csrc/upsampled_softmax/upsampled_softmax.cpp.
    op = "upsampled_softmax"
    torch._check(logits.dim() == 4, lambda: f"{op}: logits must be 4-D (B, C, h, w), got {logits.dim()}-D")
    torch._check(
        logits.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64),
        lambda: f"{op}: logits must be float16, bfloat16, float32 or float64, got {logits.dtype}",
    )
    torch._check(logits.shape[1] > 0, lambda: f"{op}: logits must have at least one class, got shape "
                 f"{tuple(logits.shape)}")
    torch._check(len(size) == 2, lambda: f"{op}: size must be (H, W), got {len(size)} numbers")
    torch._check(size[0] > 0 and size[1] > 0, lambda: f"{op}: size must be positive, got {list(size)}")
    if present is not None:
        torch._check(present.dtype == torch.bool, lambda: f"{op}: present must be a bool tensor, got {present.dtype}")
        b, c = logits.shape[:2]
        torch._check(
            tuple(present.shape) == (b, c),
            lambda: f"{op}: present must have shape (B, C) = {(b, c)} for logits of shape {tuple(logits.shape)}, "
            f"got {tuple(present.shape)}",
        )
        torch._check(
            present.device == logits.device,
            lambda: f"{op}: present must be on the device of logits ({logits.device}), got {present.device}",
        )


@torch.library.register_fake("ial::upsampled_softmax")
def _upsampled_softmax_fake(logits, size, present=None):
    _check_args(logits, size, present)
    return logits.new_empty((logits.shape[0], logits.shape[1], size[0], size[1]))


torch.library.register_kernel("ial::upsampled_softmax", "cuda", upsampled_softmax_composite)


def _setup_context(ctx, inputs, output):
    logits, _, present = inputs
    ctx.input_size = list(logits.shape)
    ctx.save_for_backward(output, present)


def _backward(ctx, grad):
    probabilities, present = ctx.saved_tensors
    # The softmax's backward, then the resize's. Absent classes get none: their logits are
    # replaced (where an image has no class, its uniform probabilities depend on no logit).
    grad_resized = probabilities * (grad - (grad * probabilities).sum(dim=1, keepdim=True))
    if present is not None:
        grad_resized = grad_resized * present[:, :, None, None]
    return _resize_backward(grad_resized, ctx.input_size), None, None


def _resize_backward(grad_resized: Tensor, input_size) -> Tensor:
    # The resize's adjoint by autograd of F.interpolate (whose own backward op has no fake
    # kernel for symbolic sizes).
    with torch.enable_grad():
        logits = grad_resized.new_zeros(input_size).requires_grad_()
        resized = F.interpolate(logits, size=grad_resized.shape[2:], mode="bilinear", align_corners=False)
        return torch.autograd.grad(resized, logits, grad_resized)[0]


torch.library.register_autograd("ial::upsampled_softmax", _backward, setup_context=_setup_context)
