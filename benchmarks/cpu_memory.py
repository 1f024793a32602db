"""The trainer's CPU memory settings as a benchmark's command-line options."""
from __future__ import annotations

import argparse

from ial_ext.train.config import RunConfig
from ial_ext.train.runtime import keep_freed_cpu_memory


def add_memory_options(add_option) -> None:
    """`add_option`: an argparse parser's add_argument, or pytest's parser.addoption."""
    defaults = RunConfig()
    add_option("--retained-heap-mib", type=int, default=defaults.retained_heap_mib,
               help="as the trainer's run.retained_heap_mib (0: glibc's own thresholds)")
    add_option("--large-tensor-heap", action=argparse.BooleanOptionalAction, default=defaults.large_tensor_heap,
               help="as the trainer's run.large_tensor_heap")


def apply_memory_options(retained_heap_mib: int, large_tensor_heap: bool) -> dict:
    """Sets them for this process, as the trainer does; returns those that took effect."""
    return keep_freed_cpu_memory(RunConfig(retained_heap_mib=retained_heap_mib, large_tensor_heap=large_tensor_heap))
