"""The float64 reference of ``upsampled_softmax``: its definition in torch ops."""
from typing import Optional, Sequence

from torch import Tensor

from .upsampled_softmax import upsampled_softmax_composite


def upsampled_softmax_reference(logits: Tensor, size: Sequence[int], present: Optional[Tensor] = None) -> Tensor:
    """upsampled_softmax in float64 (the result has the input's dtype)."""
    return upsampled_softmax_composite(logits.double(), size, present).to(logits.dtype)
