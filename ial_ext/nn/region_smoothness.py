"""The region smoothness loss of the pairwise network (paper, section 3.2.2, eq. 8)."""
import torch
from torch import Tensor, nn

from ..ops.superpixel_pool import superpixel_pool, superpixel_unpool


class RegionSmoothnessLoss(nn.Module):
    """L_s = ||G - G_s||^2 with G_s the mean of G over each superpixel.

    forward(G, segments, num_segments):
        G: (B, C, H, W) float32/float64, the learned affinities (e.g. the
            pairwise network's 12C gate maps).
        segments: (B, H, W) int64 superpixel ids in [0, num_segments), -1 =
            ignored pixel.
        num_segments: K, the number of ids (the largest id + 1 or more).

    Returns a scalar: the mean of (G - G_s)^2 over every channel of every
    non-ignored pixel of the batch, i.e. sum / (C * number of pixels with an id
    >= 0); 0 (still attached to G) when no pixel has an id. Ignored pixels add
    nothing and get a zero gradient.

    ``detach_target``: whether G_s = unpool(pool(G)) is treated as a constant.
    It does not change the gradient: pool-then-unpool by means is the
    orthogonal projection P onto maps constant within each superpixel, so
    d||G - PG||^2/dG = 2(I - P)^T (I - P) G = 2(G - PG), which is also the
    gradient with PG held fixed. Detaching (the default) therefore gives the
    exact gradient of eq. 8 and skips the backward of both ops.
    """

    def __init__(self, detach_target: bool = True):
        super().__init__()
        self.detach_target = detach_target

    def forward(self, G: Tensor, segments: Tensor, num_segments: int) -> Tensor:
        if G.dim() != 4:
            raise ValueError(f"G must be (B, C, H, W), got shape {tuple(G.shape)}")
        valid = (segments >= 0).unsqueeze(1).to(G.dtype)
        count = (valid.sum() * G.shape[1]).clamp_min(1)
        if self.detach_target:
            with torch.no_grad():
                means = superpixel_unpool(superpixel_pool(G, segments, num_segments), segments)
            return _SquaredDistance.apply(G, means, valid) / count
        means = superpixel_unpool(superpixel_pool(G, segments, num_segments), segments)
        return ((G - means).square() * valid).sum() / count

    def extra_repr(self) -> str:
        return f"detach_target={self.detach_target}"


class _SquaredDistance(torch.autograd.Function):
    """sum(valid (G - target)^2) with the target constant: keeps only the masked difference
    for the backward (2 valid (G - target)), where autograd would also keep its square."""

    @staticmethod
    def forward(ctx, G: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        difference = (G - target).mul_(valid)
        ctx.save_for_backward(difference)
        return torch.linalg.vector_norm(difference).square()

    @staticmethod
    def backward(ctx, grad: Tensor):
        (difference,) = ctx.saved_tensors
        return difference * (2 * grad), None, None
