"""spn_scan on the CPU: parity with the float64 reference, gradients, op registration, errors."""
import pytest
import torch

from ial_ext.ops import spn_scan, spn_scan_reference

SHAPES = [(1, 1, 1, 1), (1, 1, 1, 9), (1, 1, 9, 1), (1, 2, 7, 13), (2, 3, 33, 65), (3, 1, 17, 40)]
DIRECTIONS = [0, 1, 2, 3]


def random_inputs(shape, dtype=torch.float64, device="cpu"):
    b, c, h, w = shape
    x = torch.randn(shape, dtype=dtype, device=device)
    # Signed gates in the stable range |a| + |b| + |c| <= 1, as the module feeds them.
    gates = torch.empty(b, 3 * c, h, w, dtype=dtype, device=device).uniform_(-0.6, 0.6)
    gates = gates / gates.view(b, 3, c, h, w).abs().sum(1).clamp_min(1).repeat(1, 3, 1, 1)
    return x, gates


def relative_error(out, ref):
    return ((out.double() - ref).norm() / ref.norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_forward_matches_reference_float64(shape, direction):
    x, gates = random_inputs(shape)
    torch.testing.assert_close(
        spn_scan(x, gates, direction), spn_scan_reference(x, gates, direction), rtol=0, atol=1e-10
    )


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_forward_matches_reference_float32(shape, direction):
    x, gates = random_inputs(shape)
    out = spn_scan(x.float(), gates.float(), direction)
    assert out.dtype == torch.float32
    assert relative_error(out, spn_scan_reference(x, gates, direction)) < 1e-5


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_backward_matches_reference(shape, direction, dtype):
    x, gates = random_inputs(shape)
    grad_h = torch.randn_like(x)
    xs, gs = x.to(dtype).requires_grad_(), gates.to(dtype).requires_grad_()
    got = torch.autograd.grad(spn_scan(xs, gs, direction), (xs, gs), grad_h.to(dtype))
    xr, gr = x.clone().requires_grad_(), gates.clone().requires_grad_()
    want = torch.autograd.grad(
        spn_scan_reference(xr, gr, direction), (xr, gr), grad_h, allow_unused=True,
        materialize_grads=True,
    )
    for g, w in zip(got, want):
        if dtype == torch.float64:
            torch.testing.assert_close(g, w, rtol=0, atol=1e-10)
        elif w.norm() > 0:
            assert relative_error(g, w) < 1e-5
        else:
            assert g.abs().max() == 0


def test_first_line_is_input_and_border_gates_drop():
    x, gates = random_inputs((1, 1, 5, 6))
    h = spn_scan(x, gates, 0)
    torch.testing.assert_close(h[..., 0], x[..., 0], rtol=0, atol=0)
    # A constant map stays constant at every pixel, borders included.
    const = torch.full_like(x, 0.25)
    for direction in DIRECTIONS:
        torch.testing.assert_close(
            spn_scan(const, gates, direction), const, rtol=0, atol=1e-12
        )


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_gradcheck(direction):
    x, gates = random_inputs((2, 2, 5, 7))
    x.requires_grad_()
    gates.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, g: spn_scan(a, g, direction), (x, gates))


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_opcheck(direction):
    x, gates = random_inputs((2, 3, 6, 5), dtype=torch.float32)
    torch.library.opcheck(torch.ops.ial.spn_scan.default, (x, gates, direction))
    x.requires_grad_()
    gates.requires_grad_()
    torch.library.opcheck(torch.ops.ial.spn_scan.default, (x, gates, direction))
    h = spn_scan(x, gates, direction).detach()
    torch.library.opcheck(
        torch.ops.ial.spn_scan_backward.default, (torch.randn_like(x), x.detach(), gates.detach(), h, direction)
    )


def test_non_contiguous_inputs():
    x, gates = random_inputs((2, 3, 9, 11))
    x_t = x.transpose(2, 3).contiguous().transpose(2, 3)
    g_t = gates.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert not x_t.is_contiguous() and not g_t.is_contiguous()
    for direction in DIRECTIONS:
        torch.testing.assert_close(
            spn_scan(x_t, g_t, direction), spn_scan(x, gates, direction), rtol=0, atol=0
        )


def test_expanded_grad_is_not_written():
    x, gates = random_inputs((1, 2, 6, 6))
    x.requires_grad_()
    grad = torch.ones(1, 1, 1, 1, dtype=x.dtype).expand_as(x)
    before = grad.clone()
    (grad_x,) = torch.autograd.grad(spn_scan(x, gates, 2), x, grad)
    torch.testing.assert_close(grad, before, rtol=0, atol=0)
    assert torch.isfinite(grad_x).all()


@pytest.mark.parametrize("shape", [(0, 2, 4, 4), (1, 0, 4, 4), (1, 2, 0, 4), (1, 2, 4, 0)])
def test_zero_size(shape):
    b, c, h, w = shape
    x = torch.randn(shape, requires_grad=True)
    gates = torch.rand(b, 3 * c, h, w, requires_grad=True)
    for direction in DIRECTIONS:
        out = spn_scan(x, gates, direction)
        assert out.shape == x.shape
        gx, gg = torch.autograd.grad(out.sum(), (x, gates), allow_unused=True, materialize_grads=True)
        assert gx.shape == x.shape and gg.shape == gates.shape


BAD_INPUTS = [
    ("must be 4-D", lambda: (torch.rand(2, 5, 5), torch.rand(2, 6, 5, 5), 0)),
    ("gates must be 4-D", lambda: (torch.rand(1, 2, 5, 5), torch.rand(6, 5, 5), 0)),
    ("gates must have shape", lambda: (torch.rand(1, 2, 5, 5), torch.rand(1, 5, 5, 5), 0)),
    ("gates must have shape", lambda: (torch.rand(1, 2, 5, 5), torch.rand(2, 6, 5, 5), 0)),
    ("gates must have shape", lambda: (torch.rand(1, 2, 5, 5), torch.rand(1, 6, 4, 5), 0)),
    ("gates must have the dtype", lambda: (torch.rand(1, 2, 5, 5), torch.rand(1, 6, 5, 5).double(), 0)),
    ("float32 or float64", lambda: (torch.ones(1, 2, 5, 5, dtype=torch.int64), torch.ones(1, 6, 5, 5, dtype=torch.int64), 0)),
    ("float32 or float64", lambda: (torch.rand(1, 2, 5, 5).half(), torch.rand(1, 6, 5, 5).half(), 0)),
    ("direction must be", lambda: (torch.rand(1, 2, 5, 5), torch.rand(1, 6, 5, 5), 4)),
    ("direction must be", lambda: (torch.rand(1, 2, 5, 5), torch.rand(1, 6, 5, 5), -1)),
    ("device", lambda: (torch.rand(1, 2, 5, 5), torch.rand(1, 6, 5, 5, device="meta"), 0)),
]


@pytest.mark.parametrize("message,make", BAD_INPUTS, ids=[m for m, _ in BAD_INPUTS])
def test_bad_inputs_raise_clear_errors(message, make):
    x, gates, direction = make()
    with pytest.raises(RuntimeError, match=message):
        spn_scan(x, gates, direction)


def test_bad_backward_inputs_raise():
    x, gates = random_inputs((1, 2, 4, 4))
    with pytest.raises(RuntimeError, match="grad_h must have the shape"):
        torch.ops.ial.spn_scan_backward(torch.rand(1, 2, 4, 3, dtype=x.dtype), x, gates, x, 0)
