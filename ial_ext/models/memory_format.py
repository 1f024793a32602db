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


def convolution_input(images: Tensor) -> Tensor:
    """`images` (B, C, H, W) in the memory format its convolutions run fastest in: channels-last
    on the CPU when no autograd graph is being built, as given otherwise. The values are the
    same; a network's output then is channels-last too (see `standard_layout`)."""
    if images.device.type == "cpu" and images.dim() == 4 and not torch.is_grad_enabled() and not exporting():
        return images.contiguous(memory_format=torch.channels_last)
    return images


def standard_layout(maps: Tensor) -> Tensor:
    """`maps` as contiguous NCHW, the layout the project's ops and callers expect."""
    return maps.contiguous()
