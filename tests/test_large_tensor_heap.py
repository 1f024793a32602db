"""The heap of large CPU tensors (ial_ext.use_large_tensor_heap, run.large_tensor_heap): it
serves every CPU tensor of 1 MiB and more, torch's and the ops' alike, reuses and merges freed
blocks, keeps their pages until asked, and leaves smaller tensors to torch's allocator. Each test
runs in a process of its own: the heap stays the CPU allocator for the rest of a process."""
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the heap is Linux only")

PRELUDE = """
    import resource, torch, ial_ext
    def rss_bytes():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    assert ial_ext.use_large_tensor_heap()
    assert ial_ext.use_large_tensor_heap()  # again: a no-op
    """
MAP = (4, 21, 321, 321)  # float32: 33 MiB
MAP_BYTES = 4 * 21 * 321 * 321 * 4
PAGES_PER_MAP = MAP_BYTES // 4096


def _run(script):
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PRELUDE) + textwrap.dedent(script)], capture_output=True, text=True,
        env=dict(os.environ), timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_a_freed_block_is_reused_without_page_faults():
    reused, refill_faults = _run(
        f"""
        first = torch.empty{MAP}.fill_(1.0)
        address = first.data_ptr()
        del first
        before = faults()
        again = torch.empty{MAP}.fill_(2.0)
        print(again.data_ptr() == address, faults() - before)
        """
    )
    assert reused == "True"
    assert int(refill_faults) < PAGES_PER_MAP // 100


def test_freed_neighbours_merge_into_one_block():
    # Two 8 MiB blocks side by side, both freed: a 16 MiB block fits where the first was.
    merged, = _run(
        """
        a, b = torch.empty(2 << 20), torch.empty(2 << 20)
        assert b.data_ptr() == a.data_ptr() + (8 << 20)
        start = a.data_ptr()
        del a, b
        print(torch.empty(4 << 20).data_ptr() == start)
        """
    )
    assert merged == "True"


def test_small_tensors_stay_with_torchs_allocator_and_large_ones_in_the_heap():
    # The heap's blocks are aligned to its 64 KiB grain inside its own reservations; a small
    # tensor is not among them, and the two kinds never interleave.
    small_in_heap, large_aligned = _run(
        """
        large = torch.empty(1 << 18)  # exactly 1 MiB: the smallest the heap takes
        small = torch.empty((1 << 18) - 16)
        heap = range(large.data_ptr(), large.data_ptr() + (1 << 30))
        print(small.data_ptr() in heap, large.data_ptr() % (64 << 10) == 0)
        """
    )
    assert small_in_heap == "False" and large_aligned == "True"


def test_release_gives_free_pages_back_and_the_heap_still_serves():
    released, dropped, value = _run(
        f"""
        maps = [torch.ones{MAP} for _ in range(3)]
        del maps
        before = rss_bytes()
        released = ial_ext.release_large_tensor_pages()
        dropped = before - rss_bytes()
        again = torch.full({MAP}, 3.0)
        print(released, dropped, float(again[1, 2, 3, 4]))
        """
    )
    assert int(released) >= 3 * MAP_BYTES
    assert int(dropped) >= 2 * MAP_BYTES
    assert value == "3.0"


def test_a_training_loop_reaches_its_peak_in_the_first_iteration():
    # The same allocations every iteration, with small tensors kept alive between them (the
    # pattern that lets glibc's heap grow): after the first iteration, no new pages.
    growth, loop_faults = _run(
        """
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
                                    torch.nn.Conv2d(16, 21, 3, padding=1))
        x = torch.rand(4, 3, 161, 161)
        kept = []
        def iteration():
            loss = model(x).square().mean()
            loss.backward()
            kept.append(torch.empty(1024))
        iteration()
        first, before = rss_bytes(), faults()
        for _ in range(10):
            iteration()
        print(rss_bytes() - first, faults() - before)
        """
    )
    one_activation = 4 * 21 * 161 * 161 * 4
    assert int(growth) < one_activation // 4
    assert int(loop_faults) < one_activation // 4096


def test_ops_outputs_and_gradients_reuse_the_heaps_pages():
    per_call, = _run(
        f"""
        from ial_ext.ops import spn_scan
        x = torch.rand{MAP}.requires_grad_()
        gates = (torch.rand(4, 3, 321, 321) / 3).requires_grad_()
        def call():
            spn_scan(x, gates, 1).sum().backward()
        for _ in range(3):
            call()
        before = faults()
        for _ in range(3):
            call()
        print((faults() - before) // 3)
        """
    )
    # forward and backward touch several maps' worth of memory; none of it fresh
    assert int(per_call) < PAGES_PER_MAP // 100


def test_the_profilers_memory_view_sees_the_heaps_blocks():
    profiled, = _run(
        f"""
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as run:
            torch.ones{MAP}
        print(max(event.self_cpu_memory_usage for event in run.key_averages()))
        """
    )
    # the block as the heap holds it: the map's bytes, rounded up to the heap's 64 KiB grain
    assert MAP_BYTES <= int(profiled) < MAP_BYTES + (64 << 10)


def test_the_trainer_setting_installs_it_only_when_asked():
    from ial_ext.train.config import RunConfig

    assert RunConfig().large_tensor_heap is True
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(
            """
            import torch, ial_ext
            from ial_ext.train.config import RunConfig
            from ial_ext.train.runtime import keep_freed_cpu_memory
            print(keep_freed_cpu_memory(RunConfig(large_tensor_heap=False, retained_heap_mib=0)))
            print(ial_ext.release_large_tensor_pages())
            """)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["{'large_tensor_heap': False, 'retained_heap_mib': 0}", "0"]
