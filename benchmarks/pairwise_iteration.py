"""One pairwise training iteration as the trainer runs it, against what it is built from.

The iteration (ial_ext.train.steps.pairwise.pairwise_loss, then the trainer's ScheduledSGD step): the
unary map of the default unary network (no grad), the guidance network's gates, the fused
four-direction propagation, eq. 7 on mined-region-like targets and eq. 8 on Felzenszwalb
superpixels, backward, SGD. Beside it, in the same process and on the same inputs:
  - floor: the guidance CNN forward+backward (features and the gate convolution) plus the four
    `spn_scan` calls forward+backward with the layout's gates;
  - unary: one unary training iteration of the default backbone (segmentation loss + SGD step).
The pictures are synthetic scenes with 20 object classes (VOC's 21 with background).

    python -m benchmarks.pairwise_iteration --batch 4 --variant default          # the timing table
    python -m benchmarks.pairwise_iteration --batch 4 --variant default --only pairwise --rounds 1
        # under /usr/bin/time -v: the iteration's peak RSS (the process holds nothing else)
    python -m benchmarks.pairwise_iteration --batch 4 --variant default --profile  # the profile split
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass

import torch

import ial_ext  # noqa: F401  (registers the ops)
from ial_ext.data import SyntheticDataset
from ial_ext.models import PairwiseNetwork, UnaryNetwork
from ial_ext.ops import spn_scan
from ial_ext.superpixels import felzenszwalb_superpixels
from ial_ext.train.config import Config
from ial_ext.train.losses import segmentation_loss
from ial_ext.train.optim import ScheduledSGD
from ial_ext.train.steps.pairwise import PairwiseWithGates, pairwise_loss
from ial_ext.nn import RegionSmoothnessLoss

from .cpu_memory import add_memory_options, apply_memory_options

NUM_CLASSES = 21
UNKNOWN_FRACTION = 0.3  # mined regions leave about this much of an image unknown (255)


@dataclass
class Inputs:
    batch: dict
    unary: UnaryNetwork


def make_inputs(batch_size: int, size: int, seed: int = 0) -> Inputs:
    """A batch as the pairwise phase sees it, and the (frozen) unary network it refines."""
    torch.manual_seed(seed)
    scenes = SyntheticDataset("train", num_images=batch_size, image_size=size,
                              num_object_classes=NUM_CLASSES - 1, seed=seed)
    samples = [scenes[k] for k in range(batch_size)]
    target = torch.stack([s["mask"] for s in samples]).long()
    target[torch.rand(target.shape) < UNKNOWN_FRACTION] = 255
    segments = torch.stack([torch.from_numpy(felzenszwalb_superpixels(s["rgb"].numpy())) for s in samples])
    batch = {
        "image": torch.stack([s["image"] for s in samples]),
        "class_labels": torch.stack([s["class_labels"] for s in samples]),
        "target": target,
        "segments": segments.long(),
    }
    return Inputs(batch, UnaryNetwork(NUM_CLASSES).eval())


# The pairwise networks compared, as arguments over the trainer's defaults: the default (12 shared
# maps, a strength per class and direction, a 16-channel guidance CNN), the shared maps of the
# previous default (32 channels, no strengths) and the per-class maps before them.
VARIANTS = {
    "default": {},
    "shared": {"strength": False, "width": 32},
    "per_class": {"gate_layout": "per_class", "strength": False, "width": 32},
}


def network_of(variant: str) -> PairwiseNetwork:
    model = Config().model
    arguments = {"width": model.pairwise_width, "gate_mode": model.pairwise_gates,
                 "gate_layout": model.pairwise_gate_layout, "strength": model.pairwise_strength}
    return PairwiseNetwork(NUM_CLASSES, **{**arguments, **VARIANTS[variant]})


def pairwise_step(inputs: Inputs, variant: str):
    """A callable running one pairwise training iteration (loss, backward, SGD step)."""
    config = Config()
    network = network_of(variant)
    model = PairwiseWithGates(network).train()
    optimizer = ScheduledSGD(model.parameters(), config.pairwise)
    smoothness = RegionSmoothnessLoss()

    def step():
        optimizer.step(pairwise_loss(model, inputs.unary, inputs.batch, config.loop.smoothness_weight, smoothness))

    return step


def floor_step(inputs: Inputs, variant: str):
    """The guidance CNN forward+backward plus four scans forward+backward (the variant's gate
    layout; the strengths are not part of the floor)."""
    network = network_of(variant).train()
    images = inputs.batch["image"]
    b, _, h, w = images.shape
    gate_channels = 3 * network.gate_channels
    x = torch.rand(b, NUM_CLASSES, h, w, requires_grad=True)
    gates = [(torch.rand(b, gate_channels, h, w) / 3).requires_grad_() for _ in range(4)]

    def step():
        network.zero_grad(set_to_none=True)
        network.gates(network.features(images)).sum().backward()
        for direction, gate in enumerate(gates):
            spn_scan(x, gate, direction).sum().backward()

    return step


def unary_step(inputs: Inputs):
    """One unary training iteration of the default backbone, as the trainer's unary phase."""
    config = Config()
    model = UnaryNetwork(NUM_CLASSES, backbone=config.model.backbone).train()
    optimizer = ScheduledSGD(model.parameters(), config.unary)

    def step():
        optimizer.step(segmentation_loss(model(inputs.batch["image"]), inputs.batch["target"]))

    return step


def cpu_model() -> str:
    with open("/proc/cpuinfo") as handle:
        names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
    return names[0] if names else ""


def round_seconds(steps: dict, rounds: int, warmup: int = 1, before=None) -> dict:
    """Each step's seconds in every round, with the steps' rounds interleaved (A B C A B C ...):
    the process's state (allocator, page cache, other load) then weighs on every step alike.
    `before`, if given, runs untimed ahead of every step."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            if before is not None:
                before()
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return times


def median_seconds(steps: dict, rounds: int, warmup: int = 1) -> dict:
    """Median seconds of each step over interleaved rounds (round_seconds)."""
    return {name: statistics.median(values) for name, values in round_seconds(steps, rounds, warmup).items()}


def median_ratio(numerator: list, denominator: list) -> float:
    """Median over rounds of one step's time over another's in the same round: a slow spell of a
    shared machine then slows both sides of a ratio."""
    return statistics.median(n / d for n, d in zip(numerator, denominator))


def profile_split(step) -> dict:
    """Self CPU seconds of one iteration by kind: ial ops, convolutions, the rest."""
    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        step()
    split = {"ial ops": 0.0, "convolutions": 0.0, "rest": 0.0}
    top = []
    for event in profiler.key_averages():
        seconds = event.self_cpu_time_total / 1e6
        name = event.key
        kind = "ial ops" if name.startswith("ial::") else "convolutions" if "conv" in name else "rest"
        split[kind] += seconds
        top.append((seconds, name))
    split["total"] = sum(split.values())
    split["top"] = [(name, round(seconds, 4)) for seconds, name in sorted(top, reverse=True)[:8]]
    return split


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=321)
    parser.add_argument("--variant", choices=tuple(VARIANTS), default="default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("pairwise", "floor", "unary"))
    parser.add_argument("--profile", action="store_true")
    add_memory_options(parser.add_argument)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    memory = apply_memory_options(args.retained_heap_mib, args.large_tensor_heap)
    inputs = make_inputs(args.batch, args.size)
    steps = {"pairwise": lambda: pairwise_step(inputs, args.variant), "floor": lambda: floor_step(inputs, args.variant),
             "unary": lambda: unary_step(inputs)}
    if args.only:
        steps = {args.only: steps[args.only]}
    result = {"batch": args.batch, "size": args.size, "variant": args.variant, "threads": args.threads,
              "cpu": cpu_model(), **memory}
    if args.profile:
        result["profile"] = profile_split(steps["pairwise"]())
    else:
        built = {name: build() for name, build in steps.items()}
        times = round_seconds(built, args.rounds, warmup=0 if args.rounds == 1 else 1)
        result.update({f"{name}_s": statistics.median(values) for name, values in times.items()})
        for other in ("floor", "unary"):
            if other in times and "pairwise" in times:
                result[f"pairwise_over_{other}"] = median_ratio(times["pairwise"], times[other])
    print(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
