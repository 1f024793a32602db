"""similarity_gates on CUDA (the composite until a CUDA kernel has run on a GPU): parity with
the CPU kernel and the float64 reference, gradcheck. Skipped where no GPU (or no CUDA build)
is present."""
import pytest
import torch

from ial_ext.ops import similarity_gates, similarity_gates_reference

from .conftest import requires_cuda
from .test_similarity_gates import SCALE, SHAPES, random_inputs, reference_grads, relative_error

pytestmark = [pytest.mark.cuda, requires_cuda]


@pytest.mark.parametrize("shape", SHAPES + [(4, 1, 11, 321, 321)])
def test_forward_backward_match_cpu_and_reference(shape):
    logits, embedding = random_inputs(shape)
    grad = torch.randn_like(logits)
    ref = similarity_gates_reference(logits, embedding, SCALE)
    ref_grads = reference_grads(logits, embedding, grad)
    for dtype, tolerance in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        lc = logits.to("cuda", dtype).requires_grad_()
        ec = embedding.to("cuda", dtype).requires_grad_()
        out = similarity_gates(lc, ec, SCALE)
        grads = torch.autograd.grad(out, (lc, ec), grad.to("cuda", dtype))
        assert relative_error(out.cpu(), ref) < tolerance
        for got, want in zip(grads, ref_grads):
            if want.abs().max() > 0:
                assert relative_error(got.cpu(), want) < tolerance


def test_gradcheck():
    logits, embedding = random_inputs((2, 2, 3, 5, 6))
    logits = logits.cuda().requires_grad_()
    embedding = embedding.cuda().requires_grad_()
    assert torch.autograd.gradcheck(lambda l, e: similarity_gates(l, e, SCALE), (logits, embedding))
