"""The suite's CPU rows of spn_scan or the superpixel ops, interleaved round by round with the copy.

    python -m benchmarks.interleaved_rows scan [--size 4 21 321 321] [--rounds 9]
    python -m benchmarks.interleaved_rows pool [--size 8 21 321 321 300] [--rounds 15] [--only slic]

The pytest-benchmark suite times each row on its own, so a row and the copy it is divided by may
fall in different spells of a shared machine. Here every row and the copy (256 MB, the suite's
roofline) run once per round, and each row is reported as its median time and the median over
rounds of (its time / that round's copy time) x (bytes copied / bytes the row must move), the
suite's "x roofline". A pooling row then also finds its labels and index out of the cache, as the
trainer's calls do. Bytes as in test_bench_spn_scan.py and test_bench_superpixel_pool.py.

Every row follows an untimed copy of the suite's size, so that it reads its inputs from memory
whatever the size of the last-level cache: without it (--no-evict), on a machine whose L3 holds x
the rows after the first read what the row before them left in the L3.
"""
from __future__ import annotations

import argparse
import json

import torch

import ial_ext
from ial_ext.ops import spn_scan, superpixel_pool, superpixel_unpool

from .cpu_memory import add_memory_options, apply_memory_options
from .pairwise_iteration import cpu_model, median_ratio, round_seconds
from .superpixel_labels import make_labels
from .test_bench_copy import COPY_BYTES
from .test_bench_spn_scan import gate_values, values_moved
from .test_bench_superpixel_pool import LABELS


def scan_rows(size: list) -> dict:
    b, c, h, w = size
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, c, h, w, generator=g, requires_grad=True)
    grad = torch.randn(b, c, h, w, generator=g)
    rows = {}
    for layout, gate_channels in (("shared", 3), ("per-channel", 3 * c)):
        gates = (torch.rand(b, gate_channels, h, w, generator=g) / 3).requires_grad_()
        for direction in range(4):
            def forward(gates=gates, direction=direction):
                with torch.no_grad():
                    spn_scan(x, gates, direction)

            def forward_backward(gates=gates, direction=direction):
                torch.autograd.grad(spn_scan(x, gates, direction), (x, gates), grad)

            for mode, call in (("forward", forward), ("forward+backward", forward_backward)):
                nbytes = values_moved(mode, gate_values(layout, c)) * x.numel() * 4
                rows[f"{mode}, {layout} gates, dir {direction}"] = (call, nbytes)
    return rows


def pool_rows(size: list) -> dict:
    b, c, h, w, k_target = size
    g = torch.Generator().manual_seed(0)
    image = torch.randn(b, c, h, w, generator=g, requires_grad=True)
    rows = {}
    for kind in LABELS:
        labels, k = make_labels(kind, b, h, w, k_target)
        table = torch.randn(b, k, c, generator=g, requires_grad=True)
        nbytes = 2 * (image.numel() * 4 + table.numel() * 4 + labels.numel() * 8)
        for op in ("superpixel_pool", "superpixel_unpool"):
            if op == "superpixel_pool":
                source, grad, fn = image, table.detach(), lambda s, labels=labels, k=k: superpixel_pool(s, labels, k)
            else:
                source, grad, fn = table, image.detach(), lambda s, labels=labels: superpixel_unpool(s, labels)

            def dense(source=source, grad=grad, fn=fn):
                torch.autograd.grad(fn(source), source, grad)

            def expanded(source=source, fn=fn):
                torch.autograd.grad(fn(source).sum(), source)

            rows[f"{op}, {kind} K={k}"] = (dense, nbytes)
            rows[f"{op}, {kind} K={k}, expanded grad"] = (expanded, nbytes)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("op", choices=["scan", "pool"])
    parser.add_argument("--size", type=int, nargs="+", help="B C H W (scan) or B C H W K (pool)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="", help="rows whose name contains this")
    parser.add_argument("--evict", action=argparse.BooleanOptionalAction, default=True,
                        help="an untimed copy of the suite's size before every row")
    add_memory_options(parser.add_argument)
    args = parser.parse_args(argv)
    size = args.size or ([4, 21, 321, 321] if args.op == "scan" else [8, 21, 321, 321, 300])
    if len(size) != (4 if args.op == "scan" else 5):
        parser.error(f"--size takes {'B C H W' if args.op == 'scan' else 'B C H W K'}, got {size}")
    torch.set_num_threads(args.threads)
    apply_memory_options(args.retained_heap_mib, args.large_tensor_heap)
    rows = (scan_rows if args.op == "scan" else pool_rows)(size)
    rows = {name: row for name, row in rows.items() if args.only in name}
    # Written values, as test_bench_copy.py: untouched pages of torch.empty all map the kernel's
    # zero page, which a copy then reads from cache.
    src = torch.rand(COPY_BYTES // 4)
    dst = torch.empty_like(src)
    steps = {"copy": lambda: dst.copy_(src)}
    steps.update({name: call for name, (call, _) in rows.items()})
    times = round_seconds(steps, args.rounds, before=steps["copy"] if args.evict else None)
    copy_bytes = 2 * COPY_BYTES
    report = {"cpu": cpu_model(), "caches": ial_ext.cpu_info(), "threads": args.threads, "size": size,
              "evict": args.evict,
              "copy_GB_s": copy_bytes / sorted(times["copy"])[len(times["copy"]) // 2] / 1e9, "rows": {}}
    for name, (_, nbytes) in rows.items():
        report["rows"][name] = {
            "ms": round(sorted(times[name])[len(times[name]) // 2] * 1e3, 3),
            "x_roofline": round(median_ratio(times[name], times["copy"]) * copy_bytes / nbytes, 3),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
