"""Superpixel mask pooling: ``torch.ops.ial.superpixel_pool`` / ``superpixel_unpool``.

The kernels live in csrc/superpixel_pool; this module registers what PyTorch
needs around them (autograd formulas and fake kernels for tracing/compilation).

Segment ids are int64; -1 marks an ignored pixel. An id outside
[-1, num_segments) raises a RuntimeError naming the pixel and the id. With
``check_ids=False`` the caller guarantees the ids: nothing is checked (on CUDA
that saves a device-to-host synchronisation) and a bad id is never used as an
index, its pixel is treated like -1.
"""
import torch
from torch import Tensor


def superpixel_pool(x: Tensor, labels: Tensor, num_segments: int, check_ids: bool = True) -> Tensor:
    """Mean of ``x`` over the pixels of every segment.

    Args:
        x: (B, C, H, W) float32, float64, float16 or bfloat16 (the last two sum in float32).
        labels: (B, H, W) int64 segment ids in [0, num_segments), -1 = ignored.
        num_segments: K, the number of segments (rows of the output).
        check_ids: raise on ids outside [-1, K) (costs a sync on CUDA).

    Returns:
        (B, K, C): row k is the mean of x over the pixels with id k, 0 for a
        segment without pixels. Differentiable in ``x``.
    """
    return torch.ops.ial.superpixel_pool.default(x, labels, num_segments, check_ids)


def superpixel_unpool(pooled: Tensor, labels: Tensor, check_ids: bool = True) -> Tensor:
    """Paints every pixel with the row of its segment.

    Args:
        pooled: (B, K, C) float32, float64, float16 or bfloat16.
        labels: (B, H, W) int64 segment ids in [0, K), -1 = ignored.
        check_ids: raise on ids outside [-1, K) (costs a sync on CUDA).

    Returns:
        (B, C, H, W) with ``out[b, :, i, j] = pooled[b, labels[b, i, j]]`` and 0
        where the id is -1. Differentiable in ``pooled``.
    """
    return torch.ops.ial.superpixel_unpool.default(pooled, labels, check_ids)


def _check_labels(op: str, labels: Tensor, data: Tensor, name: str) -> None:
    torch._check(labels.dim() == 3, lambda: f"{op}: labels must be 3-D (B, H, W), got {labels.dim()}-D")
    torch._check(
        labels.dtype == torch.int64,
        lambda: f"{op}: labels must be int64 (torch.long) segment ids, got {labels.dtype}",
    )
    torch._check(
        labels.device == data.device,
        lambda: f"{op}: labels must be on the device of {name} ({data.device}), got {labels.device}",
    )


def _check_float(op: str, t: Tensor, name: str) -> None:
    torch._check(
        t.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64),
        lambda: f"{op}: {name} must be float16, bfloat16, float32 or float64, got {t.dtype}",
    )


def _check_image_args(op: str, x: Tensor, labels: Tensor, num_segments: int, name: str) -> None:
    # Mirrors check_image_args in csrc/superpixel_pool/superpixel_pool.cpp.
    torch._check(x.dim() == 4, lambda: f"{op}: {name} must be 4-D (B, C, H, W), got {x.dim()}-D")
    _check_float(op, x, name)
    _check_labels(op, labels, x, name)
    torch._check(num_segments >= 0, lambda: f"{op}: num_segments must be >= 0, got {num_segments}")
    torch._check(
        num_segments < 2**31 - 1, lambda: f"{op}: num_segments must be < 2^31 - 1, got {num_segments}"
    )
    b, _, h, w = x.shape
    torch._check(
        labels.shape == (b, h, w),
        lambda: f"{op}: labels must have shape (B, H, W) = {(b, h, w)} to match {name} of shape "
        f"{tuple(x.shape)}, got {tuple(labels.shape)}",
    )


def _check_pooled_args(op: str, pooled: Tensor, labels: Tensor, name: str) -> None:
    # Mirrors check_pooled_args in csrc/superpixel_pool/superpixel_pool.cpp.
    torch._check(pooled.dim() == 3, lambda: f"{op}: {name} must be 3-D (B, K, C), got {pooled.dim()}-D")
    _check_float(op, pooled, name)
    _check_labels(op, labels, pooled, name)
    torch._check(
        labels.shape[0] == pooled.shape[0],
        lambda: f"{op}: labels must have the batch size of {name} ({pooled.shape[0]}), "
        f"got labels of shape {tuple(labels.shape)}",
    )


@torch.library.register_fake("ial::superpixel_pool")
def _superpixel_pool_fake(x, labels, num_segments, check_ids=True):
    _check_image_args("superpixel_pool", x, labels, num_segments, "x")
    return x.new_empty((x.shape[0], num_segments, x.shape[1]))


@torch.library.register_fake("ial::superpixel_pool_backward")
def _superpixel_pool_backward_fake(grad, labels, check_ids=True):
    _check_pooled_args("superpixel_pool_backward", grad, labels, "grad")
    return grad.new_empty((grad.shape[0], grad.shape[2], labels.shape[1], labels.shape[2]))


@torch.library.register_fake("ial::superpixel_unpool")
def _superpixel_unpool_fake(pooled, labels, check_ids=True):
    _check_pooled_args("superpixel_unpool", pooled, labels, "pooled")
    return pooled.new_empty((pooled.shape[0], pooled.shape[2], labels.shape[1], labels.shape[2]))


@torch.library.register_fake("ial::superpixel_unpool_backward")
def _superpixel_unpool_backward_fake(grad, labels, num_segments, check_ids=True):
    _check_image_args("superpixel_unpool_backward", grad, labels, num_segments, "grad")
    return grad.new_empty((grad.shape[0], num_segments, grad.shape[1]))


# The forward ops have checked the ids (or the caller vouched for them), so the
# backward ops skip the check: on CUDA that avoids a synchronisation per step.


def _pool_setup_context(ctx, inputs, output):
    _, labels, _, _ = inputs
    ctx.save_for_backward(labels)


def _pool_backward(ctx, grad):
    (labels,) = ctx.saved_tensors
    grad_x = torch.ops.ial.superpixel_pool_backward.default(grad, labels, False)
    return grad_x, None, None, None


def _unpool_setup_context(ctx, inputs, output):
    pooled, labels, _ = inputs
    ctx.save_for_backward(labels)
    ctx.num_segments = pooled.shape[1]


def _unpool_backward(ctx, grad):
    (labels,) = ctx.saved_tensors
    grad_pooled = torch.ops.ial.superpixel_unpool_backward.default(grad, labels, ctx.num_segments, False)
    return grad_pooled, None, None


torch.library.register_autograd("ial::superpixel_pool", _pool_backward, setup_context=_pool_setup_context)
torch.library.register_autograd(
    "ial::superpixel_unpool", _unpool_backward, setup_context=_unpool_setup_context
)
