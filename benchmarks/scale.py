"""The EM loop at growing data set sizes: peak RSS, checkpoint size and seconds per image per phase.

For each N, a VOC-layout set of N training images (JPEG photos of varied sizes, palette masks
with 255 borders, benchmarks/voc_layout.py) is written under --data-dir and one EM step is run
under `/usr/bin/time -v` with few iterations, `--repeats` times. Prints a Markdown table and the
growth per training pixel between the smallest and the largest N; --json writes the figures.

Peak RSS varies by tens of MB between identical runs, so the table also gives the heap the
process held at the end of its phases (benchmarks/held_memory.py), which repeats to 0.1 MB: the
growth with N that is not noise.

    python benchmarks/scale.py --sizes 100 800                  # the bytes-per-pixel figure
    python benchmarks/scale.py --sizes 500 2000 8000 --json scale.json
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
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


def train_command(args, root: str, output: str, held_json: str) -> list[str]:
    command = [
        sys.executable, "-m", "benchmarks.held_memory", held_json, "--",
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
    """args.repeats runs on the same set: every run's peak RSS, the last run's other figures."""
    root = os.path.join(args.data_dir, "voc")
    write_voc_layout(root, images, args.val_images, min_side=args.min_side, max_side=args.max_side)
    output = os.path.join(args.data_dir, f"run_{images}")
    held_json = os.path.join(args.data_dir, f"held_{images}.json")
    repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    peaks, walls = [], []
    for _ in range(args.repeats):
        shutil.rmtree(output, ignore_errors=True)
        start = time.perf_counter()
        result = subprocess.run(["/usr/bin/time", "-v", *train_command(args, root, output, held_json)],
                                capture_output=True, text=True, cwd=repository)
        walls.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise RuntimeError(f"training on {images} images failed:\n{result.stderr[-4000:]}")
        peaks.append(peak_rss_bytes(result.stderr))
    labels = os.path.join(output, "labels")
    held = json.load(open(held_json))
    figures = {
        "images": images,
        "pixels": images * args.image_size**2,
        "peak_rss": peaks,
        "held": max(held.values()) if held else None,
        "checkpoint": checkpoint_bytes(output),
        "label_store": folder_bytes(labels) if os.path.isdir(labels) else None,
        "wall": min(walls),
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
    header = ["N", "peak RSS (MB)", "held (MB)", "checkpoint (MB)", "label stores (B/image)", "wall (s)"]
    header += [f"{phase} (ms/img)" for phase in phases]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for figure in figures:
        store = "-" if figure["label_store"] is None else f"{figure['label_store'] / figure['images']:.0f}"
        peaks = sorted(figure["peak_rss"])
        peak = f"{peaks[0] / 1e6:.0f}" + (f"-{peaks[-1] / 1e6:.0f}" if len(peaks) > 1 else "")
        held = "-" if figure["held"] is None else f"{figure['held'] / 1e6:.2f}"
        cells = [f"{figure['images']:,}", peak, held, f"{figure['checkpoint'] / 1e6:.2f}", store, f"{figure['wall']:.0f}"]
        cells += [per_image(figure, phase, args) for phase in phases]
        lines.append("| " + " | ".join(cells) + " |")
    if len(figures) > 1:
        small, large = figures[0], figures[-1]
        pixels = large["pixels"] - small["pixels"]
        lines.append("")
        peak_growth = (statistics.median(large["peak_rss"]) - statistics.median(small["peak_rss"])) / pixels
        spread = max(max(f["peak_rss"]) - min(f["peak_rss"]) for f in (small, large)) / pixels
        held = "-" if None in (small["held"], large["held"]) else f"{(large['held'] - small['held']) / pixels:+.4f} B"
        lines.append(
            f"growth per training pixel, N = {small['images']:,} -> {large['images']:,} at {args.image_size} px: "
            f"held {held}, peak RSS {peak_growth:+.3f} B (medians; the runs of one N spread by up to "
            f"{spread:.3f} B per pixel), checkpoint {(large['checkpoint'] - small['checkpoint']) / pixels:+.4f} B"
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
    parser.add_argument("--repeats", type=int, default=3, help="runs per N (peak RSS varies between identical runs)")
    parser.add_argument("--data-dir", default="/tmp/ial_scale", help="where the data sets and runs go")
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("extra", nargs="*", help="more `ial train` options, after --")
    args = parser.parse_args(argv)
    figures = []
    for images in sorted(args.sizes):
        figures.append(measure(args, images))
        print(f"N={images:,}: peak RSS {max(figures[-1]['peak_rss']) / 1e6:.0f} MB, "
              f"checkpoint {figures[-1]['checkpoint'] / 1e6:.2f} MB, {figures[-1]['wall']:.0f} s", flush=True)
    print(report(figures, args))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"settings": {k: v for k, v in vars(args).items() if k != "json"}, "figures": figures},
                      handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
