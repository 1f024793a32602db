"""spn_propagate with a strength per direction and channel on the CPU: the float64
reference, the composite the CUDA path runs, gradcheck, opcheck, torch.compile, errors
(determinism for a thread count: test_spn_propagate.py)."""
import pytest
import torch

from ial_ext.ops import spn_propagate, spn_propagate_reference
from ial_ext.ops.spn_propagate import propagate_backward_composite, propagate_composite

from .test_spn_propagate import LAYOUTS, SHAPES, random_inputs, random_strength, relative_error


def reference_grads(x, guidance, strength, grad):
    inputs = [t.double().requires_grad_() for t in (x, guidance, strength)]
    return torch.autograd.grad(
        spn_propagate_reference(*inputs), inputs, grad.double(), allow_unused=True, materialize_grads=True
    )


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference_float64(shape, layout):
    x, guidance = random_inputs(shape, layout)
    strength = random_strength(shape[1])
    grad = torch.randn_like(x)
    inputs = [t.clone().requires_grad_() for t in (x, guidance, strength)]
    out = spn_propagate(*inputs)
    torch.testing.assert_close(out, spn_propagate_reference(x, guidance, strength), rtol=0, atol=1e-10)
    got = torch.autograd.grad(out, inputs, grad)
    for g, w in zip(got, reference_grads(x, guidance, strength, grad)):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES[3:])
def test_matches_reference_float32(shape, layout):
    x, guidance = random_inputs(shape, layout)
    strength = random_strength(shape[1])
    grad = torch.randn_like(x)
    inputs = [t.float().requires_grad_() for t in (x, guidance, strength)]
    out = spn_propagate(*inputs)
    assert relative_error(out, spn_propagate_reference(x, guidance, strength)) < 1e-5
    for g, w in zip(torch.autograd.grad(out, inputs, grad.float()), reference_grads(x, guidance, strength, grad)):
        assert relative_error(g, w) < 1e-4  # a float32 argmax flip moves a pixel's gradient


@pytest.mark.parametrize("layout", LAYOUTS)
def test_unit_strength_is_no_strength(layout):
    x, guidance = random_inputs((2, 3, 9, 11), layout)
    grad = torch.randn_like(x)
    ones = torch.ones(4, 3, dtype=x.dtype)
    # Shared guidance with strength scales the raw gates by min(s, 1 / m) in the scan kernels
    # where the path without divides them by max(1, m): the same gates, rounded differently.
    exact = layout == "per-channel"
    torch.testing.assert_close(spn_propagate(x, guidance, ones), spn_propagate(x, guidance),
                               rtol=0 if exact else 1e-13, atol=0 if exact else 1e-14)
    with_ones = torch.ops.ial.spn_propagate_backward(grad, x, guidance, ones)
    without = torch.ops.ial.spn_propagate_backward(grad, x, guidance)
    assert without[2].shape == (0,)
    for g, w in zip(with_ones[:2], without[:2]):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_cpu_kernel_matches_the_composite_of_the_cuda_path(layout):
    x, guidance = random_inputs((2, 4, 19, 23), layout)
    strength = random_strength(4)
    grad = torch.randn_like(x)
    torch.testing.assert_close(
        propagate_composite(x, guidance, strength), spn_propagate(x, guidance, strength), rtol=0, atol=1e-12
    )
    want = torch.ops.ial.spn_propagate_backward(grad, x, guidance, strength)
    for g, w in zip(propagate_backward_composite(grad, x, guidance, strength), want):
        torch.testing.assert_close(g, w, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_gradcheck(layout):
    x, guidance = random_inputs((2, 2, 5, 6), layout)
    inputs = (x.requires_grad_(), guidance.requires_grad_(), random_strength(2).requires_grad_())
    assert torch.autograd.gradcheck(spn_propagate, inputs)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_opcheck(layout):
    x, guidance = random_inputs((2, 3, 6, 5), layout, dtype=torch.float32)
    strength = random_strength(3, torch.float32)
    op = torch.ops.ial.spn_propagate.default
    torch.library.opcheck(op, (x, guidance, strength))
    torch.library.opcheck(op, tuple(t.clone().requires_grad_() for t in (x, guidance, strength)))
    torch.library.opcheck(torch.ops.ial.spn_propagate_backward.default, (torch.randn_like(x), x, guidance, strength))


def test_torch_compile_fullgraph_matches_eager():
    x, guidance = random_inputs((2, 3, 10, 12), "shared", dtype=torch.float32)
    log_strength = torch.zeros(4, 3, requires_grad=True)
    inputs = (x.requires_grad_(), guidance.requires_grad_(), log_strength)

    def refine(x, guidance, log_strength):
        return spn_propagate(x.softmax(1), guidance, log_strength.exp()).square().sum()

    compiled = torch.compile(refine, fullgraph=True)
    torch.testing.assert_close(compiled(*inputs), refine(*inputs))
    for g, w in zip(torch.autograd.grad(compiled(*inputs), inputs), torch.autograd.grad(refine(*inputs), inputs)):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_returns_its_dtype(dtype):
    x, guidance = random_inputs((1, 3, 8, 9), "shared")
    strength = random_strength(3)
    out = spn_propagate(x.to(dtype), guidance.to(dtype), strength.to(dtype))
    assert out.dtype == dtype
    want = spn_propagate_reference(x.to(dtype), guidance.to(dtype), strength.to(dtype))
    assert relative_error(out, want) < 1e-2


def test_zero_size():
    x = torch.randn(1, 2, 0, 4, requires_grad=True)
    guidance = torch.rand(1, 12, 0, 4, requires_grad=True)
    strength = torch.ones(4, 2, requires_grad=True)
    out = spn_propagate(x, guidance, strength)
    grads = torch.autograd.grad(out.sum(), (x, guidance, strength), allow_unused=True, materialize_grads=True)
    assert [g.shape for g in grads] == [x.shape, guidance.shape, strength.shape] and not grads[2].any()


BAD_STRENGTHS = [
    (r"strength must have shape \(4, C\) = \(4, 2\)", lambda: torch.ones(4, 3)),
    (r"strength must have shape \(4, C\)", lambda: torch.ones(8)),
    ("strength must have the dtype of x", lambda: torch.ones(4, 2, dtype=torch.float64)),
    ("strength must be on the device of x", lambda: torch.ones(4, 2, device="meta")),
]


@pytest.mark.parametrize("message,make", BAD_STRENGTHS, ids=[m[:30] for m, _ in BAD_STRENGTHS])
def test_bad_strength_raises_clear_errors(message, make):
    with pytest.raises(RuntimeError, match=message):
        spn_propagate(torch.rand(1, 2, 5, 5), torch.rand(1, 12, 5, 5), make())
