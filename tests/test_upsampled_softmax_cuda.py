"""upsampled_softmax on CUDA (the composite of torch ops): parity with the CPU kernel and the
float64 reference, gradcheck. Skipped where no GPU (or no CUDA build) is present."""
import pytest
import torch

from ial_ext.ops import upsampled_softmax, upsampled_softmax_reference

from .conftest import requires_cuda
from .test_upsampled_softmax import SHAPES, random_inputs, relative_error

pytestmark = [pytest.mark.cuda, requires_cuda]


@pytest.mark.parametrize("shape", SHAPES)
def test_matches_cpu_and_reference(shape):
    logits, present = random_inputs(shape)
    size = shape[4:]
    ref = upsampled_softmax_reference(logits, size, present)
    for dtype, tolerance in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        out = upsampled_softmax(logits.to("cuda", dtype), size, present.cuda())
        assert relative_error(out.cpu(), ref) < tolerance
        assert relative_error(out.cpu(), upsampled_softmax(logits.to(dtype), size, present)) < tolerance


def test_gradcheck():
    logits, present = random_inputs((2, 3, 4, 5, 7, 6))
    logits = logits.cuda().requires_grad_()
    present = present.cuda()
    assert torch.autograd.gradcheck(lambda l: upsampled_softmax(l, (7, 6), present), (logits,))
