"""RegionSmoothnessLoss: eq. 8 of the paper on the superpixel pooling ops."""
import pytest
import torch

from ial_ext.nn import RegionSmoothnessLoss
from ial_ext.ops import superpixel_pool_reference, superpixel_unpool_reference


def block_segments(b, h, w, side=3):
    rows = torch.arange(h).view(h, 1) // side
    cols = torch.arange(w).view(1, w) // side
    per_row = -(-w // side)
    segments = (rows * per_row + cols).expand(b, h, w).clone()
    segments[:, 0, :2] = -1
    return segments, int(segments.max()) + 1


@pytest.mark.parametrize("detach_target", [True, False])
def test_zero_on_maps_constant_per_superpixel(detach_target):
    segments, k = block_segments(2, 10, 11)
    table = torch.randn(2, k, 4, dtype=torch.float64)
    G = superpixel_unpool_reference(table, segments)
    G = torch.where(segments.unsqueeze(1) >= 0, G, torch.randn_like(G))  # ignored pixels hold anything
    loss = RegionSmoothnessLoss(detach_target)(G, segments, k)
    assert loss.abs().item() < 1e-24


def test_value_matches_the_definition():
    segments, k = block_segments(2, 10, 11)
    G = torch.randn(2, 5, 10, 11, dtype=torch.float64)
    means = superpixel_unpool_reference(superpixel_pool_reference(G, segments, k), segments)
    valid = segments.unsqueeze(1) >= 0
    expected = ((G - means)[valid.expand_as(G)] ** 2).mean()
    loss = RegionSmoothnessLoss()(G, segments, k)
    assert loss.item() > 0
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(RegionSmoothnessLoss(False)(G, segments, k), expected, rtol=1e-12, atol=0)


def test_float32_and_all_ignored():
    segments, k = block_segments(1, 6, 6)
    G = torch.randn(1, 3, 6, 6, requires_grad=True)
    loss = RegionSmoothnessLoss()(G, segments, k)
    assert loss.dtype == torch.float32 and loss.item() > 0
    ignored = torch.full_like(segments, -1)
    zero = RegionSmoothnessLoss()(G, ignored, k)
    assert zero.item() == 0
    (grad,) = torch.autograd.grad(zero, G)
    assert (grad == 0).all()


@pytest.mark.parametrize("detach_target", [True, False])
def test_gradcheck(detach_target):
    segments, k = block_segments(2, 5, 7, side=2)
    G = torch.randn(2, 3, 5, 7, dtype=torch.float64, requires_grad=True)
    loss = RegionSmoothnessLoss(detach_target)
    assert torch.autograd.gradcheck(lambda g: loss(g, segments, k), (G,))


def test_both_gradients_agree_and_are_zero_on_ignored_pixels():
    segments, k = block_segments(2, 8, 9)
    G = torch.randn(2, 4, 8, 9, dtype=torch.float64, requires_grad=True)
    (detached,) = torch.autograd.grad(RegionSmoothnessLoss(True)(G, segments, k), G)
    (exact,) = torch.autograd.grad(RegionSmoothnessLoss(False)(G, segments, k), G)
    torch.testing.assert_close(detached, exact, rtol=1e-10, atol=1e-14)
    assert (exact[:, :, 0, :2] == 0).all()
    assert detached.abs().sum() > 0


def test_errors():
    loss = RegionSmoothnessLoss()
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        loss(torch.zeros(3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.int64), 1)
    with pytest.raises(RuntimeError, match="out of range"):
        loss(torch.zeros(1, 2, 4, 4), torch.full((1, 4, 4), 3, dtype=torch.int64), 2)
