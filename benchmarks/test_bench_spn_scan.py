"""spn_scan vs the pure-PyTorch loop a user would write (float32, autograd through the loop),
for both gate layouts; and the fused propagation (spn_propagate) vs its composite.

Values that must move per element of x (the roofline numerator), with g = gate
values per element of x (3 per channel, 3 / C shared): the scan's forward reads x
and the gates and writes h (2 + g); its backward reads grad_h, x, the gates and h
and writes grad_x and the gate gradients (4 + 2g). The propagation moves its
inputs and outputs once: forward x, guidance (4g) and the output; backward
grad, x, guidance, grad_x and grad_guidance.
"""
import pytest
import torch

from ial_ext.nn import SpatialPropagation
from ial_ext.ops import spn_scan, spn_scan_reference

from .conftest import calls_per_round, devices, repeated

SIZES = [(2, 21, 128, 128), (4, 21, 321, 321)]
PROPAGATION_SIZES = [(4, 21, 321, 321), (8, 21, 321, 321)]
LAYOUTS = ["per-channel", "shared"]


def gate_values(layout, channels):
    return 3.0 if layout == "per-channel" else 3.0 / channels


def values_moved(mode, g):
    forward = 2 + g
    return forward if mode == "forward" else forward + 4 + 2 * g


def scan_loop(x, gates, direction):
    return spn_scan_reference(x, gates, direction, dtype=torch.float32)


IMPLEMENTATIONS = {"ial_ext": spn_scan, "torch loop": scan_loop}


def timed_call(fn, inputs, grad, mode):
    if mode == "forward":
        def call():
            with torch.no_grad():
                fn(*inputs)
        return call
    for t in inputs:
        t.requires_grad_()

    def call():
        torch.autograd.grad(fn(*inputs), inputs, grad)
    return call


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("size", SIZES, ids=["x".join(map(str, s)) for s in SIZES])
@pytest.mark.parametrize("direction", [0, 1, 2, 3], ids=lambda d: f"dir{d}")
@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
def test_spn_scan(benchmark, impl, layout, mode, direction, size, device):
    b, c, h, w = size
    if impl == "torch loop" and layout == "shared":
        pytest.skip("the loop's cost does not depend on the gate layout; timed per channel only")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(size, generator=generator).to(device)
    sets = c if layout == "per-channel" else 1
    gates = (torch.rand(b, 3 * sets, h, w, generator=generator) / 3).to(device)
    grad = torch.randn(size, generator=generator).to(device)
    fn = IMPLEMENTATIONS[impl]
    # The loop launches thousands of small ops per call: one call per round is plenty.
    loop = impl == "torch loop"
    calls = 1 if loop else calls_per_round(device)
    rounds = 3 if loop and h * w > 128 * 128 else 15
    call = timed_call(lambda a, g: fn(a, g, direction), (x, gates), grad, mode)
    benchmark.group = f"spn_scan {mode} {'x'.join(map(str, size))} {layout} dir{direction} {device}"
    benchmark.extra_info.update(
        kind="spn_scan", impl=impl, mode=mode, direction=direction, size=list(size), device=device,
        case=f"{layout} gates, dir {direction}", calls=calls,
        bytes=int(values_moved(mode, gate_values(layout, c)) * x.numel() * x.element_size()),
    )
    benchmark.pedantic(repeated(call, device, calls), rounds=rounds, warmup_rounds=1)


PROPAGATION = {
    "ial_ext": SpatialPropagation(fused=True),
    "composite": SpatialPropagation(fused=False),  # normalize_gates + 4 spn_scan + torch.maximum
}


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("size", PROPAGATION_SIZES, ids=["x".join(map(str, s)) for s in PROPAGATION_SIZES])
@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
@pytest.mark.parametrize("layout", [*LAYOUTS, "shared+strength"])
@pytest.mark.parametrize("impl", list(PROPAGATION))
def test_spn_propagate(benchmark, impl, layout, mode, size, device):
    b, c, h, w = size
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(size, generator=generator).to(device)
    sets = c if layout == "per-channel" else 1
    guidance = (torch.randn(b, 12 * sets, h, w, generator=generator) * 0.5).to(device)
    grad = torch.randn(size, generator=generator).to(device)
    inputs = (x, guidance)
    if layout == "shared+strength":  # the pairwise network's default: a (4, C) strength on shared gates
        inputs += ((0.5 + torch.rand(4, c, generator=generator)).to(device),)
        layout = "shared"  # the same bytes move: the strengths scale the gates in cache
    call = timed_call(PROPAGATION[impl], inputs, grad, mode)
    g = 4 * gate_values(layout, c)
    values = 2 + g if mode == "forward" else 2 + g + 3 + 2 * g
    calls = calls_per_round(device)
    benchmark.group = f"spn_propagate {mode} {'x'.join(map(str, size))} {layout} {device}"
    benchmark.extra_info.update(
        kind="spn_propagate", impl=impl, mode=mode, size=list(size), device=device,
        case=f"{layout} guidance" + (" + strength" if len(inputs) == 3 else ""),
        bytes=int(values * x.numel() * x.element_size()), calls=calls,
    )
    benchmark.pedantic(repeated(call, device, calls), rounds=5, warmup_rounds=1)
