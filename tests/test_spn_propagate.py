"""spn_propagate (normalise + four scans + max in one op) on the CPU: parity with the
float64 reference and with the composite the CUDA path runs, ties, the normalisation's
kink, gradcheck, opcheck, torch.compile, errors."""
import pytest
import torch

from ial_ext.ops import normalize_guidance, spn_propagate, spn_propagate_reference
from ial_ext.ops.gate_normalization import normalize_gates, normalize_gates_backward
from ial_ext.ops.spn_propagate import propagate_backward_composite, propagate_composite

LAYOUTS = ["shared", "per-channel"]
# The last two span several horizontal tiles (at most 512 columns) and vertical row
# blocks (at most 256 rows) of the CPU kernels, with more channels than a backward
# channel group holds (at most 4).
SHAPES = [(1, 1, 1, 1), (1, 2, 1, 7), (2, 3, 7, 1), (2, 3, 9, 13), (3, 2, 17, 40), (1, 5, 33, 20),
          (1, 6, 11, 600), (1, 5, 270, 10)]


def random_inputs(shape, layout, dtype=torch.float64, scale=0.8):
    b, c, h, w = shape
    x = torch.randn(shape, dtype=dtype)
    sets = 1 if layout == "shared" else c
    # Raw gates around the bound: some pixels get normalised, some are left as they are.
    guidance = torch.randn(b, 12 * sets, h, w, dtype=dtype) * scale
    return x, guidance


def random_strength(channels, dtype=torch.float64, seed=0):
    # Around 1, from weak (0.3) to strong (2.5): strong ones saturate the normalisation.
    generator = torch.Generator().manual_seed(seed)
    return (0.3 + 2.2 * torch.rand(4, channels, generator=generator)).to(dtype)


def relative_error(out, ref):
    return ((out.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-30)).item()


def reference_grads(x, guidance, grad):
    xr, gr = x.double().requires_grad_(), guidance.double().requires_grad_()
    return torch.autograd.grad(
        spn_propagate_reference(xr, gr), (xr, gr), grad.double(), allow_unused=True, materialize_grads=True
    )


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference_float64(shape, layout):
    x, guidance = random_inputs(shape, layout)
    grad = torch.randn_like(x)
    xs, gs = x.clone().requires_grad_(), guidance.clone().requires_grad_()
    out = spn_propagate(xs, gs)
    torch.testing.assert_close(out, spn_propagate_reference(x, guidance), rtol=0, atol=1e-10)
    got = torch.autograd.grad(out, (xs, gs), grad)
    for g, w in zip(got, reference_grads(x, guidance, grad)):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-9)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES[3:])
def test_matches_reference_float32(shape, layout):
    x, guidance = random_inputs(shape, layout)
    grad = torch.randn_like(x)
    xs, gs = x.float().requires_grad_(), guidance.float().requires_grad_()
    out = spn_propagate(xs, gs)
    assert out.dtype == torch.float32
    assert relative_error(out, spn_propagate_reference(x, guidance)) < 1e-5
    got = torch.autograd.grad(out, (xs, gs), grad.float())
    for g, w in zip(got, reference_grads(x, guidance, grad)):
        # An argmax flipped by float32 rounding moves a pixel's gradient: compare in norm.
        assert relative_error(g, w) < 1e-4


@pytest.mark.parametrize("layout", LAYOUTS)
def test_cpu_kernel_matches_the_composite_of_the_cuda_path(layout):
    """The CUDA path runs propagate_composite / propagate_backward_composite (spn_scan
    and torch ops): checked here on the CPU against the fused kernel."""
    x, guidance = random_inputs((2, 4, 19, 23), layout)
    grad = torch.randn_like(x)
    torch.testing.assert_close(propagate_composite(x, guidance), spn_propagate(x, guidance), rtol=0, atol=1e-12)
    want = torch.ops.ial.spn_propagate_backward(grad, x, guidance)
    for g, w in zip(propagate_backward_composite(grad, x, guidance), want):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-11)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_ties_route_the_gradient_to_the_first_direction(layout):
    """Zero gates make every direction's scan equal x: all four tie everywhere, and the
    whole gradient goes through direction 0, as torch.max(dim) routes it (the reference)."""
    x, guidance = random_inputs((1, 3, 6, 7), layout)
    guidance = torch.zeros_like(guidance)
    guidance[:, 0:3] = 0.2  # direction 0 non-zero: ties still hold at its first column
    grad = torch.randn_like(x)
    xs, gs = x.clone().requires_grad_(), guidance.clone().requires_grad_()
    got = torch.autograd.grad(spn_propagate(xs, gs), (xs, gs), grad)
    want = reference_grads(x, guidance, grad)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-10)
    # Directions 1-3 all give x: where they win, direction 1 (the first of them) takes
    # the gradient, so directions 2 and 3 get none.
    sets = guidance.shape[1] // 12
    assert got[1][:, 3 * sets: 6 * sets].abs().sum() > 0
    assert got[1][:, 6 * sets:].abs().sum() == 0


def test_normalisation_kink_and_zero_gates():
    """|a| + |b| + |c| exactly 1 (the kink of max(1, s)) takes the scaled branch, as
    autograd does through clamp_min; all-zero gates stay zero with a finite gradient."""
    b, h, w = 1, 5, 6
    guidance = torch.zeros(b, 12, h, w, dtype=torch.float64)
    guidance[:, 0::3] = 0.25
    guidance[:, 1::3] = -0.5
    guidance[:, 2::3] = 0.25  # |a| + |b| + |c| = 1 exactly, in binary
    guidance[:, :, 0, :] = 0  # a row of zero gates: no 0/0
    guidance[:, :, 1, :] *= 3  # a row well above the bound
    x = torch.randn(b, 2, h, w, dtype=torch.float64)
    grad = torch.randn_like(x)
    xs, gs = x.clone().requires_grad_(), guidance.clone().requires_grad_()
    got = torch.autograd.grad(spn_propagate(xs, gs), (xs, gs), grad)
    assert all(torch.isfinite(g).all() for g in got)
    for g, w in zip(got, reference_grads(x, guidance, grad)):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-10)


def test_normalize_gates_backward_is_autograds():
    gates = torch.randn(2, 3 * 4, 5, 6, dtype=torch.float64)
    gates[:, :, 0, 0] = 0
    grad = torch.randn_like(gates)
    gr = gates.clone().requires_grad_()
    (want,) = torch.autograd.grad(normalize_gates(gr), gr, grad)
    torch.testing.assert_close(normalize_gates_backward(gates, grad), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_normalize_guidance_takes_both_layouts(layout):
    _, guidance = random_inputs((2, 3, 4, 5), layout, scale=3)
    out = normalize_guidance(guidance)
    sets = guidance.shape[1] // 12
    assert (out.view(2, 4, 3, sets, 4, 5).abs().sum(2) <= 1 + 1e-12).all()
    want = torch.cat([normalize_gates(g) for g in guidance.chunk(4, dim=1)], dim=1)
    torch.testing.assert_close(out, want, rtol=0, atol=0)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_gradcheck(layout):
    x, guidance = random_inputs((2, 2, 5, 6), layout)
    x.requires_grad_()
    guidance.requires_grad_()
    assert torch.autograd.gradcheck(spn_propagate, (x, guidance))


@pytest.mark.parametrize("with_strength", [False, True], ids=["no-strength", "strength"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_backward_without_the_gradient_of_x_gives_the_same_gate_gradients(layout, with_strength):
    """x_requires_grad=False (autograd passes it when x needs no gradient, as the unary map
    the pairwise network refines): an empty x gradient, the same bits for the rest, on the
    kernel and the composite of the CUDA path."""
    x, guidance = random_inputs((2, 6, 19, 140), layout, dtype=torch.float32)
    strength = random_strength(6, torch.float32) if with_strength else None
    grad = torch.randn_like(x)
    full = torch.ops.ial.spn_propagate_backward(grad, x, guidance, strength)
    for backward in (torch.ops.ial.spn_propagate_backward, propagate_backward_composite):
        grad_x, *rest = backward(grad, x, guidance, strength, False)
        assert grad_x.shape == (0,)
        want = full if backward is not propagate_backward_composite else propagate_backward_composite(
            grad, x, guidance, strength)
        for got, expected in zip(rest, want[1:]):
            assert torch.equal(got, expected)
    guidance.requires_grad_()
    (grad_guidance,) = torch.autograd.grad(spn_propagate(x, guidance, strength), guidance, grad)
    assert torch.equal(grad_guidance, full[1])
    torch.library.opcheck(torch.ops.ial.spn_propagate_backward.default, (grad, x, guidance.detach(), strength, False))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_opcheck(layout):
    x, guidance = random_inputs((2, 3, 6, 5), layout, dtype=torch.float32)
    torch.library.opcheck(torch.ops.ial.spn_propagate.default, (x, guidance))
    torch.library.opcheck(
        torch.ops.ial.spn_propagate.default, (x.clone().requires_grad_(), guidance.clone().requires_grad_())
    )
    torch.library.opcheck(torch.ops.ial.spn_propagate_backward.default, (torch.randn_like(x), x, guidance))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_torch_compile_fullgraph_matches_eager(layout):
    x, guidance = random_inputs((2, 3, 10, 12), layout, dtype=torch.float32)
    x.requires_grad_()
    guidance.requires_grad_()

    def refine(x, guidance):
        return spn_propagate(x.softmax(1), guidance * 2).square().sum()

    compiled = torch.compile(refine, fullgraph=True)
    torch.testing.assert_close(compiled(x, guidance), refine(x, guidance))
    for g, w in zip(torch.autograd.grad(compiled(x, guidance), (x, guidance)),
                    torch.autograd.grad(refine(x, guidance), (x, guidance))):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("with_strength", [False, True], ids=["no-strength", "strength"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_shared_gradient_is_deterministic_for_a_thread_count(threads, with_strength):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x, guidance = random_inputs((1, 7, 11, 9), "shared", dtype=torch.float32)
        strength = random_strength(7, torch.float32) if with_strength else None
        grad = torch.randn_like(x)
        first = torch.ops.ial.spn_propagate_backward(grad, x, guidance, strength)
        second = torch.ops.ial.spn_propagate_backward(grad, x, guidance, strength)
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_expanded_grad_is_not_written():
    x, guidance = random_inputs((1, 2, 6, 6), "shared")
    x.requires_grad_()
    grad = torch.ones(1, 1, 1, 1, dtype=x.dtype).expand_as(x)
    before = grad.clone()
    (grad_x,) = torch.autograd.grad(spn_propagate(x, guidance), x, grad)
    torch.testing.assert_close(grad, before, rtol=0, atol=0)
    assert torch.isfinite(grad_x).all()


@pytest.mark.parametrize("shape", [(0, 2, 4, 4), (1, 0, 4, 4), (1, 2, 0, 4)])
def test_zero_size(shape):
    b, c, h, w = shape
    x = torch.randn(shape, requires_grad=True)
    guidance = torch.rand(b, 12, h, w, requires_grad=True)
    out = spn_propagate(x, guidance)
    assert out.shape == x.shape
    gx, gg = torch.autograd.grad(out.sum(), (x, guidance), allow_unused=True, materialize_grads=True)
    assert gx.shape == x.shape and gg.shape == guidance.shape and not gg.any()


BAD_INPUTS = [
    ("x must be 4-D", lambda: (torch.rand(2, 5, 5), torch.rand(2, 12, 5, 5))),
    ("guidance must be 4-D", lambda: (torch.rand(1, 2, 5, 5), torch.rand(12, 5, 5))),
    (r"\(B, 12C, H, W\) = \(1, 24, 5, 5\) or, shared by the channels, \(B, 12, H, W\) = \(1, 12, 5, 5\)",
     lambda: (torch.rand(1, 2, 5, 5), torch.rand(1, 6, 5, 5))),
    ("guidance must have the dtype", lambda: (torch.rand(1, 2, 5, 5), torch.rand(1, 12, 5, 5).double())),
    ("float16, bfloat16, float32 or float64", lambda: (torch.ones(1, 2, 5, 5, dtype=torch.int64),
                                                        torch.ones(1, 12, 5, 5, dtype=torch.int64))),
    ("device", lambda: (torch.rand(1, 2, 5, 5), torch.rand(1, 12, 5, 5, device="meta"))),
]


@pytest.mark.parametrize("message,make", BAD_INPUTS, ids=[m[:30] for m, _ in BAD_INPUTS])
def test_bad_inputs_raise_clear_errors(message, make):
    x, guidance = make()
    with pytest.raises(RuntimeError, match=message):
        spn_propagate(x, guidance)
