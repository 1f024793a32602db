"""The memory format the convolution stacks run in.

Without autograd on the CPU, oneDNN runs a channels-last (NHWC) input through its direct
convolution kernels, while an NCHW input goes through im2col and a matrix product: the frozen
unary network's forward at 321 px ran about a fifth faster, ResNet-50's a third, the guidance
CNN's a quarter (benchmarks/RESULTS.md, "Channels-last inference"). With autograd the NHWC
forward and backward measured slower, so training keeps NCHW; export traces the model as written.
"""
import torch
from torch import Tensor

from ..ops.export_mode import exporting


def channels_last_pays(images: Tensor) -> bool:
    """Whether the convolutions of `images` run channels-last: a (B, C, H, W) batch on the CPU,
    no autograd graph being built, not under export."""
    return images.device.type == "cpu" and images.dim() == 4 and not torch.is_grad_enabled() and not exporting()


def convolution_input(images: Tensor) -> Tensor:
    """`images` in the memory format its convolutions run fastest in (`channels_last_pays`), as
    given otherwise. The values are the same; a network's output then is channels-last too (see
    `standard_layout`)."""
    return images.contiguous(memory_format=torch.channels_last) if channels_last_pays(images) else images


def standard_layout(maps: Tensor) -> Tensor:
    """`maps` as contiguous NCHW, the layout the project's ops and callers expect."""
    return maps.contiguous()
