"""spn_scan on the CPU: parity with the float64 reference, gradients, op registration, errors."""
import pytest
import torch

from ial_ext.ops import spn_scan, spn_scan_reference

SHAPES = [(1, 1, 1, 1), (1, 1, 1, 9), (1, 1, 9, 1), (1, 2, 7, 13), (2, 3, 33, 65), (3, 1, 17, 40)]
DIRECTIONS = [0, 1, 2, 3]


LAYOUTS = ["per-channel", "shared"]


def random_inputs(shape, dtype=torch.float64, device="cpu", layout="per-channel"):
    b, c, h, w = shape
    x = torch.randn(shape, dtype=dtype, device=device)
    # Signed gates in the stable range |a| + |b| + |c| <= 1, as the module feeds them;
    # (B, 3C, H, W) per channel or (B, 3, H, W) shared by the channels.
    sets = 1 if layout == "shared" else c
    gates = torch.empty(b, 3 * sets, h, w, dtype=dtype, device=device).uniform_(-0.6, 0.6)
    gates = gates / gates.view(b, 3, sets, h, w).abs().sum(1).clamp_min(1).repeat(1, 3, 1, 1)
    return x, gates


def relative_error(out, ref):
    return ((out.double() - ref).norm() / ref.norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_forward_matches_reference_float64(shape, direction, layout):
    x, gates = random_inputs(shape, layout=layout)
    torch.testing.assert_close(
        spn_scan(x, gates, direction), spn_scan_reference(x, gates, direction), rtol=0, atol=1e-10
    )


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_forward_matches_reference_float32(shape, direction, layout):
    x, gates = random_inputs(shape, layout=layout)
    out = spn_scan(x.float(), gates.float(), direction)
    assert out.dtype == torch.float32
    assert relative_error(out, spn_scan_reference(x, gates, direction)) < 1e-5


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_backward_matches_reference(shape, direction, dtype, layout):
    x, gates = random_inputs(shape, layout=layout)
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


# Planes large enough that the CPU kernels split them: several horizontal tiles
# (rows longer than kMaxTile, 512 columns; the last tile partial, rows not a
# multiple of 8) and several vertical row blocks of shared gates (at most 256
# rows each).
TILED_SHAPES = [(2, 3, 19, 600), (1, 3, 300, 9)]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", TILED_SHAPES)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tiled_planes_match_reference(shape, direction, dtype, layout):
    x, gates = random_inputs(shape, layout=layout)
    grad_h = torch.randn_like(x)
    xs, gs = x.to(dtype).requires_grad_(), gates.to(dtype).requires_grad_()
    h = spn_scan(xs, gs, direction)
    got = torch.autograd.grad(h, (xs, gs), grad_h.to(dtype))
    xr, gr = x.clone().requires_grad_(), gates.clone().requires_grad_()
    href = spn_scan_reference(xr, gr, direction)
    want = torch.autograd.grad(href, (xr, gr), grad_h)
    for out, ref in zip((h, *got), (href, *want)):
        if dtype == torch.float64:
            torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
        else:
            assert relative_error(out, ref) < 1e-5


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


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_gradcheck(direction, layout):
    x, gates = random_inputs((2, 3, 5, 7), layout=layout)
    x.requires_grad_()
    gates.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, g: spn_scan(a, g, direction), (x, gates))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_opcheck(direction, layout):
    x, gates = random_inputs((2, 3, 6, 5), dtype=torch.float32, layout=layout)
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


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(0, 2, 4, 4), (1, 0, 4, 4), (1, 2, 0, 4), (1, 2, 4, 0)])
def test_zero_size(shape, layout):
    b, c, h, w = shape
    x = torch.randn(shape, requires_grad=True)
    gates = torch.rand(b, 3 if layout == "shared" else 3 * c, h, w, requires_grad=True)
    for direction in DIRECTIONS:
        out = spn_scan(x, gates, direction)
        assert out.shape == x.shape
        gx, gg = torch.autograd.grad(out.sum(), (x, gates), allow_unused=True, materialize_grads=True)
        assert gx.shape == x.shape and gg.shape == gates.shape
        assert not gg.any()  # no channel, no gradient: zeros, not uninitialised memory


BAD_INPUTS = [
    ("must be 4-D", lambda: (torch.rand(2, 5, 5), torch.rand(2, 6, 5, 5), 0)),
    ("gates must be 4-D", lambda: (torch.rand(1, 2, 5, 5), torch.rand(6, 5, 5), 0)),
    ("gates must have shape", lambda: (torch.rand(1, 2, 5, 5), torch.rand(1, 5, 5, 5), 0)),
    (r"\(B, 3C, H, W\) = \(1, 6, 5, 5\) or, shared by the channels, \(B, 3, H, W\) = \(1, 3, 5, 5\)",
     lambda: (torch.rand(1, 2, 5, 5), torch.rand(1, 9, 5, 5), 0)),
    ("gates must have shape", lambda: (torch.rand(1, 2, 5, 5), torch.rand(2, 6, 5, 5), 0)),
    ("gates must have shape", lambda: (torch.rand(1, 2, 5, 5), torch.rand(1, 6, 4, 5), 0)),
    ("gates must have the dtype", lambda: (torch.rand(1, 2, 5, 5), torch.rand(1, 6, 5, 5).double(), 0)),
    ("float16, bfloat16, float32 or float64", lambda: (torch.ones(1, 2, 5, 5, dtype=torch.int64), torch.ones(1, 6, 5, 5, dtype=torch.int64), 0)),
    ("gates must have the dtype", lambda: (torch.rand(1, 2, 5, 5).bfloat16(), torch.rand(1, 6, 5, 5), 0)),
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


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_shared_gates_equal_expanded_per_channel_gates(direction):
    """(B, 3, H, W) means the same a, b, c for every channel: the scan equals the
    per-channel scan of the expanded gates, and the shared gradient is the
    per-channel one summed over channels."""
    x, shared = random_inputs((2, 5, 9, 11), layout="shared")
    expanded = shared.repeat_interleave(5, dim=1)
    grad_h = torch.randn_like(x)
    xs, gs = x.clone().requires_grad_(), shared.clone().requires_grad_()
    xe, ge = x.clone().requires_grad_(), expanded.clone().requires_grad_()
    hs, he = spn_scan(xs, gs, direction), spn_scan(xe, ge, direction)
    torch.testing.assert_close(hs, he, rtol=0, atol=1e-12)
    got = torch.autograd.grad(hs, (xs, gs), grad_h)
    want = torch.autograd.grad(he, (xe, ge), grad_h)
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(got[1], want[1].view(2, 3, 5, 9, 11).sum(2), rtol=0, atol=1e-11)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_shared_gate_gradient_is_deterministic_for_a_thread_count(threads):
    """The channel sum of the shared gates' gradient is split over threads when the
    batch is small (B = 1 here): the same thread count gives the same bits."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x, gates = random_inputs((1, 7, 12, 10), dtype=torch.float32, layout="shared")
        grad_h = torch.randn_like(x)
        h = spn_scan(x, gates, 0)
        first = torch.ops.ial.spn_scan_backward(grad_h, x, gates, h, 0)
        second = torch.ops.ial.spn_scan_backward(grad_h, x, gates, h, 0)
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    xr, gr = x.double().requires_grad_(), gates.double().requires_grad_()
    want = torch.autograd.grad(spn_scan_reference(xr, gr, 0), (xr, gr), grad_h.double())
    assert relative_error(first[1], want[1]) < 1e-5


def test_torch_compile_shared_gates():
    x, gates = random_inputs((2, 3, 8, 9), dtype=torch.float32, layout="shared")
    x.requires_grad_()
    gates.requires_grad_()

    def f(x, gates):
        return spn_scan(x, gates, 3).square().sum()

    compiled = torch.compile(f, fullgraph=True)
    torch.testing.assert_close(compiled(x, gates), f(x, gates))
    got = torch.autograd.grad(compiled(x, gates), (x, gates))
    want = torch.autograd.grad(f(x, gates), (x, gates))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
