"""ial_ext.superpixels: Felzenszwalb superpixels, majority downsampling, the on-disk cache."""
import numpy as np
import pytest
import torch
from skimage import data, transform

from ial_ext.superpixels import (
    SuperpixelCache,
    SuperpixelParams,
    downsample_labels,
    felzenszwalb_superpixels,
)


def sample_rgb(name="astronaut", size=321):
    image = getattr(data, name)()
    return (transform.resize(image, (size, size), anti_aliasing=True) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def astronaut():
    return sample_rgb()


def test_few_hundred_contiguous_segments_on_a_321_sample(astronaut):
    labels = felzenszwalb_superpixels(astronaut)
    assert labels.dtype == np.int64 and labels.shape == (321, 321)
    k = labels.max() + 1
    assert 100 <= k <= 1000
    assert labels.min() == 0
    assert np.array_equal(np.unique(labels), np.arange(k))
    # Numbered by first appearance in raster order.
    _, first = np.unique(labels.ravel(), return_index=True)
    assert np.all(np.diff(first) > 0)


def test_deterministic_and_parameter_sensitive(astronaut):
    small = astronaut[::3, ::3].copy()
    a = felzenszwalb_superpixels(small)
    assert np.array_equal(a, felzenszwalb_superpixels(small))
    coarse = felzenszwalb_superpixels(small, SuperpixelParams(scale=400.0, min_size=60))
    assert coarse.max() < a.max()


@pytest.mark.parametrize(
    "kwargs", [dict(scale=0.0), dict(sigma=-1.0), dict(min_size=0), dict(min_size=2.5)]
)
def test_bad_params(kwargs):
    with pytest.raises(ValueError, match="SuperpixelParams"):
        SuperpixelParams(**kwargs)


def test_bad_rgb():
    with pytest.raises(ValueError, match="uint8"):
        felzenszwalb_superpixels(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        felzenszwalb_superpixels(np.zeros((8, 8), dtype=np.uint8))


def downsample_brute_force(labels, stride):
    b, h, w = labels.shape
    oh, ow = -(-h // stride), -(-w // stride)
    out = torch.full((b, oh, ow), -1, dtype=torch.int64)
    for n in range(b):
        for i in range(oh):
            for j in range(ow):
                cell = labels[n, i * stride:(i + 1) * stride, j * stride:(j + 1) * stride].flatten().tolist()
                counts = {}
                for v in cell:
                    if v >= 0:
                        counts[v] = counts.get(v, 0) + 1
                if counts:
                    best = max(counts.values())
                    out[n, i, j] = min(v for v, c in counts.items() if c == best)
    return out


@pytest.mark.parametrize("shape,stride,k", [((2, 9, 13), 2, 3), ((3, 17, 10), 4, 5), ((1, 8, 8), 8, 2),
                                            ((2, 7, 5), 3, 1), ((1, 5, 6), 1, 4)])
def test_downsample_matches_brute_force(shape, stride, k):
    generator = torch.Generator().manual_seed(sum(shape) + stride)
    labels = torch.randint(-1, k, shape, generator=generator)
    out = downsample_labels(labels, stride)
    assert out.shape == (shape[0], -(-shape[1] // stride), -(-shape[2] // stride))
    torch.testing.assert_close(out, downsample_brute_force(labels, stride), rtol=0, atol=0)


def test_downsample_by_hand():
    labels = torch.tensor([[[5, 5, 2, -1],
                            [-1, 2, -1, -1],
                            [7, 7, 3, 4]]])
    # Cells 2x2: {5,5,-1,2} -> 5; {2,-1,-1,-1} -> 2; {7,7} -> 7; {3,4} tie -> 3.
    torch.testing.assert_close(downsample_labels(labels, 2), torch.tensor([[[5, 2], [7, 3]]]))
    assert (downsample_labels(torch.full((1, 4, 4), -1), 2) == -1).all()


def test_downsample_errors():
    with pytest.raises(ValueError, match="int64"):
        downsample_labels(torch.zeros(1, 4, 4, dtype=torch.int32), 2)
    with pytest.raises(ValueError, match="stride"):
        downsample_labels(torch.zeros(1, 4, 4, dtype=torch.int64), 0)


@pytest.fixture
def small_rgb():
    return sample_rgb("coffee", 48)


def test_cache_hit_returns_the_same(tmp_path, small_rgb):
    cache = SuperpixelCache(tmp_path, SuperpixelParams())
    first = cache.get("img/0001.jpg", small_rgb)
    assert (cache.hits, cache.misses) == (0, 1)
    again = SuperpixelCache(tmp_path, SuperpixelParams()).get("img/0001.jpg", small_rgb)
    assert np.array_equal(first, again) and again.dtype == np.int64
    assert np.array_equal(first, felzenszwalb_superpixels(small_rgb))
    assert cache.get("img/0001.jpg", small_rgb) is not None and cache.hits == 1
    assert not list(tmp_path.glob(".tmp-*"))  # no temporary file left behind


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "flip_byte"])
def test_cache_recomputes_a_damaged_entry(tmp_path, small_rgb, damage):
    cache = SuperpixelCache(tmp_path)
    good = cache.get("a", small_rgb)
    path = cache.path("a", small_rgb)
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, len(raw), dtype=np.uint8).tobytes())
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    fresh = SuperpixelCache(tmp_path)
    assert np.array_equal(fresh.get("a", small_rgb), good)
    assert fresh.misses == 1 and fresh.hits == 0
    assert path.read_bytes() == raw  # rewritten
    assert SuperpixelCache(tmp_path).get("a", small_rgb) is not None


def test_cache_keys_on_params_pixels_and_name(tmp_path, small_rgb):
    default = SuperpixelCache(tmp_path)
    coarse = SuperpixelCache(tmp_path, SuperpixelParams(scale=400.0, min_size=60))
    assert default.path("a", small_rgb) != coarse.path("a", small_rgb)
    assert coarse.get("a", small_rgb).max() < default.get("a", small_rgb).max()
    assert coarse.misses == 1 and default.misses == 1
    other = small_rgb.copy()
    other[0, 0, 0] ^= 1
    assert default.path("a", other) != default.path("a", small_rgb)
    assert default.path("b", small_rgb) != default.path("a", small_rgb)
    assert len(list(tmp_path.glob("*.spx"))) == 2


def _write_entry(args):
    directory, rgb = args
    return SuperpixelCache(directory).get("shared", rgb)


def test_cache_two_processes_write_the_same_entry(tmp_path, small_rgb):
    import multiprocessing

    # fork: the workers only run numpy/skimage code, and spawn would cost seconds of imports.
    context = multiprocessing.get_context("fork")
    with context.Pool(2) as pool:
        results = pool.map(_write_entry, [(str(tmp_path), small_rgb)] * 4)
    for labels in results:
        assert np.array_equal(labels, results[0])
    cache = SuperpixelCache(tmp_path)
    assert np.array_equal(cache.get("shared", small_rgb), results[0]) and cache.hits == 1
    assert len(list(tmp_path.iterdir())) == 1
