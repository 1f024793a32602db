"""Pure-PyTorch reference of ``spn_scan``: a Python loop over the scanned axis.

Used by the tests (in float64) and by the benchmarks as the code a user would
write without the compiled op (in float32, differentiated by autograd).
"""
import torch
import torch.nn.functional as F
from torch import Tensor


def _to_scan_layout(t: Tensor, direction: int) -> Tensor:
    """(B, C, H, W) -> (T, B, C, N): scanned axis first, in scan order."""
    t = t.permute(3, 0, 1, 2) if direction in (0, 1) else t.permute(2, 0, 1, 3)
    return t.flip(0) if direction in (1, 3) else t


def _from_scan_layout(t: Tensor, direction: int) -> Tensor:
    if direction in (1, 3):
        t = t.flip(0)
    return t.permute(1, 2, 3, 0) if direction in (0, 1) else t.permute(1, 2, 0, 3)


def spn_scan_reference(
    x: Tensor, gates: Tensor, direction: int, dtype: torch.dtype = torch.float64
) -> Tensor:
    """Same contract as ``ial_ext.ops.spn_scan``, computed in ``dtype``; shared gates
    (B, 3, H, W) broadcast over the channels of x."""
    if direction not in (0, 1, 2, 3):
        raise ValueError(f"direction must be 0, 1, 2 or 3, got {direction}")
    out_dtype = x.dtype
    x = _to_scan_layout(x.to(dtype), direction)
    a, b, c = (_to_scan_layout(g.to(dtype), direction) for g in gates.chunk(3, dim=1))
    n = x.shape[-1]
    if x.shape[0] == 0 or n == 0:
        return _from_scan_layout(x, direction).to(out_dtype)
    # A neighbour outside the image takes its gate out of both terms.
    inside_low = torch.ones(n, dtype=dtype, device=x.device)
    inside_low[0] = 0
    inside_high = torch.ones(n, dtype=dtype, device=x.device)
    inside_high[-1] = 0
    a = a * inside_low
    c = c * inside_high

    lines = [x[0]]
    for t in range(1, x.shape[0]):
        prev = F.pad(lines[-1], (1, 1))
        lines.append(
            (1 - a[t] - b[t] - c[t]) * x[t]
            + a[t] * prev[..., :-2]
            + b[t] * prev[..., 1:-1]
            + c[t] * prev[..., 2:]
        )
    return _from_scan_layout(torch.stack(lines), direction).to(out_dtype)
