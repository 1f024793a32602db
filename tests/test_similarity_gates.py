"""similarity_gates (sigmoid modulation x neighbour affinity in one op) on the CPU: parity
with the float64 reference and with the composite that export and CUDA run (and its
neighbour affinities against their definition), gradcheck,
opcheck, torch.compile, thread-count determinism, errors."""
import pytest
import torch
import torch.nn.functional as F

from ial_ext.ops import similarity_gates, similarity_gates_reference
from ial_ext.ops.gate_normalization import NEIGHBOUR_OFFSETS
from ial_ext.ops.neighbour_affinities import neighbour_affinities
from ial_ext.ops.similarity_gates import similarity_gates_composite

# (B, M, E, H, W). Images one pixel high or wide clamp every vertical or horizontal link onto
# the pixel itself; the others have border links clamped onto a neighbouring pixel.
SHAPES = [(1, 1, 1, 1, 1), (1, 2, 3, 1, 7), (2, 1, 4, 6, 1), (2, 1, 5, 7, 9), (1, 3, 11, 17, 40),
          (1, 1, 11, 40, 3)]
SCALE = 1 / 3


def random_inputs(shape, dtype=torch.float64, seed=0):
    b, m, e, h, w = shape
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(b, 12 * m, h, w, generator=generator) * 3).to(dtype)
    # Distances from 0 to a few units: affinities from 1 to underflow.
    embedding = (torch.randn(b, e, h, w, generator=generator) * 0.7).to(dtype)
    return logits, embedding


def relative_error(out, ref):
    return ((out.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-30)).item()


def reference_grads(logits, embedding, grad):
    lr, er = logits.double().requires_grad_(), embedding.double().requires_grad_()
    return torch.autograd.grad(similarity_gates_reference(lr, er, SCALE), (lr, er), grad.double())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_matches_reference(shape, dtype, tolerance):
    logits, embedding = random_inputs(shape, dtype)
    logits.requires_grad_()
    embedding.requires_grad_()
    out = similarity_gates(logits, embedding, SCALE)
    grad = torch.randn_like(out)
    grads = torch.autograd.grad(out, (logits, embedding), grad)
    assert out.dtype == dtype
    assert relative_error(out, similarity_gates_reference(logits, embedding, SCALE)) < tolerance
    for got, want in zip(grads, reference_grads(logits.detach(), embedding.detach(), grad)):
        if want.abs().max() == 0:  # a 1x1 image: no link has a distance
            assert got.abs().max() == 0
        else:
            assert relative_error(got, want) < tolerance


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 7), (9, 4)])
def test_neighbour_affinities_are_those_of_every_link(size):
    # The definition, one slice of the replicate-padded embedding per (direction, gate).
    h, w = size
    embedding = torch.randn(2, 5, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(h * w))
    padded = F.pad(embedding, (1, 1, 1, 1), mode="replicate")
    expected = torch.cat([
        torch.exp(-(embedding - padded[:, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]).square().sum(1, keepdim=True))
        for offsets in NEIGHBOUR_OFFSETS for dy, dx in offsets
    ], dim=1)
    torch.testing.assert_close(neighbour_affinities(embedding), expected, rtol=1e-14, atol=0)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 7), (9, 4)])
def test_neighbour_affinities_gradient_is_that_of_the_definition(size):
    # The training path's own backward against autograd through the 12 slices of the definition.
    h, w = size
    generator = torch.Generator().manual_seed(h + 7 * w)
    embedding = torch.randn(2, 5, h, w, dtype=torch.float64, generator=generator, requires_grad=True)
    weights = torch.randn(2, 12, h, w, dtype=torch.float64, generator=generator)
    padded = F.pad(embedding, (1, 1, 1, 1), mode="replicate")
    definition = torch.cat([
        torch.exp(-(embedding - padded[:, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]).square().sum(1, keepdim=True))
        for offsets in NEIGHBOUR_OFFSETS for dy, dx in offsets
    ], dim=1)
    expected, = torch.autograd.grad((definition * weights).sum(), embedding)
    grad, = torch.autograd.grad((neighbour_affinities(embedding) * weights).sum(), embedding)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-14)
    assert torch.autograd.gradcheck(neighbour_affinities, (embedding,))


@pytest.mark.parametrize("shape", SHAPES[2:4])
def test_cpu_kernel_matches_the_composite_of_export_and_cuda(shape):
    logits, embedding = random_inputs(shape)
    logits.requires_grad_()
    embedding.requires_grad_()
    out = similarity_gates(logits, embedding, SCALE)
    composite = similarity_gates_composite(logits, embedding, SCALE)
    torch.testing.assert_close(out, composite, rtol=1e-12, atol=1e-15)
    grad = torch.randn_like(out)
    for got, want in zip(torch.autograd.grad(out, (logits, embedding), grad),
                         torch.autograd.grad(composite, (logits, embedding), grad)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)


def test_saturated_logits_and_far_colours_stay_finite():
    logits, embedding = random_inputs((1, 1, 3, 6, 7), torch.float32)
    logits[0, :3] = 200.0
    logits[0, 3:6] = -200.0
    embedding[0, :, :, 3:] += 50.0  # an edge far stronger than exp can resolve
    logits.requires_grad_()
    embedding.requires_grad_()
    out = similarity_gates(logits, embedding, SCALE)
    grads = torch.autograd.grad(out.sum(), (logits, embedding))
    ref = similarity_gates_reference(logits, embedding, SCALE)
    torch.testing.assert_close(out, ref.float(), rtol=1e-6, atol=1e-30)
    assert all(bool(torch.isfinite(g).all()) for g in grads)


def test_gradcheck():
    logits, embedding = random_inputs((2, 2, 3, 5, 6))
    logits.requires_grad_()
    embedding.requires_grad_()
    assert torch.autograd.gradcheck(lambda l, e: similarity_gates(l, e, SCALE), (logits, embedding))


def test_opcheck():
    logits, embedding = random_inputs((2, 1, 4, 6, 5), torch.float32)
    op = torch.ops.ial.similarity_gates.default
    torch.library.opcheck(op, (logits, embedding, SCALE))
    torch.library.opcheck(op, (logits.clone().requires_grad_(), embedding.clone().requires_grad_(), SCALE))
    torch.library.opcheck(
        torch.ops.ial.similarity_gates_backward.default, (torch.randn_like(logits), logits, embedding, SCALE)
    )


def test_torch_compile_fullgraph_matches_eager():
    logits, embedding = random_inputs((2, 1, 5, 10, 12), torch.float32)
    logits.requires_grad_()
    embedding.requires_grad_()

    def gates_loss(logits, embedding):
        return similarity_gates(logits * 2, embedding.tanh(), SCALE).square().sum()

    compiled = torch.compile(gates_loss, fullgraph=True)
    torch.testing.assert_close(compiled(logits, embedding), gates_loss(logits, embedding))
    for got, want in zip(torch.autograd.grad(compiled(logits, embedding), (logits, embedding)),
                         torch.autograd.grad(gates_loss(logits, embedding), (logits, embedding))):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_gradient_is_the_same_for_every_thread_count(threads):
    logits, embedding = random_inputs((2, 1, 11, 13, 9), torch.float32)
    grad = torch.randn_like(logits)
    backward = torch.ops.ial.similarity_gates_backward
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = backward(grad, logits, embedding, SCALE)
        torch.set_num_threads(threads)
        several = backward(grad, logits, embedding, SCALE)
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(single, several):
        assert torch.equal(a, b)


def test_expanded_grad_is_not_written():
    logits, embedding = random_inputs((1, 1, 2, 6, 6))
    logits.requires_grad_()
    grad = torch.ones(1, 1, 1, 1, dtype=logits.dtype).expand_as(logits)
    before = grad.clone()
    (grad_logits,) = torch.autograd.grad(similarity_gates(logits, embedding, SCALE), logits, grad)
    torch.testing.assert_close(grad, before, rtol=0, atol=0)
    assert torch.isfinite(grad_logits).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_computes_in_float32(dtype):
    logits, embedding = random_inputs((1, 1, 3, 5, 7), torch.float32)
    out = similarity_gates(logits.to(dtype), embedding.to(dtype), SCALE)
    assert out.dtype == dtype
    want = similarity_gates(logits.to(dtype).float(), embedding.to(dtype).float(), SCALE)
    torch.testing.assert_close(out, want.to(dtype), rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(0, 12, 4, 4), (1, 12, 0, 4), (1, 12, 4, 0)])
def test_zero_size(shape):
    b, _, h, w = shape
    logits = torch.randn(shape, requires_grad=True)
    embedding = torch.randn(b, 3, h, w, requires_grad=True)
    out = similarity_gates(logits, embedding, SCALE)
    assert out.shape == logits.shape
    grads = torch.autograd.grad(out.sum(), (logits, embedding), allow_unused=True, materialize_grads=True)
    assert grads[0].shape == logits.shape and grads[1].shape == embedding.shape


BAD_INPUTS = [
    ("logits must be 4-D", lambda: (torch.rand(12, 5, 5), torch.rand(1, 3, 5, 5))),
    ("embedding must be 4-D", lambda: (torch.rand(1, 12, 5, 5), torch.rand(3, 5, 5))),
    ("12M channels", lambda: (torch.rand(1, 6, 5, 5), torch.rand(1, 3, 5, 5))),
    (r"\(B, E, H, W\) = \(1, E, 5, 5\)", lambda: (torch.rand(1, 12, 5, 5), torch.rand(1, 3, 5, 4))),
    ("embedding must have the dtype", lambda: (torch.rand(1, 12, 5, 5), torch.rand(1, 3, 5, 5).double())),
    ("float16, bfloat16, float32 or float64", lambda: (torch.ones(1, 12, 5, 5, dtype=torch.int64),
                                                        torch.ones(1, 3, 5, 5, dtype=torch.int64))),
    ("device", lambda: (torch.rand(1, 12, 5, 5), torch.rand(1, 3, 5, 5, device="meta"))),
]


@pytest.mark.parametrize("message,make", BAD_INPUTS, ids=[m[:30] for m, _ in BAD_INPUTS])
def test_bad_inputs_raise_clear_errors(message, make):
    logits, embedding = make()
    with pytest.raises(RuntimeError, match=message):
        similarity_gates(logits, embedding, SCALE)
