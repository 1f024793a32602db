"""superpixel_pool / superpixel_unpool on CUDA: parity with the CPU kernels and the float64
references, gradcheck, the device-side id check, compute-sanitizer. Skipped where no GPU (or
no CUDA build) is present."""
import shutil
import textwrap

import pytest
import torch

from ial_ext.ops import (
    superpixel_pool,
    superpixel_pool_reference,
    superpixel_unpool,
    superpixel_unpool_reference,
)

from .conftest import assert_sanitizer_clean, requires_cuda
from .test_superpixel_pool import CASES, IDS, random_inputs, relative_error

pytestmark = [pytest.mark.cuda, requires_cuda]

CUDA_CASES = CASES + [(4, 64, 80, 80, 500, "blocks"), (2, 21, 321, 321, 300, "single"), (2, 33, 50, 70, 300, "random")]
CUDA_IDS = IDS + ["4x64x80x80-K500-blocks", "2x21x321x321-K300-single", "2x33x50x70-K300-random"]


def _check(out, ref, tol):
    if ref.norm() > 0:
        assert relative_error(out.cpu(), ref) < tol
    else:
        assert out.abs().max().item() == 0


@pytest.mark.parametrize("case", CUDA_CASES, ids=CUDA_IDS)
@pytest.mark.parametrize("check_ids", [True, False])
def test_forward_backward_match_cpu_and_reference(case, check_ids):
    x, labels, pooled, k = random_inputs(case)
    xr, pr = x.clone().requires_grad_(), pooled.clone().requires_grad_()
    ref_pool = superpixel_pool_reference(xr, labels, k)
    ref_unpool = superpixel_unpool_reference(pr, labels)
    g_pool, g_unpool = torch.randn_like(ref_pool), torch.randn_like(ref_unpool)
    (ref_gx,) = torch.autograd.grad(ref_pool, xr, g_pool)
    (ref_gp,) = torch.autograd.grad(ref_unpool, pr, g_unpool)
    lc = labels.cuda()
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        xc = x.to("cuda", dtype).requires_grad_()
        pc = pooled.to("cuda", dtype).requires_grad_()
        out_pool = superpixel_pool(xc, lc, k, check_ids)
        out_unpool = superpixel_unpool(pc, lc, check_ids)
        (gx,) = torch.autograd.grad(out_pool, xc, g_pool.to("cuda", dtype))
        (gp,) = torch.autograd.grad(out_unpool, pc, g_unpool.to("cuda", dtype))
        _check(out_pool, ref_pool, tol)
        _check(out_unpool, ref_unpool, tol)
        _check(gx, ref_gx, tol)
        _check(gp, ref_gp, tol)
        _check(out_pool, superpixel_pool(x.to(dtype), labels, k).double(), tol)
        _check(out_unpool, superpixel_unpool(pooled.to(dtype), labels).double(), tol)


def test_gradcheck_cuda():
    x, labels, pooled, k = random_inputs((2, 3, 5, 7, 9, "random"), device="cuda")
    x.requires_grad_()
    pooled.requires_grad_()
    assert torch.autograd.gradcheck(lambda a: superpixel_pool(a, labels, k), (x,))
    assert torch.autograd.gradcheck(lambda p: superpixel_unpool(p, labels), (pooled,))


def test_opcheck_cuda():
    x, labels, pooled, k = random_inputs((2, 3, 6, 5, 7, "random"), dtype=torch.float32, device="cuda")
    torch.library.opcheck(torch.ops.ial.superpixel_pool.default, (x, labels, k))
    torch.library.opcheck(torch.ops.ial.superpixel_unpool.default, (pooled, labels))
    torch.library.opcheck(torch.ops.ial.superpixel_pool_backward.default, (pooled, labels, False))
    torch.library.opcheck(torch.ops.ial.superpixel_unpool_backward.default, (x, labels, k, False))


@pytest.mark.parametrize("bad_id", [3, 1000, -2])
def test_out_of_range_ids_raise_on_cuda(bad_id):
    labels = torch.zeros(2, 40, 50, dtype=torch.int64)
    labels[1, 30, 7] = bad_id
    labels[1, 35, 9] = bad_id
    labels = labels.cuda()
    x = torch.rand(2, 3, 40, 50, device="cuda")
    pattern = rf"labels\[1, 30, 7\] = {bad_id} is out of range"
    with pytest.raises(RuntimeError, match=pattern):
        superpixel_pool(x, labels, 3)
    with pytest.raises(RuntimeError, match=pattern):
        superpixel_unpool(torch.rand(2, 3, 4, device="cuda"), labels)
    with pytest.raises(RuntimeError, match=pattern):
        torch.ops.ial.superpixel_pool_backward(torch.rand(2, 3, 4, device="cuda"), labels)
    with pytest.raises(RuntimeError, match=pattern):
        torch.ops.ial.superpixel_unpool_backward(x, labels, 3)
    # Unchecked: the bad pixels are ignored, never written out of bounds.
    cpu = superpixel_pool(x.cpu(), labels.cpu(), 3, check_ids=False)
    torch.testing.assert_close(superpixel_pool(x, labels, 3, check_ids=False).cpu(), cpu)


def test_mixed_devices_raise():
    x = torch.rand(1, 2, 4, 4, device="cuda")
    with pytest.raises(RuntimeError, match="device"):
        superpixel_pool(x, torch.zeros(1, 4, 4, dtype=torch.int64), 1)
    with pytest.raises(RuntimeError, match="device"):
        superpixel_unpool(torch.rand(1, 1, 2), torch.zeros(1, 4, 4, dtype=torch.int64, device="cuda"))


@pytest.mark.parametrize("b,c,h,w,k", [(0, 2, 4, 4, 3), (1, 0, 4, 4, 3), (1, 2, 0, 4, 3), (1, 2, 4, 4, 0)])
def test_zero_size_cuda(b, c, h, w, k):
    x = torch.randn(b, c, h, w, device="cuda")
    labels = torch.full((b, h, w), -1, dtype=torch.int64, device="cuda")
    assert superpixel_pool(x, labels, k).shape == (b, k, c)
    assert superpixel_unpool(torch.randn(b, k, c, device="cuda"), labels).shape == (b, c, h, w)


@pytest.mark.skipif(shutil.which("compute-sanitizer") is None, reason="compute-sanitizer not found")
@pytest.mark.parametrize("tool", ["memcheck", "racecheck", "synccheck"])
def test_compute_sanitizer(tool):
    script = textwrap.dedent(
        """
        import torch, ial_ext
        from ial_ext.ops import superpixel_pool, superpixel_unpool
        for (b, c, h, w, k) in [(1, 2, 7, 13, 5), (2, 35, 33, 65, 40), (1, 1, 1, 40, 3)]:
            x = torch.randn(b, c, h, w, device="cuda", requires_grad=True)
            labels = torch.randint(-1, k, (b, h, w), device="cuda")
            labels[:, : h // 2] = 0
            p = superpixel_pool(x, labels, k)
            superpixel_unpool(p, labels).sum().backward()
            labels[0, 0, 0] = k + 3
            superpixel_pool(x.detach(), labels, k, check_ids=False)
            superpixel_unpool(p.detach(), labels, check_ids=False)
        torch.cuda.synchronize()
        """
    )
    assert_sanitizer_clean(tool, script)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_sums_in_float32(dtype):
    x = torch.randn(2, 5, 16, 18, device="cuda").to(dtype)
    labels = torch.randint(-1, 12, (2, 16, 18), device="cuda")
    out = superpixel_pool(x, labels, 12)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float().cpu(), superpixel_pool(x.cpu(), labels.cpu(), 12).float())
