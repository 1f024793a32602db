"""The EM loop at growing data set sizes: peak RSS, checkpoint size and seconds per image per phase.

For each N, a VOC-layout set of N training images (JPEG photos of varied sizes, palette masks
with 255 borders, benchmarks/voc_layout.py) is written under --data-dir and one EM step is run
under `/usr/bin/time -v` with few iterations. Prints a Markdown table and the growth per
training pixel between the smallest and the largest N; --json writes the figures.

    python benchmarks/scale.py --sizes 100 800                  # the bytes-per-pixel figure
    python benchmarks/scale.py --sizes 500 2000 8000 --json scale.json
    PYTHONPATH=/path/to/old/tree python benchmarks/scale.py ... # measure another version of the code
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.voc_layout import write_voc_layout  # noqa: E402

NETWORKS = ("classifier", "unary", "region", "pairwise")
# Passes over the training set (their time is per training image) and training phases (per
# image seen: iterations x batch size), as the trainer's timings.json names them.
PASSES = ("seeds labels", "unary labels", "mined labels", "refined labels")
VAL_PHASES = ("val labels",)
ENERGY_IMAGES = 16  # loop.energy_images


def train_command(args, root: str, output: str) -> list[str]:
    command = [
        sys.executable, "-m", "ial_ext.cli", "train",
        "--data.dataset", "voc", "--data.root", root, "--data.image_size", str(args.image_size),
        "--loop.steps", "1", "--run.output_dir", output, "--no-run.progress", "--run.threads", str(args.threads),
    ]
    for network in NETWORKS:
        command += [f"--{network}.iterations", str(args.iterations), f"--{network}.batch_size", str(args.batch_size)]
    return command + args.extra


def peak_rss_bytes(time_report: str) -> int:
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_report)
    if not match:
        raise RuntimeError(f"no peak RSS in the /usr/bin/time report:\n{time_report[-2000:]}")
    return int(match.group(1)) * 1024


def checkpoint_bytes(output: str) -> int:
    """The largest checkpoint the run wrote."""
    directory = os.path.join(output, "checkpoints")
    sizes = [os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory) if name.endswith(".pt")]
    return max(sizes)


def folder_bytes(path: str) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(folder, name)) for name in files)
    return total


def phase_seconds(output: str, log: str) -> dict:
    """Seconds per phase: timings.json when the trainer writes one, else its log lines
    ("step 1: unary 18 s, mining 8 s")."""
    path = os.path.join(output, "timings.json")
    if os.path.isfile(path):
        seconds: dict = {}
        for entry in json.load(open(path)):
            seconds[entry["phase"]] = seconds.get(entry["phase"], 0.0) + entry["seconds"]
        return seconds
    seconds = {}
    for line in log.splitlines():
        if re.match(r"step \d+: ", line):
            for phase, value in re.findall(r"([A-Za-z -]+?) (\d+) s", line.split(": ", 1)[1]):
                seconds[phase.strip(" ,")] = float(value)
    return seconds


def measure(args, images: int) -> dict:
    root = os.path.join(args.data_dir, "voc")
    write_voc_layout(root, images, args.val_images, min_side=args.min_side, max_side=args.max_side)
    output = os.path.join(args.data_dir, f"run_{images}")
    shutil.rmtree(output, ignore_errors=True)
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-v", *train_command(args, root, output)],
                            capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"training on {images} images failed:\n{result.stderr[-4000:]}")
    labels = os.path.join(output, "labels")
    figures = {
        "images": images,
        "pixels": images * args.image_size**2,
        "peak_rss": peak_rss_bytes(result.stderr),
        "checkpoint": checkpoint_bytes(output),
        "label_store": folder_bytes(labels) if os.path.isdir(labels) else None,
        "wall": wall,
        "seconds": phase_seconds(output, result.stdout + result.stderr),
    }
    if not args.keep:
        shutil.rmtree(output, ignore_errors=True)
    return figures


def per_image(figure: dict, phase: str, args) -> str:
    """Milliseconds per image the phase handled: the training set for a pass over it, the val
    set, the energy's images, or iterations x batch size for a training phase."""
    seconds = figure["seconds"].get(phase)
    if seconds is None:
        return "-"
    if phase in PASSES:
        count = figure["images"]
    elif phase in VAL_PHASES:
        count = args.val_images
    elif phase == "energy":
        count = ENERGY_IMAGES
    else:
        count = args.iterations * args.batch_size
    return f"{1000 * seconds / count:.2f}"


def report(figures: list[dict], args) -> str:
    phases = sorted({phase for figure in figures for phase in figure["seconds"]})
    header = ["N", "peak RSS (MB)", "checkpoint (MB)", "label stores (B/image)", "wall (s)"]
    header += [f"{phase} (ms/img)" for phase in phases]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for figure in figures:
        store = "-" if figure["label_store"] is None else f"{figure['label_store'] / figure['images']:.0f}"
        cells = [f"{figure['images']:,}", f"{figure['peak_rss'] / 1e6:.0f}", f"{figure['checkpoint'] / 1e6:.2f}",
                 store, f"{figure['wall']:.0f}"]
        cells += [per_image(figure, phase, args) for phase in phases]
        lines.append("| " + " | ".join(cells) + " |")
    if len(figures) > 1:
        small, large = figures[0], figures[-1]
        pixels = large["pixels"] - small["pixels"]
        lines.append("")
        lines.append(
            f"growth per training pixel, N = {small['images']:,} -> {large['images']:,} at {args.image_size} px: "
            f"peak RSS {(large['peak_rss'] - small['peak_rss']) / pixels:+.3f} B, "
            f"checkpoint {(large['checkpoint'] - small['checkpoint']) / pixels:+.4f} B"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 8000], help="training images N")
    parser.add_argument("--val-images", type=int, default=50)
    parser.add_argument("--image-size", type=int, default=96, help="data.image_size of the run")
    parser.add_argument("--min-side", type=int, default=80, help="smallest photo side on disk")
    parser.add_argument("--max-side", type=int, default=160, help="largest photo side on disk")
    parser.add_argument("--iterations", type=int, default=20, help="iterations of each network")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="run.threads")
    parser.add_argument("--data-dir", default="/tmp/ial_scale", help="where the data sets and runs go")
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("extra", nargs="*", help="more `ial train` options, after --")
    args = parser.parse_args(argv)
    figures = []
    for images in sorted(args.sizes):
        figures.append(measure(args, images))
        print(f"N={images:,}: peak RSS {figures[-1]['peak_rss'] / 1e6:.0f} MB, "
              f"checkpoint {figures[-1]['checkpoint'] / 1e6:.2f} MB, {figures[-1]['wall']:.0f} s", flush=True)
    print(report(figures, args))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"settings": {k: v for k, v in vars(args).items() if k != "json"}, "figures": figures},
                      handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
