"""Outputs past cpu_info()["streaming_store_bytes"] are written with non-temporal stores
(AVX2 float32): the same values as the regular stores that smaller outputs get."""
import math

import pytest
import torch

import ial_ext
from ial_ext.ops import superpixel_unpool, upsampled_softmax

THRESHOLD = ial_ext.cpu_info()["streaming_store_bytes"]
H, W = 129, 131  # rows at every alignment; a partial last tile
needs_avx2 = pytest.mark.skipif(ial_ext.cpu_info()["isa"] == "default", reason="no AVX2 kernels on this CPU")
needs_small_cache = pytest.mark.skipif(
    THRESHOLD > 64 << 20, reason=f"outputs stream past {THRESHOLD >> 20} MiB here, too large for a unit test"
)
pytestmark = [needs_avx2, needs_small_cache]


def streamed_channels():
    return math.ceil(THRESHOLD / (H * W * 4)) + 1


def chunks(channels):
    per = max(1, THRESHOLD // (2 * H * W * 4))  # each chunk's output stays below the threshold
    return [(c, min(c + per, channels)) for c in range(0, channels, per)]


def per_channel_part(gates, channels, c0, c1):
    """Channels [c0, c1) of per-channel gates, laid out [a | b | c]."""
    return torch.cat([gates[:, k * channels + c0:k * channels + c1] for k in range(3)], 1)


@pytest.mark.parametrize("direction", range(4))
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per-channel"])
def test_spn_scan_streamed_outputs_match_regular_ones(direction, shared):
    c = streamed_channels()
    g = torch.Generator().manual_seed(direction)
    x = torch.randn(1, c, H, W, generator=g)
    gates = torch.rand(1, 3 if shared else 3 * c, H, W, generator=g) / 3
    grad_h = torch.randn(1, c, H, W, generator=g)
    h = torch.ops.ial.spn_scan(x, gates, direction)
    grad_x, grad_gates = torch.ops.ial.spn_scan_backward(grad_h, x, gates, h, direction)
    assert h.nbytes > THRESHOLD
    for c0, c1 in chunks(c):
        part_gates = gates if shared else per_channel_part(gates, c, c0, c1)
        part_h = torch.ops.ial.spn_scan(x[:, c0:c1], part_gates, direction)
        assert torch.equal(h[:, c0:c1], part_h)
        part_gx, part_gg = torch.ops.ial.spn_scan_backward(grad_h[:, c0:c1], x[:, c0:c1], part_gates, part_h, direction)
        assert torch.equal(grad_x[:, c0:c1], part_gx)
        if not shared:  # (a shared gate gradient is small, and summed over the channels)
            assert torch.equal(per_channel_part(grad_gates, c, c0, c1), part_gg)


def test_superpixel_unpool_streamed_output_matches_regular_one():
    c = streamed_channels()
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 50, (1, H, W), generator=g)
    pooled = torch.randn(1, 50, c, generator=g)
    out = superpixel_unpool(pooled, labels)
    assert out.nbytes > THRESHOLD
    for c0, c1 in chunks(c):
        assert torch.equal(out[:, c0:c1], superpixel_unpool(pooled[:, :, c0:c1].contiguous(), labels))


def test_upsampled_softmax_streamed_output_matches_regular_one():
    # Batch items are independent: the whole batch (streamed) against one item at a time.
    b = math.ceil(THRESHOLD / (3 * H * W * 4)) + 1
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(b, 3, 17, 17, generator=g) * 3
    present = torch.rand(b, 3, generator=g) > 0.3
    whole = upsampled_softmax(logits, (H, W), present)
    per = max(1, THRESHOLD // (2 * 3 * H * W * 4))
    for b0 in range(0, b, per):
        part = upsampled_softmax(logits[b0:b0 + per], (H, W), present[b0:b0 + per])
        assert torch.equal(whole[b0:b0 + per], part)
