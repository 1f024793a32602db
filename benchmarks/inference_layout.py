"""The no-grad passes of the EM loop with the convolutions in NCHW against channels-last
(ial_ext.models.memory_format), interleaved round by round in one process, on the same inputs:
  - unary: unary_probabilities of the unary network (the pairwise phase's input, the E-step);
  - refine: Segmenter.labels with the pairwise network (the E-step's label pass, alpha_p);
  - cams: the CAM network's class activation maps (the seeds);
  - with --pairwise-iteration, the pairwise training iteration of benchmarks.pairwise_iteration
    (its unary map is a no-grad pass) both ways, and its floor, for the ratio of each to it.

    python -m benchmarks.inference_layout --batch 4 --size 321 --backbone small --rounds 8
    python -m benchmarks.inference_layout --pairwise-iteration --rounds 10
"""
from __future__ import annotations

import argparse
import json
import statistics
from unittest import mock

import torch

from benchmarks.pairwise_iteration import (NUM_CLASSES, cpu_model, floor_step, make_inputs, median_ratio, network_of,
                                           pairwise_step, round_seconds)
from ial_ext.models import CAMNetwork, UnaryNetwork
from ial_ext.train.segmenter import Segmenter, unary_probabilities
from .cpu_memory import add_memory_options, apply_memory_options


def passes(inputs, backbone: str) -> dict:
    images, labels = inputs.batch["image"], inputs.batch["class_labels"]
    unary = UnaryNetwork(NUM_CLASSES, backbone=backbone).eval()
    segmenter = Segmenter(unary, network_of("default").eval()).eval()
    cam = CAMNetwork(NUM_CLASSES, backbone=backbone).eval()
    # Each pass as labels (B, H, W) or (B, h, w): what the loop keeps of it.
    return {"unary": torch.no_grad()(lambda: unary_probabilities(unary, images, labels).argmax(1)),
            "refine": torch.no_grad()(lambda: segmenter.labels(images, labels)),
            "cams": torch.no_grad()(lambda: cam.cams(images).argmax(1))}


def under_nchw(run):
    """`run` with every network's convolutions on their input as given (NCHW)."""
    def call():
        with mock.patch("ial_ext.models.memory_format.channels_last_pays", return_value=False):
            return run()
    return call


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=321)
    parser.add_argument("--backbone", default="small")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--pairwise-iteration", action="store_true")
    add_memory_options(parser.add_argument)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    memory = apply_memory_options(args.retained_heap_mib, args.large_tensor_heap)
    inputs = make_inputs(args.batch, args.size)
    runs = {"pairwise_iteration": pairwise_step(inputs, "default")} if args.pairwise_iteration else passes(
        inputs, args.backbone)

    steps = {}
    for name, run in runs.items():
        steps[f"{name}_nchw"] = under_nchw(run)
        steps[f"{name}_channels_last"] = run
    result = {"batch": args.batch, "size": args.size, "backbone": args.backbone, "threads": args.threads,
              "cpu": cpu_model(), **memory}
    if args.pairwise_iteration:
        steps["floor"] = floor_step(inputs, "default")
    else:
        result["same_labels"] = {name: torch.equal(steps[f"{name}_nchw"](), run()) for name, run in runs.items()}
    times = round_seconds(steps, args.rounds)
    for name in runs:
        nchw, last = times[f"{name}_nchw"], times[f"{name}_channels_last"]
        result[name] = {"nchw_ms": 1e3 * statistics.median(nchw), "channels_last_ms": 1e3 * statistics.median(last),
                        "nchw_over_channels_last": median_ratio(nchw, last)}
        if "floor" in times:
            result[name].update(nchw_over_floor=median_ratio(nchw, times["floor"]),
                                channels_last_over_floor=median_ratio(last, times["floor"]))
    print(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
