"""The CPU rows of the suite timed as CPU time of the calling thread, for a shared machine.

    python -m benchmarks.cpu_time [--what scan,propagate,pool] [--calls 11]

Runs the ops of test_bench_spn_scan.py and test_bench_superpixel_pool.py on one torch
thread and times each call with time.thread_time, which other processes' time slices
do not inflate (page faults are the thread's own kernel time and count). The roofline
is a 256 MiB copy timed the same way, before and after; "x" is the op's median over
the bytes it must move at the first copy's bandwidth, as report.py computes it. On a
quiet machine use the suite itself (2 threads, wall time).
"""
import argparse
import statistics
import time

import torch

from ial_ext.nn import SpatialPropagation
from ial_ext.ops import spn_scan, superpixel_pool, superpixel_unpool

from .cpu_memory import add_memory_options, apply_memory_options
from .superpixel_labels import make_labels
from .test_bench_spn_scan import LAYOUTS, PROPAGATION_SIZES, gate_values, values_moved
from .test_bench_superpixel_pool import SIZES as POOL_SIZES

SCAN_SIZE = (4, 21, 321, 321)


def median_time(call, calls):
    call()
    times = []
    for _ in range(calls):
        start = time.thread_time()
        call()
        times.append(time.thread_time() - start)
    return statistics.median(times)


def copy_bandwidth(calls):
    src = torch.rand(64 * 1024 * 1024)
    dst = torch.empty_like(src)
    return 2 * src.nbytes / median_time(lambda: dst.copy_(src), calls)


def forward_and_backward(fn, inputs, grad):
    def forward():
        with torch.no_grad():
            fn(*inputs)

    leaves = [t.detach().clone().requires_grad_() for t in inputs]

    def both():
        torch.autograd.grad(fn(*leaves), leaves, grad)

    return forward, both


def cell(seconds, nbytes, bandwidth):
    return f"{seconds * 1e3:.2f} ({seconds * bandwidth / nbytes:.2f}x)"


def scan_rows(bandwidth, calls):
    b, c, h, w = SCAN_SIZE
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(SCAN_SIZE, generator=generator)
    grad = torch.randn(SCAN_SIZE, generator=generator)
    print(f"\nspn_scan {'x'.join(map(str, SCAN_SIZE))}: ms (x roofline)\n")
    print("| gates | dir | forward | forward+backward |\n|---|---|---|---|")
    for layout in LAYOUTS:
        gates = torch.rand(b, 3 * (c if layout == "per-channel" else 1), h, w, generator=generator) / 3
        g = gate_values(layout, c)
        for direction in range(4):
            forward, both = forward_and_backward(lambda a, gg: spn_scan(a, gg, direction), (x, gates), grad)
            cells = [cell(median_time(call, calls), values_moved(mode, g) * x.nbytes, bandwidth)
                     for call, mode in ((forward, "forward"), (both, "forward+backward"))]
            print(f"| {layout} | {direction} | " + " | ".join(cells) + " |", flush=True)


def propagate_rows(bandwidth, calls):
    module = SpatialPropagation(fused=True)
    for size in PROPAGATION_SIZES:
        b, c, h, w = size
        generator = torch.Generator().manual_seed(0)
        x = torch.rand(size, generator=generator)
        grad = torch.randn(size, generator=generator)
        print(f"\nspn_propagate {'x'.join(map(str, size))}: ms (x roofline)\n")
        print("| guidance | forward | forward+backward |\n|---|---|---|")
        for layout in LAYOUTS:
            guidance = torch.randn(b, 12 * (c if layout == "per-channel" else 1), h, w, generator=generator) * 0.5
            g = 4 * gate_values(layout, c)
            forward, both = forward_and_backward(module, (x, guidance), grad)
            cells = [cell(median_time(forward, calls), (2 + g) * x.nbytes, bandwidth),
                     cell(median_time(both, calls), (5 + 3 * g) * x.nbytes, bandwidth)]
            print(f"| {layout} | " + " | ".join(cells) + " |", flush=True)


def pool_rows(bandwidth, calls, kinds):
    print("\nsuperpixel_pool / superpixel_unpool: ms (x roofline); exp = the gradient of .sum()\n")
    header = [f"{op} {mode}" for op in ("pool", "unpool") for mode in ("fwd", "fwd+bwd", "fwd+bwd exp")]
    print("| size | labels | " + " | ".join(header) + " |\n|" + "---|" * (2 + len(header)))
    for b, c, h, w, k_target in POOL_SIZES:
        for kind in kinds:
            labels, k = make_labels(kind, b, h, w, k_target)
            generator = torch.Generator().manual_seed(0)
            image = torch.randn(b, c, h, w, generator=generator)
            table = torch.randn(b, k, c, generator=generator)
            one_way = image.nbytes + table.nbytes + labels.nbytes
            cells = []
            for source, grad, fn in ((image, table, lambda s: superpixel_pool(s, labels, k)),
                                     (table, image, lambda s: superpixel_unpool(s, labels))):
                forward, both = forward_and_backward(fn, (source,), grad)
                leaf = source.detach().clone().requires_grad_()

                def expanded():
                    torch.autograd.grad(fn(leaf).sum(), leaf)

                cells += [cell(median_time(forward, calls), one_way, bandwidth),
                          cell(median_time(both, calls), 2 * one_way, bandwidth),
                          cell(median_time(expanded, calls), 2 * one_way, bandwidth)]
            print(f"| {b}x{c}x{h}x{w} | {kind} K={k} | " + " | ".join(cells) + " |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", default="scan,propagate,pool")
    parser.add_argument("--calls", type=int, default=11, help="timed calls per row (median)")
    parser.add_argument("--labels", default="voronoi,slic,felzenszwalb,random")
    add_memory_options(parser.add_argument)
    args = parser.parse_args()
    torch.set_num_threads(1)
    memory = apply_memory_options(args.retained_heap_mib, args.large_tensor_heap)
    bandwidth = copy_bandwidth(15)
    print(f"one thread, CPU time; copy (read + write) {bandwidth / 1e9:.1f} GB/s; "
          f"retained heap {memory['retained_heap_mib']} MiB, large-tensor heap {memory['large_tensor_heap']}")
    what = args.what.split(",")
    if "scan" in what:
        scan_rows(bandwidth, args.calls)
    if "propagate" in what:
        propagate_rows(bandwidth, max(3, args.calls // 2))
    if "pool" in what:
        pool_rows(bandwidth, args.calls, args.labels.split(","))
    print(f"\ncopy after: {copy_bandwidth(15) / 1e9:.1f} GB/s")


if __name__ == "__main__":
    main()
