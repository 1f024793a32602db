"""spn_scan on CUDA: parity with the CPU kernel and the float64 reference, gradcheck,
compute-sanitizer. Skipped where no GPU (or no CUDA build) is present."""
import shutil
import textwrap

import pytest
import torch

from ial_ext.ops import spn_scan, spn_scan_reference

from .conftest import assert_sanitizer_clean, requires_cuda
from .test_spn_scan import DIRECTIONS, SHAPES, random_inputs, relative_error

pytestmark = [pytest.mark.cuda, requires_cuda]

# Lines of 2000 positions fit in shared memory in float32 but not, for the backward, in float64.
LONG_LINES = [(1, 1, 2000, 3), (1, 1, 3, 2000)]
CUDA_SHAPES = SHAPES + [(2, 4, 321, 321)] + LONG_LINES


def line_length(shape, direction):
    return shape[2] if direction < 2 else shape[3]


@pytest.mark.parametrize("shape", CUDA_SHAPES)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_forward_backward_match_cpu_and_reference(shape, direction):
    x, gates = random_inputs(shape)
    grad_h = torch.randn_like(x)
    xr, gr = x.clone().requires_grad_(), gates.clone().requires_grad_()
    ref = spn_scan_reference(xr, gr, direction)
    ref_grads = torch.autograd.grad(ref, (xr, gr), grad_h, allow_unused=True, materialize_grads=True)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        if dtype == torch.float64 and line_length(shape, direction) >= 2000:
            continue  # test_float64_backward_of_a_too_long_line_raises_clearly
        xc = x.to("cuda", dtype).requires_grad_()
        gc = gates.to("cuda", dtype).requires_grad_()
        out = spn_scan(xc, gc, direction)
        grads = torch.autograd.grad(out, (xc, gc), grad_h.to("cuda", dtype))
        assert relative_error(out.cpu(), ref) < tol
        cpu = spn_scan(x.to(dtype), gates.to(dtype), direction)
        assert relative_error(out.cpu(), cpu.double()) < tol
        for g, w in zip(grads, ref_grads):
            if w.norm() > 0:
                assert relative_error(g.cpu(), w) < tol
            else:
                assert g.abs().max().item() == 0


@pytest.mark.parametrize("shape,direction", [(LONG_LINES[0], 0), (LONG_LINES[1], 3)])
def test_float64_backward_of_a_too_long_line_raises_clearly(shape, direction):
    x, gates = random_inputs(shape)
    xc = x.to("cuda").requires_grad_()
    out = spn_scan(xc, gates.to("cuda"), direction)  # the forward needs less and fits
    assert relative_error(out.detach().cpu(), spn_scan_reference(x, gates, direction)) < 1e-10
    with pytest.raises(RuntimeError, match=r"a line of 2000 positions needs \d+ bytes of shared memory"):
        out.sum().backward()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_accumulates_in_float32(dtype):
    x, gates = random_inputs((2, 3, 40, 50))
    out = spn_scan(x.to("cuda", dtype), gates.to("cuda", dtype), 0)
    ref = spn_scan_reference(x.to(dtype), gates.to(dtype), 0)
    assert out.dtype == dtype
    assert relative_error(out.cpu(), ref) < 1e-2


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_gradcheck_cuda(direction):
    x, gates = random_inputs((2, 2, 5, 7), device="cuda")
    x.requires_grad_()
    gates.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, g: spn_scan(a, g, direction), (x, gates))


def test_opcheck_cuda():
    x, gates = random_inputs((2, 3, 6, 5), dtype=torch.float32, device="cuda")
    for direction in DIRECTIONS:
        torch.library.opcheck(torch.ops.ial.spn_scan.default, (x, gates, direction))


def test_mixed_devices_raise():
    x, gates = random_inputs((1, 1, 4, 4))
    with pytest.raises(RuntimeError, match="device"):
        spn_scan(x.cuda(), gates, 0)


@pytest.mark.skipif(shutil.which("compute-sanitizer") is None, reason="compute-sanitizer not found")
@pytest.mark.parametrize("tool", ["memcheck", "racecheck", "synccheck"])
def test_compute_sanitizer(tool):
    script = textwrap.dedent(
        """
        import torch, ial_ext
        from ial_ext.ops import spn_scan
        for shape in [(1, 2, 7, 13), (2, 3, 33, 65), (1, 1, 1, 40)]:
            b, c, h, w = shape
            for d in range(4):
                x = torch.randn(shape, device="cuda", requires_grad=True)
                g = (torch.rand(b, 3 * c, h, w, device="cuda") / 3).requires_grad_()
                spn_scan(x, g, d).sum().backward()
        torch.cuda.synchronize()
        """
    )
    assert_sanitizer_clean(tool, script)


@pytest.mark.parametrize("shape", [(2, 3, 17, 23), (2, 21, 64, 80), (1, 1, 9, 9)])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_shared_gates_match_cpu_and_reference(shape, direction):
    """Shared gates (B, 3, H, W) on CUDA (expanded into the per-channel kernel for now):
    forward and both gradients against the float64 reference and the CPU kernel."""
    x, gates = random_inputs(shape, layout="shared")
    grad_h = torch.randn_like(x)
    xr, gr = x.clone().requires_grad_(), gates.clone().requires_grad_()
    ref = spn_scan_reference(xr, gr, direction)
    ref_grads = torch.autograd.grad(ref, (xr, gr), grad_h)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        xc = x.to("cuda", dtype).requires_grad_()
        gc = gates.to("cuda", dtype).requires_grad_()
        out = spn_scan(xc, gc, direction)
        grads = torch.autograd.grad(out, (xc, gc), grad_h.to("cuda", dtype))
        assert grads[1].shape == gates.shape
        assert relative_error(out.cpu(), ref) < tol
        cpu = spn_scan(x.to(dtype), gates.to(dtype), direction)
        assert relative_error(out.cpu(), cpu.double()) < tol
        for g, w in zip(grads, ref_grads):
            assert relative_error(g.cpu(), w) < tol


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_shared_gates_gradcheck_and_opcheck(direction):
    x, gates = random_inputs((1, 3, 5, 6), device="cuda", layout="shared")
    x.requires_grad_()
    gates.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, g: spn_scan(a, g, direction), (x, gates))
    torch.library.opcheck(torch.ops.ial.spn_scan.default, (x.float(), gates.float(), direction))


@pytest.mark.parametrize("layout", ["shared", "per-channel"])
def test_spn_propagate_matches_cpu_kernel(layout):
    """On CUDA spn_propagate is the composite of the CUDA scan and torch ops."""
    from ial_ext.ops import spn_propagate

    from .test_spn_propagate import random_inputs as propagate_inputs

    x, guidance = propagate_inputs((2, 3, 33, 40), layout)
    grad = torch.randn_like(x)
    want = torch.ops.ial.spn_propagate_backward(grad, x, guidance)
    xc, gc = x.cuda().requires_grad_(), guidance.cuda().requires_grad_()
    out = spn_propagate(xc, gc)
    torch.testing.assert_close(out.cpu(), spn_propagate(x, guidance), rtol=0, atol=1e-10)
    for g, w in zip(torch.autograd.grad(out, (xc, gc), grad.cuda()), want):
        torch.testing.assert_close(g.cpu(), w, rtol=0, atol=1e-9)


@pytest.mark.parametrize("layout", ["shared", "per-channel"])
def test_spn_propagate_with_strength_matches_cpu_kernel(layout):
    """With strength the CUDA path expands the gates per channel (propagate_composite)."""
    from ial_ext.ops import spn_propagate

    from .test_spn_propagate import random_inputs as propagate_inputs, random_strength

    x, guidance = propagate_inputs((2, 3, 33, 40), layout)
    strength = random_strength(3)
    grad = torch.randn_like(x)
    want = torch.ops.ial.spn_propagate_backward(grad, x, guidance, strength)
    inputs = [t.cuda().requires_grad_() for t in (x, guidance, strength)]
    out = spn_propagate(*inputs)
    torch.testing.assert_close(out.cpu(), spn_propagate(x, guidance, strength), rtol=0, atol=1e-10)
    for g, w in zip(torch.autograd.grad(out, inputs, grad.cuda()), want):
        torch.testing.assert_close(g.cpu(), w, rtol=1e-10, atol=1e-9)


def test_ops_run_in_float32_under_cuda_autocast():
    x = torch.rand(2, 3, 16, 16, device="cuda")
    gates = (torch.rand(2, 3, 16, 16, device="cuda") / 3).half()
    with torch.autocast("cuda", dtype=torch.float16):
        assert spn_scan(x, gates, 0).dtype == torch.float32
