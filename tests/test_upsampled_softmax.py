"""upsampled_softmax (bilinear resize, absent classes, softmax over the classes in one op) on
the CPU: parity with the float64 reference and with the composite that export and CUDA run,
gradcheck, opcheck, torch.compile, thread-count determinism, the unary probabilities of a
UnaryNetwork, errors."""
import pytest
import torch
import torch.nn.functional as F

from ial_ext.models import UnaryNetwork
from ial_ext.ops import upsampled_softmax, upsampled_softmax_reference
from ial_ext.ops.upsampled_softmax import upsampled_softmax_composite
from ial_ext.train.segmenter import mask_absent_classes, unary_probabilities

# (B, C, h, w, H, W): enlarged by integer and other factors, the same size (a copy), shrunk,
# one pixel, and the sizes of a 321 px image at output stride 8.
SHAPES = [(1, 1, 1, 1, 1, 1), (2, 3, 5, 7, 9, 4), (2, 4, 6, 5, 6, 5), (1, 5, 8, 8, 3, 2), (1, 2, 1, 1, 4, 3),
          (2, 21, 41, 41, 321, 321)]


def random_inputs(shape, dtype=torch.float64, seed=0):
    b, c, h, w, _, _ = shape
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(b, c, h, w, generator=generator) * 4).to(dtype)
    present = torch.rand(b, c, generator=generator) > 0.4
    present[0] = False  # an image with no class: every class gets 1 / C
    if b > 1:
        present[1, 0] = True
    return logits, present


def relative_error(out, ref):
    return ((out.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_present", [False, True])
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_matches_reference(shape, with_present, dtype, tolerance):
    logits, present = random_inputs(shape, dtype)
    present = present if with_present else None
    size = shape[4:]
    out = upsampled_softmax(logits, size, present)
    ref = upsampled_softmax_reference(logits, size, present)
    assert out.dtype == dtype and out.shape == shape[:2] + size
    assert relative_error(out, ref) < tolerance
    # float32's own rounding: the composite of torch ops is no closer to the reference.
    composite = upsampled_softmax_composite(logits, size, present)
    assert relative_error(out, ref) <= 2 * relative_error(composite, ref) + 1e-14
    torch.testing.assert_close(out.sum(dim=1), torch.ones_like(out[:, 0]))
    if with_present:
        if shape[0] > 1:
            assert (out[1][~present[1]] == 0).all()
        torch.testing.assert_close(out[0], torch.full_like(out[0], 1 / shape[1]), rtol=0, atol=0)


def test_gradcheck():
    logits, present = random_inputs((2, 3, 4, 5, 7, 6))
    logits.requires_grad_()
    assert torch.autograd.gradcheck(lambda l: upsampled_softmax(l, (7, 6), present), (logits,))
    assert torch.autograd.gradcheck(lambda l: upsampled_softmax(l, (3, 9)), (logits,))


def test_gradient_matches_the_composite():
    logits, present = random_inputs((2, 4, 6, 5, 11, 13))
    logits.requires_grad_()
    grad = torch.randn(2, 4, 11, 13, dtype=logits.dtype)
    got = torch.autograd.grad(upsampled_softmax(logits, (11, 13), present), logits, grad)[0]
    want = torch.autograd.grad(upsampled_softmax_composite(logits, (11, 13), present), logits, grad)[0]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_opcheck():
    op = torch.ops.ial.upsampled_softmax.default
    logits, present = random_inputs((2, 3, 4, 5, 9, 7), torch.float32)
    torch.library.opcheck(op, (logits, [9, 7], present))
    torch.library.opcheck(op, (logits.clone().requires_grad_(), [9, 7], present))
    torch.library.opcheck(op, (logits.double().requires_grad_(), [3, 2], None))


def test_torch_compile_fullgraph_matches_eager():
    logits, present = random_inputs((2, 3, 5, 6, 10, 12), torch.float32)
    logits.requires_grad_()

    def loss(logits):
        return upsampled_softmax(logits * 2, (10, 12), present).square().sum()

    compiled = torch.compile(loss, fullgraph=True)
    torch.testing.assert_close(compiled(logits), loss(logits))
    torch.testing.assert_close(torch.autograd.grad(compiled(logits), logits)[0],
                               torch.autograd.grad(loss(logits), logits)[0])


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_output_is_the_same_for_every_thread_count(threads):
    logits, present = random_inputs((3, 5, 7, 6, 29, 31), torch.float32)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = upsampled_softmax(logits, (29, 31), present)
        torch.set_num_threads(threads)
        several = upsampled_softmax(logits, (29, 31), present)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(single, several)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_computes_in_float32(dtype):
    logits, present = random_inputs((1, 3, 4, 4, 9, 9), torch.float32)
    out = upsampled_softmax(logits.to(dtype), (9, 9), present)
    assert out.dtype == dtype
    want = upsampled_softmax(logits.to(dtype).float(), (9, 9), present)
    torch.testing.assert_close(out, want.to(dtype), rtol=0, atol=0)


def test_under_autocast_it_runs_in_float32():
    # As autocast's own softmax: low-precision logits of a convolution give float32 probabilities.
    logits, present = random_inputs((2, 4, 5, 6, 10, 12), torch.float32)
    low = logits.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = upsampled_softmax(low, (10, 12), present)
    assert out.dtype == torch.float32
    assert torch.equal(out, upsampled_softmax(low.float(), (10, 12), present))


def test_channels_last_logits():
    logits, present = random_inputs((2, 5, 6, 7, 12, 14), torch.float32)
    channels_last = logits.contiguous(memory_format=torch.channels_last)
    assert torch.equal(upsampled_softmax(channels_last, (12, 14), present), upsampled_softmax(logits, (12, 14), present))


def test_zero_batch():
    out = upsampled_softmax(torch.rand(0, 3, 4, 4), (8, 8))
    assert out.shape == (0, 3, 8, 8)


def test_unary_probabilities_of_a_unary_network_are_those_of_its_logits():
    torch.manual_seed(0)
    network = UnaryNetwork(6).eval()
    images = torch.randn(2, 3, 45, 38)
    class_labels = torch.tensor([[1, 0, 1, 0, 0, 1], [1, 1, 1, 1, 1, 1]], dtype=torch.float32)
    with torch.no_grad():
        got = unary_probabilities(network, images, class_labels)
        want = mask_absent_classes(network(images), class_labels).softmax(dim=1)
        unmasked = unary_probabilities(network, images)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(unmasked, network(images).softmax(dim=1), rtol=1e-5, atol=1e-6)
    assert (got[0, 1] == 0).all() and (got[0, 3] == 0).all()


BAD_INPUTS = [
    ("logits must be 4-D", lambda: (torch.rand(3, 5, 5), (9, 9), None)),
    ("float16, bfloat16, float32 or float64", lambda: (torch.ones(1, 3, 5, 5, dtype=torch.int64), (9, 9), None)),
    ("size must be positive", lambda: (torch.rand(1, 3, 5, 5), (0, 9), None)),
    ("at least one class", lambda: (torch.rand(1, 0, 5, 5), (9, 9), None)),
    ("present must be a bool tensor", lambda: (torch.rand(1, 3, 5, 5), (9, 9), torch.ones(1, 3))),
    (r"present must have shape \(B, C\) = \(1, 3\)", lambda: (torch.rand(1, 3, 5, 5), (9, 9),
                                                              torch.ones(1, 4, dtype=torch.bool))),
    ("present must be on the device", lambda: (torch.rand(1, 3, 5, 5), (9, 9),
                                               torch.ones(1, 3, dtype=torch.bool, device="meta"))),
]


@pytest.mark.parametrize("message,make", BAD_INPUTS, ids=[m[:30] for m, _ in BAD_INPUTS])
def test_bad_inputs_raise_clear_errors(message, make):
    logits, size, present = make()
    with pytest.raises(RuntimeError, match=message):
        upsampled_softmax(logits, size, present)


def test_size_of_the_wrong_length_raises_a_clear_error():
    with pytest.raises(RuntimeError, match=r"size must be \(H, W\)"):
        torch.ops.ial.upsampled_softmax.default(torch.rand(1, 3, 5, 5), [9, 9, 9], None)


def test_composite_is_the_definition():
    logits, present = random_inputs((2, 3, 4, 5, 8, 10))
    resized = F.interpolate(logits, size=(8, 10), mode="bilinear", align_corners=False)
    want = resized.masked_fill(~present[:, :, None, None], torch.finfo(logits.dtype).min).softmax(dim=1)
    torch.testing.assert_close(upsampled_softmax_composite(logits, (8, 10), present), want, rtol=0, atol=0)
