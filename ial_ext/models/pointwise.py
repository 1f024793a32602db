"""1x1 convolutions of full-resolution maps on the CPU, as batched matrix products.

oneDNN reorders NCHW maps into its blocked layout and back for a 1x1 convolution, which at
full resolution costs several times the product itself (benchmarks/RESULTS.md, "The pairwise
iteration with the similarity gates as one op"). Several 1x1 heads of one input (the guidance
CNN's gates and embedding) also accumulate their input gradient in one buffer instead of adding
one full-size gradient per head. The parameters are those of nn.Conv2d(in, out, 1), so
checkpoints load either way; under export and on other devices the convolution runs.
"""
import torch
from torch import Tensor, nn

from ..ops.export_mode import exporting


def _as_products(x: Tensor) -> bool:
    return x.device.type == "cpu" and x.dim() == 4 and not exporting()


def _product(weight: Tensor, bias: Tensor | None, flat: Tensor) -> Tensor:
    """(B, out, N) = weight (out, in) @ flat (B, in, N) + bias."""
    expanded = weight.view(1, *weight.shape[:2]).expand(flat.shape[0], -1, -1)
    if bias is None:
        return torch.bmm(expanded, flat)
    return torch.baddbmm(bias.view(1, -1, 1), expanded, flat)


class PointwiseConv2d(nn.Conv2d):
    """nn.Conv2d(in_channels, out_channels, 1), a batched matrix product on the CPU."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        if not _as_products(x):
            return super().forward(x)
        b, c, h, w = x.shape
        return _product(self.weight, self.bias, x.reshape(b, c, h * w)).view(b, self.out_channels, h, w)


class _PointwiseHeads(torch.autograd.Function):
    """x -> (W_i x + b_i for every head); the backward writes sum_i W_i^T g_i into one buffer."""

    @staticmethod
    def forward(ctx, x: Tensor, *parameters: Tensor):
        b, c, h, w = x.shape
        flat = x.reshape(b, c, h * w)
        weights, biases = parameters[0::2], parameters[1::2]
        ctx.save_for_backward(flat, *weights)
        ctx.input_shape = x.shape
        return tuple(_product(weight, bias, flat).view(b, -1, h, w) for weight, bias in zip(weights, biases))

    @staticmethod
    def backward(ctx, *grads: Tensor):
        flat, *weights = ctx.saved_tensors
        b = flat.shape[0]
        grad_x = None
        grad_parameters = []
        for weight, grad in zip(weights, grads):
            if grad is None:
                grad_parameters += [None, None]
                continue
            # Under autocast the outputs (and so their gradients) may be of a lower precision.
            grad = grad.reshape(b, weight.shape[0], -1)
            transposed = weight.view(weight.shape[:2]).t().to(grad.dtype).unsqueeze(0).expand(b, -1, -1)
            grad_x = torch.bmm(transposed, grad) if grad_x is None else grad_x.baddbmm_(transposed, grad)
            grad_weight = torch.bmm(grad, flat.transpose(1, 2).to(grad.dtype)).sum(dim=0).view_as(weight)
            grad_parameters += [grad_weight.to(weight.dtype), grad.sum(dim=(0, 2)).to(weight.dtype)]
        if grad_x is not None:
            grad_x = grad_x.view(ctx.input_shape).to(flat.dtype)
        return (grad_x, *grad_parameters)


def pointwise_heads(x: Tensor, *heads: PointwiseConv2d) -> tuple[Tensor, ...]:
    """Every head applied to x, (head(x) for head in heads), with biased heads."""
    if not _as_products(x) or any(head.bias is None for head in heads):
        return tuple(head(x) for head in heads)
    parameters = [p for head in heads for p in (head.weight, head.bias)]
    return _PointwiseHeads.apply(x, *parameters)
