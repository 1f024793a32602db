"""Seconds of ial_ext.data.check_files over a VOC-layout split, with 1 and with CHECK_THREADS threads.

    python benchmarks/check_files_timing.py /tmp/voc-check --images 5000 --image-size 320

Writes the set first (benchmarks/voc_layout.py: `--distinct` rendered pictures, copied under new
names up to `--images`), then checks the train_aug split (image + mask headers) a few times. The
page cache is warm after the first pass; the first pass is reported on its own.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time

from ial_ext.data import files
from ial_ext.data.voc import VOCSegmentation
from voc_layout import write_voc_layout


def timed_check(dataset, threads: int) -> float:
    saved = files.CHECK_THREADS
    files.CHECK_THREADS = threads
    try:
        start = time.perf_counter()
        problems = files.check_files(dataset, progress=False)
        elapsed = time.perf_counter() - start
    finally:
        files.CHECK_THREADS = saved
    if problems:
        raise RuntimeError(f"the generated set has bad files: {problems[:3]}")
    return elapsed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--distinct", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if not os.path.isdir(os.path.join(args.root, "VOCdevkit")):
        write_voc_layout(args.root, args.distinct, 1, min_side=args.image_size, max_side=args.image_size, classes=20,
                         copies=math.ceil(args.images / args.distinct))
    dataset = VOCSegmentation(args.root, split="train_aug")
    first = timed_check(dataset, files.CHECK_THREADS)
    result = {"images": len(dataset), "image_size": args.image_size, "first_pass_s": first}
    for threads in (1, files.CHECK_THREADS):
        result[f"warm_s_{threads}_threads"] = min(timed_check(dataset, threads) for _ in range(args.repeats))
    result["warm_ms_per_image"] = 1000 * result[f"warm_s_{files.CHECK_THREADS}_threads"] / len(dataset)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
