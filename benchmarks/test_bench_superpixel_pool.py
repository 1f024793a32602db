"""superpixel_pool / superpixel_unpool vs what a user would write instead (float32).

Peers, measured in the same run on the same inputs:
- "scatter_reduce": torch.scatter_reduce(..., "mean", include_self=False) over
  (B, C, H*W) for pool, torch.gather from the (B, C, K) table for unpool;
- "index_add": sums and counts with index_add_ (pool), index_select (unpool)
  over pixel-major rows (the float64 references run in float32);
- "one-hot bmm": a (B, H*W, K) one-hot matrix built per call and bmm; only at
  the small size (at 8 x 321 x 321 x 300 the one-hot alone is 1 GB);
- "torch_scatter": torch_scatter.scatter_mean / gather, when importable.

Labels (benchmarks/superpixel_labels.py): Voronoi cells of K jittered grid points for
every peer; for ial_ext also SLIC and Felzenszwalb superpixels of scikit-image's sample
photos and uniformly random ids, and forward+backward with an expanded (stride-0)
gradient, what a ``.sum()`` loss sends back.

Bytes that must move (the roofline numerator): pool forward reads x and the
labels and writes (B, K, C); its backward reads the (B, K, C) gradient and the
labels and writes grad_x. Unpool is the mirror image.
"""
import pytest
import torch
import torch.nn.functional as F

from ial_ext.ops import (
    superpixel_pool,
    superpixel_pool_reference,
    superpixel_unpool,
    superpixel_unpool_reference,
)

from .conftest import calls_per_round, devices, repeated
from .superpixel_labels import make_labels

try:
    import torch_scatter
except ImportError:  # does not build offline here; see RESULTS.md
    torch_scatter = None

# (B, C, H, W, K); K is the target count of the Voronoi, SLIC and random labels.
SIZES = [(4, 256, 80, 80, 400), (8, 21, 321, 321, 300)]
LABELS = ["voronoi", "slic", "felzenszwalb", "random"]
GRADIENTS = ["dense", "expanded"]
_LABEL_CACHE = {}


def labels_for(kind, b, h, w, k):
    key = (kind, b, h, w, k)
    if key not in _LABEL_CACHE:
        _LABEL_CACHE[key] = make_labels(kind, b, h, w, k)
    return _LABEL_CACHE[key]
ONE_HOT_MAX_BYTES = 256 * 1024 * 1024


def pool_scatter_reduce(x, labels, k):
    b, c, h, w = x.shape
    index = labels.view(b, 1, h * w).expand(b, c, h * w)
    out = x.new_zeros(b, c, k).scatter_reduce(2, index, x.reshape(b, c, h * w), "mean", include_self=False)
    return out.transpose(1, 2)


def unpool_gather(pooled, labels):
    b, k, c = pooled.shape
    h, w = labels.shape[1:]
    index = labels.view(b, 1, h * w).expand(b, c, h * w)
    return pooled.transpose(1, 2).gather(2, index).view(b, c, h, w)


def one_hot(labels, k, dtype):
    return F.one_hot(labels.view(labels.shape[0], -1), k).to(dtype)


def pool_one_hot(x, labels, k):
    b, c, h, w = x.shape
    m = one_hot(labels, k, x.dtype)  # (B, HW, K)
    sums = torch.bmm(x.reshape(b, c, h * w), m)
    return (sums / m.sum(1, keepdim=True).clamp_min(1)).transpose(1, 2)


def unpool_one_hot(pooled, labels):
    b, k, c = pooled.shape
    h, w = labels.shape[1:]
    return torch.bmm(pooled.transpose(1, 2), one_hot(labels, k, pooled.dtype).transpose(1, 2)).view(b, c, h, w)


def pool_torch_scatter(x, labels, k):
    b, c, h, w = x.shape
    index = labels.view(b, 1, h * w).expand(b, c, h * w)
    return torch_scatter.scatter_mean(x.reshape(b, c, h * w), index, dim=2, dim_size=k).transpose(1, 2)


POOL = {
    "ial_ext": superpixel_pool,
    "scatter_reduce": pool_scatter_reduce,
    "index_add": lambda x, labels, k: superpixel_pool_reference(x, labels, k, dtype=x.dtype),
    "one-hot bmm": pool_one_hot,
    "torch_scatter": pool_torch_scatter,
}
UNPOOL = {
    "ial_ext": lambda pooled, labels, k: superpixel_unpool(pooled, labels),
    "scatter_reduce": lambda pooled, labels, k: unpool_gather(pooled, labels),
    "index_add": lambda pooled, labels, k: superpixel_unpool_reference(pooled, labels, dtype=pooled.dtype),
    "one-hot bmm": lambda pooled, labels, k: unpool_one_hot(pooled, labels),
}


def skip_reason(impl, op, size, labels, gradient, mode):
    b, c, h, w, k = size
    if (labels != "voronoi" or gradient != "dense") and impl != "ial_ext":
        return "the peers are timed on the Voronoi labels with a dense gradient"
    if gradient == "expanded" and mode == "forward":
        return "no gradient in a forward"
    if impl not in (POOL if op == "superpixel_pool" else UNPOOL):
        return f"no {impl} version of {op} (torch_scatter has no gather; a user calls torch.gather)"
    if impl == "torch_scatter" and torch_scatter is None:
        return "torch_scatter is not installed (no wheel for this torch; it does not build offline here)"
    if impl == "one-hot bmm" and b * h * w * k * 4 > ONE_HOT_MAX_BYTES:
        return "the one-hot matrix would exceed 256 MB"
    return None


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("size", SIZES, ids=["x".join(map(str, s)) for s in SIZES])
@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
@pytest.mark.parametrize("gradient", GRADIENTS)
@pytest.mark.parametrize("label_kind", LABELS)
@pytest.mark.parametrize("op", ["superpixel_pool", "superpixel_unpool"])
@pytest.mark.parametrize("impl", list(POOL))
def test_superpixel_pool(benchmark, impl, op, label_kind, gradient, mode, size, device):
    reason = skip_reason(impl, op, size, label_kind, gradient, mode)
    if reason:
        pytest.skip(reason)
    b, c, h, w, _ = size
    generator = torch.Generator().manual_seed(0)
    labels, k = labels_for(label_kind, b, h, w, size[4])
    labels = labels.to(device)
    image = torch.randn(b, c, h, w, generator=generator).to(device)
    table = torch.randn(b, k, c, generator=generator).to(device)
    if op == "superpixel_pool":
        source, grad_out, fn = image, table, POOL[impl]
    else:
        source, grad_out, fn = table, image, UNPOOL[impl]
    if mode == "forward":
        def call():
            with torch.no_grad():
                fn(source, labels, k)
    elif gradient == "expanded":
        source.requires_grad_()

        def call():
            torch.autograd.grad(fn(source, labels, k).sum(), source)
    else:
        source.requires_grad_()

        def call():
            torch.autograd.grad(fn(source, labels, k), source, grad_out)

    # Forward: read the source and the labels, write the result; the backward
    # moves the same amounts the other way.
    one_way = image.numel() * 4 + table.numel() * 4 + labels.numel() * 8
    calls = calls_per_round(device)
    benchmark.group = f"{op} {mode} {'x'.join(map(str, size))} {label_kind} {gradient} {device}"
    case = f"{label_kind} K={k}" + (", expanded grad" if gradient == "expanded" else "")
    benchmark.extra_info.update(
        kind=op, impl=impl, mode=mode, size=list(size[:4]), case=case, device=device,
        bytes=one_way * (1 if mode == "forward" else 2), calls=calls,
    )
    slow = impl != "ial_ext" and device == "cpu" and h * w > 128 * 128
    benchmark.pedantic(repeated(call, device, calls), rounds=5 if slow else 20, warmup_rounds=1)
