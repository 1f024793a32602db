"""The CPU kernels' runtime: parallel loops really use torch's threads, and large outputs
come from the output cache (ial_ext.release_output_cache)."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import ial_ext
from ial_ext import _C
from ial_ext.ops import spn_scan, superpixel_unpool

# 4 x 8 x 256 x 256 float32 = 8 MiB: the smallest output the cache takes.
LARGE = (4, 8, 256, 256)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or "OpenMP" not in torch.__config__.parallel_info(),
    reason="setup.py enables OpenMP for Linux builds against an OpenMP torch",
)
@pytest.mark.parametrize("threads", [1, 2])
def test_parallel_loops_use_torch_threads(threads):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert _C.threads_used_by_parallel_for(64) == threads
    finally:
        torch.set_num_threads(previous)


def test_a_freed_large_output_is_reused_and_released():
    ial_ext.release_output_cache()
    b, c, h, w = LARGE
    x = torch.randn(LARGE)
    gates = torch.rand(b, 3 * c, h, w) / 3
    with torch.no_grad():
        first = spn_scan(x, gates, 0)
        address = first.data_ptr()
        expected = first.clone()
        del first
        again = spn_scan(x, gates, 0)
    assert again.data_ptr() == address
    torch.testing.assert_close(again, expected, rtol=0, atol=0)
    del again
    assert ial_ext.release_output_cache() >= x.numel() * 4
    assert ial_ext.release_output_cache() == 0


def test_cached_outputs_are_ordinary_tensors():
    b, c, h, w = LARGE
    labels = torch.randint(0, 5, (b, h, w))
    out = superpixel_unpool(torch.randn(b, 5, c), labels)
    assert out.is_contiguous() and out.device.type == "cpu"
    out.resize_(2, 3)  # resizable storage
    assert out.shape == (2, 3)


def _run(script, **env):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
        env={**os.environ, **env}, timeout=300,
    )


def test_cache_off_frees_outputs():
    script = f"""
        import torch, ial_ext
        from ial_ext.ops import spn_scan
        b, c, h, w = {LARGE}
        x, g = torch.randn(b, c, h, w), torch.rand(b, 3 * c, h, w) / 3
        out = spn_scan(x, g, 0)
        del out
        print(ial_ext.release_output_cache())
        """
    result = _run(script, IAL_EXT_OUTPUT_CACHE_MB="0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_bad_cache_setting_is_a_clear_error():
    result = _run(
        """
        import torch, ial_ext
        from ial_ext.ops import spn_scan
        spn_scan(torch.randn(4, 8, 256, 256), torch.rand(4, 24, 256, 256), 0)
        """,
        IAL_EXT_OUTPUT_CACHE_MB="lots",
    )
    assert result.returncode != 0
    assert "IAL_EXT_OUTPUT_CACHE_MB must be a whole number of MiB" in result.stderr
