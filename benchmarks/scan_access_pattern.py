"""The horizontal shared-gate scan against its own memory access pattern, on the CPU.

    python -m benchmarks.scan_access_pattern [--size 4 21 321 321] [--rounds 15] [--threads 2]

A horizontal scan runs along the image's rows, each step needing the whole previous column, so
it moves tiles of columns into line buffers and back (two transposes per element). This times,
interleaved round by round in one process (x float32, gates (B, 3, H, W)):
  - copy: x.copy_ into an existing tensor of its size;
  - suite copy: the copy of test_bench_copy.py (256 MB), the roofline of the suite (report.py):
    on a machine whose regular stores to memory cost a read of the line first, a copy of x's size
    that the C library does not stream may take longer per byte than this one;
  - tiles: the scan's own forward (scan_access_pattern.cpp, the library's code compiled beside
    it) with the line kernels left out: the same gathers of the gate and x tiles, scatters and
    prefetches, and x goes out unchanged;
  - runs of N: x copied in the order the scan moves tiles of N columns (N = 32, the scan's own width
    and the whole row), each row's run straight to the output: what such runs cost the memory
    system, without transposes, line buffers or gates;
  - staged runs of N: the same through a buffer, every channel's tile read in whole, then written
    out, as the scan's gather and scatter are two phases;
  - streamed (runs, staged runs, tiles): the output written with non-temporal stores, which do not
    read its lines first, instead of fetched for writing and stored;
  - scan: `spn_scan` forward with shared gates.
Each as the median over rounds, the median of per-round ratios to the copy ("x_copy"), and the
median of per-round ratios to the suite copy over the values the suite's roofline counts
(2 + 3/C per element: "x_roofline", as in the suite). A scan close to "tiles" spends
its time on the access pattern, not on its arithmetic. Every step follows an untimed suite copy,
so it reads x from memory whatever the size of the last-level cache (--no-evict: without).
The module compiles on first use (torch.utils.cpp_extension, a minute); x86-64 with AVX2 only.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics

import torch
from torch.utils import cpp_extension

import ial_ext
from ial_ext.ops import spn_scan

from .cpu_memory import add_memory_options, apply_memory_options
from .pairwise_iteration import cpu_model, median_ratio, round_seconds
from .test_bench_copy import COPY_BYTES
from .test_bench_spn_scan import gate_values, values_moved

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
# The scan kernels and the dispatch they need, as setup.py compiles them. This module's copy of
# the large-tensor heap is never installed: its tiles' scratch takes the size it needs.
LIBRARY_SOURCES = [
    "common/cpu_features.cpp",
    "common/large_block_heap.cpp",
    "spn_scan/cpu/scan_dispatch.cpp",
    "spn_scan/cpu/scan_kernels_avx2.cpp",
    "spn_scan/cpu/scan_kernels_default.cpp",
]


def build():
    if platform.machine() not in ("x86_64", "AMD64"):
        raise SystemExit("scan_access_pattern: the tile moves it times are the AVX2 ones (x86-64 only)")
    sources = [os.path.join(ROOT, "benchmarks", "scan_access_pattern.cpp")]
    sources += [os.path.join(CSRC, source) for source in LIBRARY_SOURCES]
    openmp = ["-fopenmp"] if "OpenMP" in torch.__config__.parallel_info() else []
    return cpp_extension.load("ial_scan_access_pattern", sources, extra_include_paths=[CSRC],
                              extra_cflags=["-O3", *openmp], extra_ldflags=openmp)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=4, default=(4, 21, 321, 321), metavar=("B", "C", "H", "W"))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--evict", action=argparse.BooleanOptionalAction, default=True,
                        help="an untimed suite copy before every step")
    add_memory_options(parser.add_argument)
    args = parser.parse_args(argv)
    module = build()
    torch.set_num_threads(args.threads)
    apply_memory_options(args.retained_heap_mib, args.large_tensor_heap)
    b, c, h, w = args.size
    x = torch.rand(b, c, h, w)
    gates = torch.rand(b, 3, h, w) / 3
    out = torch.empty_like(x)
    for direction, stream in itertools.product((0, 1), (False, True)):
        if not torch.equal(module.move_tiles(x, gates, direction, stream), x):
            raise SystemExit("scan_access_pattern: the tile moves did not give x back")
    tile = module.tile_width(h, w)
    widths = sorted({32, tile, w})
    for width, staged, stream in itertools.product(widths, (False, True), (False, True)):
        if not torch.equal(module.copy_runs(x, width, staged, stream), x):
            raise SystemExit("scan_access_pattern: the run copy did not give x back")
    suite_src = torch.rand(COPY_BYTES // 4)
    suite_dst = torch.empty_like(suite_src)
    steps = {"copy": lambda: out.copy_(x), "suite copy": lambda: suite_dst.copy_(suite_src)}
    for width in widths:
        for staged, stream in itertools.product((False, True), repeat=2):
            name = f"{'streamed ' if stream else ''}{'staged ' if staged else ''}runs of {width}"
            steps[name] = lambda width=width, staged=staged, stream=stream: module.copy_runs(x, width, staged, stream)
    for direction in (0, 1):
        steps[f"tiles, dir {direction}"] = lambda d=direction: module.move_tiles(x, gates, d, False)
        steps[f"streamed tiles, dir {direction}"] = lambda d=direction: module.move_tiles(x, gates, d, True)
        steps[f"scan, dir {direction}"] = lambda d=direction: spn_scan(x, gates, d)
    with torch.no_grad():
        times = round_seconds(steps, args.rounds, before=steps["suite copy"] if args.evict else None)
    suite_time = statistics.median(times["suite copy"])
    result = {"size": [b, c, h, w], "threads": args.threads, "cpu": cpu_model(), "isa": ial_ext.cpu_info()["isa"],
              "tile_width": tile, "evict": args.evict, "copy_GB_s": 2 * x.nbytes / statistics.median(times["copy"]) / 1e9,
              "suite_copy_GB_s": 2 * COPY_BYTES / suite_time / 1e9}
    # What the suite's roofline counts (test_bench_spn_scan.values_moved), in copies of x.
    scan_copies = values_moved("forward", gate_values("shared", c)) / 2
    for name, values in times.items():
        if name == "suite copy":
            continue
        copies = 1.0 if name == "copy" or "runs of" in name else scan_copies  # the runs move no gates
        to_copy = median_ratio(values, times["copy"])
        to_suite = median_ratio(values, times["suite copy"])
        result[name] = {"ms": round(statistics.median(values) * 1e3, 3), "x_copy": round(to_copy, 3),
                        "x_roofline": round(to_suite * COPY_BYTES / (copies * x.nbytes), 3)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
