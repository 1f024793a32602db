"""float16 / bfloat16 on the CPU ops (accumulating in float32) against the float64
references, and the autocast policy (every op runs in float32 under torch.autocast).

Tolerance: the inputs are rounded to the dtype before the op, and the reference is
computed in float64 on those same rounded values, so what is left is the op's own
error: float32 accumulation (~1e-6 relative) plus one rounding of each output to the
dtype, at most half its epsilon relative to the value. Every element must lie within
eps(dtype) * max |reference| of the reference (twice that one rounding, absorbing the
float32 part), and the whole tensor within eps(dtype) / 2 in relative norm.
"""
import pytest
import torch

from ial_ext.nn import SpatialPropagation
from ial_ext.ops import (
    spn_propagate,
    spn_propagate_reference,
    spn_scan,
    spn_scan_reference,
    superpixel_pool,
    superpixel_pool_reference,
    superpixel_unpool,
    superpixel_unpool_reference,
)

from .test_spn_propagate import random_inputs as propagate_inputs
from .test_spn_scan import random_inputs as scan_inputs

DTYPES = [torch.float16, torch.bfloat16]


def assert_within_rounding(out, ref, dtype):
    assert out.dtype == dtype
    eps = torch.finfo(dtype).eps
    error = (out.double() - ref).abs()
    scale = ref.abs().max().clamp_min(1e-30)
    assert error.max() <= eps * scale, (error.max() / scale).item()
    assert (error.norm() / ref.norm().clamp_min(1e-30)) <= eps / 2


def rounded(*tensors, dtype):
    """The inputs as the op sees them (rounded to dtype), in float64 for the reference."""
    low = [t.to(dtype) for t in tensors]
    return low, [t.double().requires_grad_() for t in low]


def grads_low_and_reference(fn, ref_fn, inputs, grad, dtype):
    low, high = rounded(*inputs, dtype=dtype)
    low = [t.requires_grad_() for t in low]
    out = fn(*low)
    got = torch.autograd.grad(out, low, grad.to(dtype))
    ref = ref_fn(*high)
    want = torch.autograd.grad(ref, high, grad.to(dtype).double())
    return out, ref.detach(), got, want


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["per-channel", "shared"])
@pytest.mark.parametrize("direction", [0, 1, 2, 3])
def test_spn_scan(dtype, layout, direction):
    x, gates = scan_inputs((2, 3, 21, 17), layout=layout)
    grad = torch.randn_like(x)
    out, ref, got, want = grads_low_and_reference(
        lambda a, g: spn_scan(a, g, direction), lambda a, g: spn_scan_reference(a, g, direction),
        (x, gates), grad, dtype)
    assert_within_rounding(out, ref, dtype)
    for g, w in zip(got, want):
        assert_within_rounding(g, w, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["shared", "per-channel"])
def test_spn_propagate(dtype, layout):
    x, guidance = propagate_inputs((2, 3, 19, 16), layout)
    grad = torch.randn_like(x)
    out, ref, got, want = grads_low_and_reference(spn_propagate, spn_propagate_reference, (x, guidance), grad, dtype)
    assert_within_rounding(out, ref, dtype)
    for g, w in zip(got, want):
        assert_within_rounding(g, w, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_superpixel_pool_and_unpool(dtype):
    x = torch.randn(2, 5, 16, 18, dtype=torch.float64)
    labels = torch.randint(-1, 12, (2, 16, 18))
    pooled = torch.randn(2, 12, 5, dtype=torch.float64)
    out, ref, got, want = grads_low_and_reference(
        lambda a: superpixel_pool(a, labels, 12), lambda a: superpixel_pool_reference(a, labels, 12),
        (x,), torch.randn(2, 12, 5, dtype=torch.float64), dtype)
    assert_within_rounding(out, ref, dtype)
    assert_within_rounding(got[0], want[0], dtype)
    out, ref, got, want = grads_low_and_reference(
        lambda p: superpixel_unpool(p, labels), lambda p: superpixel_unpool_reference(p, labels),
        (pooled,), torch.randn(2, 5, 16, 18, dtype=torch.float64), dtype)
    assert_within_rounding(out, ref, dtype)
    assert_within_rounding(got[0], want[0], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_under_autocast_mixed_inputs_run_in_float32(dtype):
    """Under autocast a convolution's gates come out in the low dtype next to float32
    probabilities: the ops take the mix and return float32, and their gradients reach
    each input in its own dtype."""
    x = torch.rand(2, 3, 12, 10).softmax(1).requires_grad_()
    gates = (torch.rand(2, 3, 12, 10) / 3).to(dtype).requires_grad_()
    guidance = torch.randn(2, 12, 12, 10).to(dtype).requires_grad_()
    labels = torch.randint(0, 6, (2, 12, 10))
    with torch.autocast("cpu", dtype=dtype):
        h = spn_scan(x, gates, 1)
        refined = spn_propagate(x, guidance)
        pooled = superpixel_pool(guidance, labels, 6)
        smooth = superpixel_unpool(pooled.to(dtype), labels)
    for out in (h, refined, pooled, smooth):
        assert out.dtype == torch.float32
    torch.testing.assert_close(refined, spn_propagate(x, guidance.float()))
    (h.sum() + refined.sum() + smooth.sum()).backward()
    assert x.grad.dtype == torch.float32 and gates.grad.dtype == dtype and guidance.grad.dtype == dtype


def test_spatial_propagation_after_a_convolution_under_autocast():
    conv = torch.nn.Conv2d(3, 12, 3, padding=1)
    image = torch.randn(2, 3, 16, 16)
    unary = torch.rand(2, 4, 16, 16).softmax(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        guidance = conv(image)
        assert guidance.dtype == torch.bfloat16
        refined = SpatialPropagation()(unary, guidance)
    assert refined.dtype == torch.float32
    refined.sum().backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()
