import os

import pytest
import torch

import ial_ext  # noqa: F401  (registers the ops)

from .cpu_memory import add_memory_options, apply_memory_options

# The acceptance figures are for 2 CPU threads; CUDA rows ignore this.
CPU_THREADS = 2


def pytest_addoption(parser):
    add_memory_options(parser.addoption)


@pytest.fixture(autouse=True, scope="session")
def _process(request):
    """The trainer's CPU settings: its thread count and its memory settings."""
    torch.set_num_threads(CPU_THREADS)
    apply_memory_options(request.config.getoption("retained_heap_mib"), request.config.getoption("large_tensor_heap"))


def device_sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def calls_per_round(device: str) -> int:
    """How many calls one timed round queues before it synchronises. On CUDA a call is
    tens of microseconds, about what one host sync costs, so a round queues several
    and report.py divides by the count (extra_info["calls"])."""
    return 10 if device == "cuda" else 1


def repeated(fn, device: str, calls: int):
    """A round: `calls` calls of fn, then one device sync."""

    def run():
        for _ in range(calls):
            fn()
        device_sync(device)

    return run


def devices():
    found = ["cpu"]
    if torch.cuda.is_available() and ial_ext.built_with_cuda():
        found.append("cuda")
    return found


def pytest_benchmark_update_machine_info(config, machine_info):
    """What the CPU rows depend on, recorded in the JSON beside pytest-benchmark's CPU name."""
    info = ial_ext.cpu_info()
    info["output_cache"] = f"IAL_EXT_OUTPUT_CACHE_MB={os.environ.get('IAL_EXT_OUTPUT_CACHE_MB', '0 (off)')}"
    info["allocator"] = os.environ.get("LD_PRELOAD", "glibc malloc")
    info["retained_heap_mib"] = config.getoption("retained_heap_mib")
    info["large_tensor_heap"] = config.getoption("large_tensor_heap")
    machine_info["ial_ext_cpu"] = info
