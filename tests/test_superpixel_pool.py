"""superpixel_pool / superpixel_unpool on the CPU: parity with the float64 references,
gradients, op registration, torch.compile, errors, zero-size inputs."""
import pytest
import torch

from ial_ext.ops import (
    superpixel_pool,
    superpixel_pool_reference,
    superpixel_unpool,
    superpixel_unpool_reference,
)

# (B, C, H, W, K, kind): kind picks how the labels are drawn (see make_labels).
CASES = [
    (1, 1, 1, 1, 1, "random"),
    (2, 3, 5, 7, 1, "random"),
    (2, 3, 7, 13, 4, "random"),
    (3, 5, 9, 11, 200, "random"),      # K above the pixel count: many empty segments
    (2, 4, 17, 23, 40, "sparse"),      # ids drawn from a few of K, the rest empty
    (2, 3, 13, 9, 6, "ignored"),       # every pixel -1
    (2, 6, 21, 19, 3, "single"),       # one segment covers every pixel
    (2, 7, 33, 41, 25, "blocks"),      # compact superpixel-like blocks
    (1, 3, 80, 80, 500, "blocks"),
]
IDS = [f"{b}x{c}x{h}x{w}-K{k}-{kind}" for b, c, h, w, k, kind in CASES]


def make_labels(b, h, w, k, kind, device="cpu"):
    if kind == "random":
        return torch.randint(-1, k, (b, h, w), device=device)
    if kind == "sparse":
        present = torch.randperm(k)[: max(1, k // 8)]
        return present[torch.randint(0, present.numel(), (b, h, w))].to(device)
    if kind == "ignored":
        return torch.full((b, h, w), -1, dtype=torch.int64, device=device)
    if kind == "single":
        return torch.full((b, h, w), k - 1, dtype=torch.int64, device=device)
    if kind == "blocks":
        side = max(1, int((h * w / k) ** 0.5))
        rows = torch.arange(h).view(h, 1) // side
        cols = torch.arange(w).view(1, w) // side
        per_row = (w + side - 1) // side
        labels = (rows * per_row + cols).clamp_max(k - 1).expand(b, h, w).clone()
        labels[:, 0, 0] = -1
        return labels.to(device)
    raise ValueError(kind)


def random_inputs(case, dtype=torch.float64, device="cpu"):
    b, c, h, w, k, kind = case
    x = torch.randn(b, c, h, w, dtype=dtype, device=device)
    labels = make_labels(b, h, w, k, kind, device)
    pooled = torch.randn(b, k, c, dtype=dtype, device=device)
    return x, labels, pooled, k


def relative_error(out, ref):
    return ((out.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_matches_reference_float64(case):
    x, labels, pooled, k = random_inputs(case)
    torch.testing.assert_close(
        superpixel_pool(x, labels, k), superpixel_pool_reference(x, labels, k), rtol=0, atol=1e-10
    )
    torch.testing.assert_close(
        superpixel_unpool(pooled, labels), superpixel_unpool_reference(pooled, labels), rtol=0, atol=0
    )


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_matches_reference_float32(case):
    x, labels, pooled, k = random_inputs(case)
    out = superpixel_pool(x.float(), labels, k)
    assert out.dtype == torch.float32
    ref = superpixel_pool_reference(x, labels, k)
    if ref.norm() > 0:
        assert relative_error(out, ref) < 1e-5
    else:
        assert out.abs().max() == 0
    out = superpixel_unpool(pooled.float(), labels)
    assert out.dtype == torch.float32
    ref = superpixel_unpool_reference(pooled, labels)
    if ref.norm() > 0:
        assert relative_error(out, ref) < 1e-5
    else:
        assert out.abs().max() == 0


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_backward_matches_reference(case, dtype):
    x, labels, pooled, k = random_inputs(case)
    for op, ref_op, inp, extra in (
        (superpixel_pool, superpixel_pool_reference, x, (k,)),
        (superpixel_unpool, superpixel_unpool_reference, pooled, ()),
    ):
        ref_in = inp.clone().requires_grad_()
        ref_out = ref_op(ref_in, labels, *extra)
        grad = torch.randn_like(ref_out)
        (want,) = torch.autograd.grad(ref_out, ref_in, grad)
        got_in = inp.to(dtype).requires_grad_()
        (got,) = torch.autograd.grad(op(got_in, labels, *extra), got_in, grad.to(dtype))
        assert got.dtype == dtype
        if dtype == torch.float64:
            torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
        elif want.norm() > 0:
            assert relative_error(got, want) < 1e-5
        else:
            assert got.abs().max() == 0


def test_semantics_by_hand():
    x = torch.tensor([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]], dtype=torch.float64)
    labels = torch.tensor([[[0, 0, 2], [-1, 2, 2]]])
    pooled = superpixel_pool(x, labels, 4)
    torch.testing.assert_close(pooled, torch.tensor([[[1.5], [0.0], [14 / 3], [0.0]]], dtype=torch.float64))
    back = superpixel_unpool(pooled, labels)
    torch.testing.assert_close(
        back, torch.tensor([[[[1.5, 1.5, 14 / 3], [0.0, 14 / 3, 14 / 3]]]], dtype=torch.float64)
    )


def test_unpool_of_pool_keeps_segment_constant_maps():
    x, labels, _, k = random_inputs((2, 3, 15, 17, 12, "random"))
    const = superpixel_unpool(torch.randn(2, k, 3, dtype=torch.float64), labels)
    torch.testing.assert_close(superpixel_unpool(superpixel_pool(const, labels, k), labels), const)


def test_gradcheck():
    x, labels, pooled, k = random_inputs((2, 3, 5, 7, 9, "random"))
    x.requires_grad_()
    pooled.requires_grad_()
    assert torch.autograd.gradcheck(lambda a: superpixel_pool(a, labels, k), (x,))
    assert torch.autograd.gradcheck(lambda p: superpixel_unpool(p, labels), (pooled,))
    assert torch.autograd.gradcheck(
        lambda a: superpixel_unpool(superpixel_pool(a, labels, k), labels), (x,)
    )


def test_opcheck():
    x, labels, pooled, k = random_inputs((2, 3, 6, 5, 7, "random"), dtype=torch.float32)
    for check_ids in (True, False):
        torch.library.opcheck(torch.ops.ial.superpixel_pool.default, (x, labels, k, check_ids))
        torch.library.opcheck(torch.ops.ial.superpixel_unpool.default, (pooled, labels, check_ids))
    torch.library.opcheck(
        torch.ops.ial.superpixel_pool.default, (x.clone().requires_grad_(), labels, k)
    )
    torch.library.opcheck(
        torch.ops.ial.superpixel_unpool.default, (pooled.clone().requires_grad_(), labels)
    )
    torch.library.opcheck(torch.ops.ial.superpixel_pool_backward.default, (pooled, labels, False))
    torch.library.opcheck(torch.ops.ial.superpixel_unpool_backward.default, (x, labels, k, False))


def test_torch_compile_fullgraph_matches_eager():
    x, labels, _, k = random_inputs((2, 4, 11, 13, 10, "random"), dtype=torch.float32)

    def smoothness(g, labels):
        smooth = superpixel_unpool(superpixel_pool(g, labels, k), labels)
        return ((g - smooth) ** 2).mean()

    compiled = torch.compile(smoothness, fullgraph=True)
    xe = x.clone().requires_grad_()
    xc = x.clone().requires_grad_()
    eager = smoothness(xe, labels)
    out = compiled(xc, labels)
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-6)
    eager.backward()
    out.backward()
    torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-5, atol=1e-6)


def test_check_ids_false_ignores_bad_ids_without_error():
    labels = torch.tensor([[[0, 5, 1], [-3, 1, 0]]])
    x = torch.arange(6, dtype=torch.float64).view(1, 1, 2, 3)
    pooled = superpixel_pool(x, labels, 2, check_ids=False)
    torch.testing.assert_close(pooled, torch.tensor([[[2.5], [3.0]]], dtype=torch.float64))
    out = superpixel_unpool(pooled, labels, check_ids=False)
    torch.testing.assert_close(out, torch.tensor([[[[2.5, 0, 3.0], [0, 3.0, 2.5]]]], dtype=torch.float64))


def test_non_contiguous_and_expanded_inputs():
    x, labels, pooled, k = random_inputs((2, 3, 9, 11, 8, "random"))
    x_t = x.transpose(2, 3).contiguous().transpose(2, 3)
    labels_t = labels.transpose(1, 2).contiguous().transpose(1, 2)
    torch.testing.assert_close(superpixel_pool(x_t, labels_t, k), superpixel_pool(x, labels, k), rtol=0, atol=0)
    xg = x.clone().requires_grad_()
    grad = torch.ones(1, 1, 1, dtype=x.dtype).expand(2, k, 3)
    (gx,) = torch.autograd.grad(superpixel_pool(xg, labels, k), xg, grad)
    assert torch.isfinite(gx).all()
    torch.testing.assert_close(grad, torch.ones(2, k, 3, dtype=x.dtype), rtol=0, atol=0)


@pytest.mark.parametrize(
    "b,c,h,w,k", [(0, 2, 4, 4, 3), (1, 0, 4, 4, 3), (1, 2, 0, 4, 3), (1, 2, 4, 0, 3), (1, 2, 4, 4, 0)]
)
def test_zero_size(b, c, h, w, k):
    x = torch.randn(b, c, h, w, requires_grad=True)
    labels = torch.full((b, h, w), -1, dtype=torch.int64)
    pooled = superpixel_pool(x, labels, k)
    assert pooled.shape == (b, k, c)
    assert (pooled == 0).all()
    (gx,) = torch.autograd.grad(pooled.sum(), x, allow_unused=True, materialize_grads=True)
    assert gx.shape == x.shape
    p = torch.randn(b, k, c, requires_grad=True)
    out = superpixel_unpool(p, labels)
    assert out.shape == (b, c, h, w)
    (gp,) = torch.autograd.grad(out.sum(), p, allow_unused=True, materialize_grads=True)
    assert gp.shape == p.shape


def _x():
    return torch.rand(2, 3, 4, 5)


def _labels(*shape, dtype=torch.int64):
    return torch.zeros(shape or (2, 4, 5), dtype=dtype)


BAD_POOL = [
    ("labels must be int64", lambda: (_x(), _labels(dtype=torch.int32), 3)),
    ("labels must be int64", lambda: (_x(), _labels(dtype=torch.float32), 3)),
    ("labels must be 3-D", lambda: (_x(), _labels(2, 1, 4, 5), 3)),
    ("x must be 4-D", lambda: (torch.rand(3, 4, 5), _labels(), 3)),
    ("labels must have shape", lambda: (_x(), _labels(1, 4, 5), 3)),
    ("labels must have shape", lambda: (_x(), _labels(2, 5, 4), 3)),
    ("x must be float16, bfloat16, float32 or float64", lambda: (torch.ones(2, 3, 4, 5, dtype=torch.int64), _labels(), 3)),
    ("num_segments must be >= 0", lambda: (_x(), _labels(), -1)),
    ("device", lambda: (_x(), _labels().to("meta"), 3)),
]


@pytest.mark.parametrize("message,make", BAD_POOL, ids=[f"{i}-{m}" for i, (m, _) in enumerate(BAD_POOL)])
def test_bad_pool_inputs_raise_clear_errors(message, make):
    x, labels, k = make()
    with pytest.raises(RuntimeError, match=message):
        superpixel_pool(x, labels, k)


BAD_UNPOOL = [
    ("labels must be int64", lambda: (torch.rand(2, 3, 4), _labels(dtype=torch.int32))),
    ("pooled must be 3-D", lambda: (torch.rand(2, 3), _labels())),
    ("batch size of pooled", lambda: (torch.rand(3, 3, 4), _labels())),
    ("pooled must be float16, bfloat16, float32 or float64", lambda: (torch.ones(2, 3, 4, dtype=torch.int32), _labels())),
    ("device", lambda: (torch.rand(2, 3, 4), _labels().to("meta"))),
]


@pytest.mark.parametrize("message,make", BAD_UNPOOL, ids=[f"{i}-{m}" for i, (m, _) in enumerate(BAD_UNPOOL)])
def test_bad_unpool_inputs_raise_clear_errors(message, make):
    pooled, labels = make()
    with pytest.raises(RuntimeError, match=message):
        superpixel_unpool(pooled, labels)


@pytest.mark.parametrize("bad_id", [3, 7, -2, -100])
def test_out_of_range_ids_raise_and_name_the_id(bad_id):
    labels = _labels()
    labels[1, 2, 3] = bad_id
    pattern = rf"labels\[1, 2, 3\] = {bad_id} is out of range.*\[0, 3\)"
    with pytest.raises(RuntimeError, match=pattern):
        superpixel_pool(_x(), labels, 3)
    with pytest.raises(RuntimeError, match=pattern):
        superpixel_unpool(torch.rand(2, 3, 4), labels)
    with pytest.raises(RuntimeError, match=pattern):
        torch.ops.ial.superpixel_pool_backward(torch.rand(2, 3, 4), labels)
    with pytest.raises(RuntimeError, match=pattern):
        torch.ops.ial.superpixel_unpool_backward(_x(), labels, 3)


def test_first_bad_pixel_is_reported():
    labels = _labels()
    labels[1, 3, 4] = 9
    labels[0, 1, 2] = -5
    with pytest.raises(RuntimeError, match=r"labels\[0, 1, 2\] = -5"):
        superpixel_pool(_x(), labels, 3)


def test_ids_need_segments_when_k_is_zero():
    with pytest.raises(RuntimeError, match=r"= 0 is out of range"):
        superpixel_pool(_x(), _labels(), 0)


# The float32 CPU kernels work on groups of 8 channels and 8-pixel tiles, sum
# runs of at most 64 pixels in float and stream outputs past 16 MiB: cover
# partial groups, pixel tails, long runs and a streamed output.
FLOAT32_CASES = [
    (2, 8, 8, 8, 3, "blocks"),
    (2, 19, 23, 29, 30, "blocks"),
    (1, 17, 9, 80, 1, "single"),       # one run per row longer than 64 pixels
    (2, 24, 13, 11, 40, "random"),
    (1, 9, 33, 17, 50, "sparse"),
    (1, 64, 260, 260, 300, "blocks"),  # 17 MB output: streaming stores where the L3 is at most 34 MB
    (2, 21, 321, 321, 300, "blocks"),  # the same, with channel rows at every alignment
]


@pytest.mark.parametrize("case", FLOAT32_CASES, ids=[f"{b}x{c}x{h}x{w}-K{k}-{kind}" for b, c, h, w, k, kind in FLOAT32_CASES])
def test_float32_channel_groups_match_reference(case):
    x, labels, pooled, k = random_inputs(case, dtype=torch.float32)
    ref = superpixel_pool_reference(x, labels, k)
    assert relative_error(superpixel_pool(x, labels, k), ref) < 1e-6
    torch.testing.assert_close(superpixel_unpool(pooled, labels), superpixel_unpool_reference(pooled, labels),
                               rtol=0, atol=0)
    grad_x = torch.ops.ial.superpixel_pool_backward(pooled, labels)
    want = superpixel_unpool_reference(pooled.double() / torch.stack(
        [torch.bincount(l[l >= 0], minlength=k).clamp_min(1) for l in labels.view(labels.shape[0], -1)]
    ).unsqueeze(-1), labels)
    assert relative_error(grad_x, want) < 1e-6
    sums = torch.ops.ial.superpixel_unpool_backward(x, labels, k)
    counts = torch.stack([torch.bincount(l[l >= 0], minlength=k) for l in labels.view(labels.shape[0], -1)])
    assert relative_error(sums, ref * counts.unsqueeze(-1)) < 1e-6
