"""Pure-PyTorch reference of ``similarity_gates``: each link's neighbour by clamped indexing.

Independent of the padded-slice composite (``similarity_gates_composite``); used by the
tests in float64.
"""
import torch
from torch import Tensor

from .gate_normalization import GATES_PER_DIRECTION, NEIGHBOUR_OFFSETS


def similarity_gates_reference(
    logits: Tensor, embedding: Tensor, scale: float = 1.0, dtype: torch.dtype = torch.float64
) -> Tensor:
    """Same contract as ``ial_ext.ops.similarity_gates``, computed in ``dtype``."""
    out_dtype = logits.dtype
    logits, embedding = logits.to(dtype), embedding.to(dtype)
    b, channels, h, w = logits.shape
    maps = channels // (len(NEIGHBOUR_OFFSETS) * GATES_PER_DIRECTION)
    rows = torch.arange(h, device=logits.device)
    columns = torch.arange(w, device=logits.device)
    gates = []
    for offsets in NEIGHBOUR_OFFSETS:
        for dy, dx in offsets:
            q_rows = (rows + dy).clamp(0, h - 1)
            q_columns = (columns + dx).clamp(0, w - 1)
            neighbour = embedding[:, :, q_rows][:, :, :, q_columns]
            affinity = torch.exp(-((embedding - neighbour) ** 2).sum(dim=1, keepdim=True))
            gates.append(affinity.expand(b, maps, h, w))
    affinity = torch.cat(gates, dim=1)
    return (scale * torch.sigmoid(logits) * affinity).to(out_dtype)
