"""Turns a pytest-benchmark JSON into the markdown tables of RESULTS.md.

    python benchmarks/report.py benchmarks/results.json

Each op row gives its median time, the peer's median time, the speed-up, and
the roofline: the bytes the op must move over the copy bandwidth measured in
the same run (reads + writes of a large device copy). "x roofline" is the op's
time over that floor (1.0 would be a perfect streaming kernel).
"""
import json
import sys
from collections import defaultdict


def load(path):
    with open(path) as handle:
        return json.load(handle)


def seconds_per_call(bench):
    """A round may queue several calls before its sync (CUDA); the row is per call."""
    return bench["stats"]["median"] / bench["extra_info"].get("calls", 1)


def copy_bandwidth(benchmarks):
    bandwidth = {}
    for bench in benchmarks:
        info = bench["extra_info"]
        if info.get("kind") == "copy":
            bandwidth[info["device"]] = info["bytes"] / seconds_per_call(bench)
    return bandwidth


def op_table(benchmarks, bandwidth, kind, ours="ial_ext"):
    rows = defaultdict(dict)
    for bench in benchmarks:
        info = bench["extra_info"]
        if info.get("kind") != kind:
            continue
        key = (info["device"], info["mode"], tuple(info["size"]), info.get("direction", ""), info.get("case", ""))
        rows[key][info["impl"]] = (seconds_per_call(bench), info["bytes"])
    peers = sorted({impl for row in rows.values() for impl in row if impl != ours})
    header = ["device", "mode", "size", "case", "ial_ext ms", "GB/s", "x roofline"]
    for peer in peers:
        header += [f"{peer} ms", f"speed-up vs {peer}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in sorted(rows):
        device, mode, size, direction, case = key
        row = rows[key]
        if ours not in row:
            continue
        seconds, nbytes = row[ours]
        label = case or f"dir {direction}"
        # Without a copy row for this device (a filtered run) there is no roofline to compare to.
        roofline = f"{seconds * bandwidth[device] / nbytes:.2f}" if device in bandwidth else "-"
        cells = [device, mode, "x".join(map(str, size)), label, f"{seconds * 1e3:.2f}",
                 f"{nbytes / seconds / 1e9:.1f}", roofline]
        for peer in peers:
            if peer in row:
                cells += [f"{row[peer][0] * 1e3:.2f}", f"{row[peer][0] / seconds:.1f}x"]
            else:
                cells += ["-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def roofline_summary(benchmarks, bandwidth, kind, ours="ial_ext"):
    """One row per (device, size, case): forward and forward+backward side by side."""
    cells = defaultdict(dict)
    for bench in benchmarks:
        info = bench["extra_info"]
        if info.get("kind") != kind or info["impl"] != ours or info["device"] not in bandwidth:
            continue
        seconds = seconds_per_call(bench)
        ratio = seconds * bandwidth[info["device"]] / info["bytes"]
        key = (info["device"], tuple(info["size"]), info.get("case") or f"dir {info.get('direction', '')}")
        cells[key][info["mode"]] = f"{seconds * 1e3:.2f} | {ratio:.2f}"
    lines = ["| device | size | case | forward ms | x roofline | forward+backward ms | x roofline |",
             "|---|---|---|---|---|---|---|"]
    for (device, size, case), row in sorted(cells.items()):
        lines.append(f"| {device} | {'x'.join(map(str, size))} | {case} | "
                     f"{row.get('forward', '- | -')} | {row.get('forward+backward', '- | -')} |")
    return "\n".join(lines)


def main(path):
    data = load(path)
    benchmarks = data["benchmarks"]
    bandwidth = copy_bandwidth(benchmarks)
    machine = data.get("machine_info", {})
    print(f"Machine: {machine.get('cpu', {}).get('brand_raw', machine.get('processor', '?'))}, "
          f"torch threads per the run's conftest; run at {data.get('datetime', '?')}")
    kernels = machine.get("ial_ext_cpu")
    if kernels:
        print(f"CPU kernels: {kernels['isa']} dispatch; caches (from {kernels['cache_source']}): "
              f"L1d {kernels['l1d_bytes'] >> 10} KiB, L2 {kernels['l2_bytes'] >> 10} KiB per core, "
              f"L3 {kernels['l3_bytes'] >> 20} MiB shared by {kernels['l3_shared_by']} CPUs; "
              f"output cache {kernels['output_cache']}")
    for device, value in sorted(bandwidth.items()):
        print(f"\nCopy bandwidth ({device}, read + write): {value / 1e9:.1f} GB/s")
    kinds = sorted({b["extra_info"].get("kind") for b in benchmarks} - {"copy", None})
    for kind in kinds:
        print(f"\n### {kind}\n")
        print(op_table(benchmarks, bandwidth, kind))
    for kind in ("spn_scan", "spn_propagate"):
        if kind in kinds and bandwidth:
            print(f"\n### {kind}: forward and forward+backward against the roofline\n")
            print(roofline_summary(benchmarks, bandwidth, kind))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results.json")
