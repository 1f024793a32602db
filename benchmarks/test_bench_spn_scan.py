"""spn_scan vs the pure-PyTorch loop a user would write (float32, autograd through the loop).

Bytes that must move per element of x: forward reads x and the three gates and
writes h (5 values); backward reads grad_h, x, the gates and h and writes grad_x
and the three gate gradients (10 values).
"""
import pytest
import torch

from ial_ext.ops import spn_scan, spn_scan_reference

from .conftest import calls_per_round, devices, repeated

SIZES = [(2, 21, 128, 128), (4, 21, 321, 321)]
VALUES_MOVED = {"forward": 5, "forward+backward": 15}


def scan_loop(x, gates, direction):
    return spn_scan_reference(x, gates, direction, dtype=torch.float32)


IMPLEMENTATIONS = {"ial_ext": spn_scan, "torch loop": scan_loop}


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("size", SIZES, ids=["x".join(map(str, s)) for s in SIZES])
@pytest.mark.parametrize("direction", [0, 1, 2, 3], ids=lambda d: f"dir{d}")
@pytest.mark.parametrize("mode", list(VALUES_MOVED))
@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
def test_spn_scan(benchmark, impl, mode, direction, size, device):
    b, c, h, w = size
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(size, generator=generator).to(device)
    gates = (torch.rand(b, 3 * c, h, w, generator=generator) / 3).to(device)
    grad = torch.randn(size, generator=generator).to(device)
    fn = IMPLEMENTATIONS[impl]
    # The loop launches thousands of small ops per call: one call per round is plenty.
    loop = impl == "torch loop"
    calls = 1 if loop else calls_per_round(device)
    rounds = 3 if loop and h * w > 128 * 128 else 15
    if mode == "forward":
        def call():
            with torch.no_grad():
                fn(x, gates, direction)
    else:
        x.requires_grad_()
        gates.requires_grad_()

        def call():
            torch.autograd.grad(fn(x, gates, direction), (x, gates), grad)

    benchmark.group = f"spn_scan {mode} {'x'.join(map(str, size))} dir{direction} {device}"
    benchmark.extra_info.update(
        kind="spn_scan", impl=impl, mode=mode, direction=direction, size=list(size), device=device,
        bytes=VALUES_MOVED[mode] * x.numel() * x.element_size(), calls=calls,
    )
    benchmark.pedantic(repeated(call, device, calls), rounds=rounds, warmup_rounds=1)
