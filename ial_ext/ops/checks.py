"""Argument checks the ops' fake kernels share (mirroring the C++ TORCH_CHECKs)."""
import torch
from torch import Tensor


def check_like_x(op: str, name: str, tensor: Tensor, x: Tensor) -> None:
    """`tensor` (an input called `name`) has the dtype and the device of x."""
    torch._check(
        tensor.dtype == x.dtype, lambda: f"{op}: {name} must have the dtype of x ({x.dtype}), got {tensor.dtype}"
    )
    torch._check(
        tensor.device == x.device,
        lambda: f"{op}: {name} must be on the device of x ({x.device}), got {tensor.device}",
    )
