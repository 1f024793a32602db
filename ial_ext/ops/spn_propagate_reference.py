"""Pure-PyTorch reference of ``spn_propagate``: normalise, four ``spn_scan_reference``
scans, element-wise max with the gradient to the first maximal direction
(torch.max over a dimension routes it so)."""
from typing import Optional

import torch
from torch import Tensor

from .gate_normalization import NUM_DIRECTIONS, normalize_gates
from .spn_propagate import scale_guidance
from .spn_scan_reference import spn_scan_reference


def spn_propagate_reference(
    x: Tensor, guidance: Tensor, strength: Optional[Tensor] = None, dtype: torch.dtype = torch.float64
) -> Tensor:
    """Same contract as ``ial_ext.ops.spn_propagate``, computed in ``dtype``."""
    out_dtype = x.dtype
    x = x.to(dtype)
    if strength is not None:
        guidance = scale_guidance(guidance.to(dtype), strength.to(dtype))
    scans = [
        spn_scan_reference(x, normalize_gates(gates.to(dtype)), direction, dtype=dtype)
        for direction, gates in enumerate(guidance.chunk(NUM_DIRECTIONS, dim=1))
    ]
    return torch.stack(scans).max(dim=0).values.to(out_dtype)
