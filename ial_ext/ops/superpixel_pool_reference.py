"""Pure-PyTorch references of ``superpixel_pool`` and ``superpixel_unpool``.

index_add_ sums with per-segment counts; used by the tests (in float64) and
by the benchmarks as the code a user would write without the compiled ops.
Both are differentiable by autograd.
"""
import torch
from torch import Tensor


def _flat_ids(labels: Tensor, num_segments: int) -> Tensor:
    """(B, H, W) ids -> (B * H * W,) indices into a (B * (K + 1)) table whose
    last row of every image collects the ignored pixels."""
    if labels.dtype != torch.int64:
        raise TypeError(f"labels must be int64, got {labels.dtype}")
    bad = (labels < -1) | (labels >= num_segments)
    if bad.any():
        raise ValueError(f"labels hold ids outside [-1, {num_segments})")
    b = labels.shape[0]
    ids = torch.where(labels < 0, num_segments, labels)
    offsets = torch.arange(b, device=labels.device).view(b, 1, 1) * (num_segments + 1)
    return (ids + offsets).reshape(-1)


def superpixel_pool_reference(
    x: Tensor, labels: Tensor, num_segments: int, dtype: torch.dtype = torch.float64
) -> Tensor:
    """Same contract as ``ial_ext.ops.superpixel_pool``, computed in ``dtype``."""
    b, c, h, w = x.shape
    out_dtype = x.dtype
    flat = _flat_ids(labels, num_segments)
    values = x.to(dtype).permute(0, 2, 3, 1).reshape(-1, c)
    sums = values.new_zeros(b * (num_segments + 1), c).index_add(0, flat, values)
    counts = values.new_zeros(b * (num_segments + 1)).index_add(
        0, flat, values.new_ones(flat.shape[0])
    )
    means = sums / counts.clamp_min(1).unsqueeze(1)
    return means.view(b, num_segments + 1, c)[:, :num_segments].to(out_dtype)


def superpixel_unpool_reference(pooled: Tensor, labels: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """Same contract as ``ial_ext.ops.superpixel_unpool``, computed in ``dtype``."""
    b, k, c = pooled.shape
    out_dtype = pooled.dtype
    flat = _flat_ids(labels, k)
    table = torch.cat([pooled.to(dtype), pooled.new_zeros(b, 1, c, dtype=dtype)], dim=1)
    out = table.reshape(b * (k + 1), c).index_select(0, flat)
    h, w = labels.shape[1:]
    return out.view(b, h, w, c).permute(0, 3, 1, 2).to(out_dtype)
