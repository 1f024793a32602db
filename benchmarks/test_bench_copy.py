"""The machine's copy bandwidth, measured in the same run as the ops: the roofline."""
import pytest
import torch

from .conftest import calls_per_round, devices, repeated

COPY_BYTES = 256 * 1024 * 1024  # well past the last-level cache


@pytest.mark.parametrize("device", devices())
def test_copy_bandwidth(benchmark, device):
    src = torch.rand(COPY_BYTES // 4, device=device)
    dst = torch.empty_like(src)

    def copy():
        dst.copy_(src)

    benchmark.group = f"copy {device}"
    calls = calls_per_round(device)
    benchmark.extra_info.update(kind="copy", device=device, bytes=2 * COPY_BYTES, calls=calls)
    benchmark.pedantic(repeated(copy, device, calls), rounds=20, warmup_rounds=2)
