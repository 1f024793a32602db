"""The CPU kernels' runtime: parallel loops really use torch's threads, one CPU-feature
dispatch that follows ATEN_CPU_CAPABILITY, the cache sizes the tiling reads, and the
opt-in output cache (IAL_EXT_OUTPUT_CACHE_MB, ial_ext.release_output_cache) and the
retained heap (ial_ext.retain_freed_memory)."""
import os
import platform
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


def test_the_output_cache_is_off_by_default():
    b, c, h, w = LARGE
    with torch.no_grad():
        out = spn_scan(torch.randn(LARGE), torch.rand(b, 3 * c, h, w) / 3, 0)
    del out
    assert ial_ext.release_output_cache() == 0


def test_a_freed_large_output_is_reused_and_released():
    result = _run(
        f"""
        import torch, ial_ext
        from ial_ext.ops import spn_scan
        b, c, h, w = {LARGE}
        x, gates = torch.randn(b, c, h, w), torch.rand(b, 3 * c, h, w) / 3
        with torch.no_grad():
            first = spn_scan(x, gates, 0)
            address, expected = first.data_ptr(), first.clone()
            del first
            again = spn_scan(x, gates, 0)
        assert again.data_ptr() == address
        torch.testing.assert_close(again, expected, rtol=0, atol=0)
        del again
        assert ial_ext.release_output_cache() >= x.numel() * 4
        assert ial_ext.release_output_cache() == 0
        """,
        IAL_EXT_OUTPUT_CACHE_MB="1024",
    )
    assert result.returncode == 0, result.stderr


def test_cached_outputs_are_ordinary_tensors():
    b, c, h, w = LARGE
    labels = torch.randint(0, 5, (b, h, w))
    out = superpixel_unpool(torch.randn(b, 5, c), labels)
    assert out.is_contiguous() and out.device.type == "cpu"
    out.resize_(2, 3)  # resizable storage
    assert out.shape == (2, 3)


# Page faults per fill of a (4, 21, 321, 321) float32 map (33 MiB: above glibc's largest
# dynamic mmap threshold, so by default each one is a fresh mapping), and of an op's output
# of that size.
FAULTS_PER_MAP = """
    import resource, sys, torch, ial_ext
    from ial_ext.ops import spn_scan
    print(ial_ext.retain_freed_memory({retained}))
    x, gates = torch.rand(4, 21, 321, 321), torch.rand(4, 3, 321, 321) / 3
    def faults(make):
        for _ in range(20):  # glibc's heap takes a dozen or so fills to settle to its size
            make()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(3):
            make()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 3
    print(faults(lambda: torch.empty(4, 21, 321, 321).fill_(1.0)))
    with torch.no_grad():
        print(faults(lambda: spn_scan(x, gates, 2)))
    """
PAGES_PER_MAP = 4 * 21 * 321 * 321 * 4 // 4096


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_retained_heap_reuses_freed_maps_and_op_outputs_without_page_faults():
    from ial_ext.train.config import RunConfig

    def faults(retained):
        run = _run(FAULTS_PER_MAP.format(retained=retained))
        assert run.returncode == 0, run.stderr
        took_effect, tensor, output = run.stdout.split()
        return took_effect == "True", int(tensor), int(output)

    took_effect, tensor, output = faults(RunConfig().retained_heap_mib)
    assert took_effect
    assert tensor < PAGES_PER_MAP // 100 and output < PAGES_PER_MAP // 100
    took_effect, fresh_tensor, fresh_output = faults(0)
    assert not took_effect
    # glibc's defaults: a fresh mapping per map, of 4 KiB pages, or of 2 MiB ones where THP is
    # always on
    assert fresh_tensor >= PAGES_PER_MAP // 512 and fresh_output >= PAGES_PER_MAP // 512
    assert tensor < fresh_tensor and output < fresh_output


# The VmFlags of the mapping that holds a large op output (/proc/self/smaps); "hg" = advised as
# transparent huge pages.
OUTPUT_VMFLAGS = """
    import torch
    from ial_ext.ops import spn_scan
    with torch.no_grad():
        out = spn_scan(torch.randn(4, 21, 321, 321), torch.rand(4, 3, 321, 321) / 3, 0)
    address, inside, flags = out.data_ptr(), False, None
    for line in open("/proc/self/smaps"):
        fields = line.split()
        if "-" in fields[0] and ":" not in fields[0]:
            lo, hi = (int(part, 16) for part in fields[0].split("-"))
            inside = lo <= address < hi
        elif inside and fields[0] == "VmFlags:":
            flags = fields[1:]
    print(" ".join(flags))
    """


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="Linux's /proc/self/smaps")
def test_only_cached_outputs_are_advised_as_huge_pages():
    # A fresh huge page per output measured slower than small pages where free 2 MiB pages
    # are scarce (RESULTS.md): outputs that are not reused keep the allocator's pages.
    fresh = _run(OUTPUT_VMFLAGS)
    assert fresh.returncode == 0, fresh.stderr
    assert "hg" not in fresh.stdout.split()
    if os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled"):
        cached = _run(OUTPUT_VMFLAGS, IAL_EXT_OUTPUT_CACHE_MB="1024")
        assert cached.returncode == 0, cached.stderr
        assert "hg" in cached.stdout.split()


def test_zero_keeps_the_allocator_as_it_is():
    assert ial_ext.retain_freed_memory(0) is False


def _run(script, **env):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
        env={**os.environ, **env}, timeout=300,
    )


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


def test_cpu_info_reports_the_isa_and_the_caches():
    info = ial_ext.cpu_info()
    assert info["isa"] in ("default", "avx2", "avx512")
    assert 0 < info["l1d_bytes"] <= info["l2_bytes"] <= info["l3_bytes"]


def test_aten_cpu_capability_default_forces_the_portable_kernels():
    """ATEN_CPU_CAPABILITY caps ial_ext's kernels as it caps ATen's, and the portable
    kernels give the results of the SIMD ones (to rounding)."""
    script = """
        import torch, ial_ext
        from ial_ext.ops import (similarity_gates, spn_propagate, spn_scan, superpixel_pool, superpixel_unpool,
                                 upsampled_softmax)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 9, 37, 41, generator=g)
        gates = torch.rand(2, 27, 37, 41, generator=g) / 3
        labels = torch.randint(-1, 30, (2, 37, 41), generator=g)
        outs = [spn_scan(x, gates, d) for d in range(4)]
        # Shared gates over several horizontal tiles, forward and backward; the fused op.
        wide = torch.randn(1, 5, 19, 600, generator=g)
        shared = torch.rand(1, 3, 19, 600, generator=g) / 3
        grad = torch.randn(1, 5, 19, 600, generator=g)  # randn_like's values depend on ATen's ISA
        for d in range(4):
            h = spn_scan(wide, shared, d)
            outs += [h, *torch.ops.ial.spn_scan_backward(grad, wide, shared, h, d)]
        guidance = torch.randn(1, 12, 19, 600, generator=g) * 0.5
        outs += [spn_propagate(wide, guidance), *torch.ops.ial.spn_propagate_backward(grad, wide, guidance)[:2]]
        strength = 0.5 + torch.rand(4, 5, generator=g)
        outs += [spn_propagate(wide, guidance, strength),
                 *torch.ops.ial.spn_propagate_backward(grad, wide, guidance, strength)]
        logits, embedding = torch.randn(1, 12, 19, 600, generator=g), torch.randn(1, 5, 19, 600, generator=g)
        grad_gates = torch.randn(1, 12, 19, 600, generator=g)
        outs += [similarity_gates(logits, embedding, 1 / 3),
                 *torch.ops.ial.similarity_gates_backward(grad_gates, logits, embedding, 1 / 3)]
        outs.append(superpixel_pool(x, labels, 30))
        outs.append(superpixel_unpool(torch.randn(2, 30, 9, generator=g), labels))
        coarse, present = torch.randn(2, 9, 5, 6, generator=g) * 3, torch.rand(2, 9, generator=g) > 0.4
        outs.append(upsampled_softmax(coarse, (37, 41), present))
        torch.save(outs, "{path}")
        print(ial_ext.cpu_info()["isa"])
        """
    results = {}
    for capability in ("default", ""):
        path = f"{os.environ.get('TMPDIR', '/tmp')}/ial_isa_{capability or 'native'}_{os.getpid()}.pt"
        run = _run(script.format(path=path), ATEN_CPU_CAPABILITY=capability)
        assert run.returncode == 0, run.stderr
        results[capability] = (run.stdout.strip(), torch.load(path))
        os.remove(path)
    assert results["default"][0] == "default"
    for portable, native in zip(results["default"][1], results[""][1]):
        # Rounding differs (FMA contraction, summation order), relative to the largest
        # value: shared gates' gradients are sums over the channels, values up to ~16 here.
        scale = max(1.0, native.abs().max().item())
        torch.testing.assert_close(portable, native, rtol=1e-5, atol=1e-6 * scale)
