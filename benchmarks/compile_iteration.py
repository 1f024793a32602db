"""One unary and one pairwise training iteration, eager against torch.compile (run.compile), on the
same inputs in one process: the first compiled call (compilation included) and the median of the
steady iterations after it.

    python -m benchmarks.compile_iteration --batch 2 --size 321 --threads 1
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from benchmarks.pairwise_iteration import NUM_CLASSES, Inputs, cpu_model, make_inputs, median_seconds
from ial_ext.models import PairwiseNetwork, UnaryNetwork
from ial_ext.nn import RegionSmoothnessLoss
from ial_ext.train.config import Config
from ial_ext.train.losses import segmentation_loss
from ial_ext.train.optim import ScheduledSGD
from ial_ext.train.steps.pairwise import PairwiseWithGates, pairwise_loss


def unary_iteration(inputs: Inputs, compiled: bool):
    """A callable running one unary training iteration (the trainer's loss and SGD step)."""
    config = Config()
    torch.manual_seed(0)
    network = UnaryNetwork(NUM_CLASSES, backbone=config.model.backbone).train()
    model = torch.compile(network) if compiled else network
    optimizer = ScheduledSGD(network.parameters(), config.unary)
    batch = inputs.batch
    return lambda: optimizer.step(segmentation_loss(model(batch["image"]), batch["target"]))


def pairwise_iteration(inputs: Inputs, compiled: bool):
    """A callable running one pairwise training iteration with eq. 7 + eq. 8 (the default network)."""
    config = Config()
    torch.manual_seed(0)
    network = PairwiseWithGates(PairwiseNetwork(
        NUM_CLASSES, width=config.model.pairwise_width, gate_mode=config.model.pairwise_gates,
        gate_layout=config.model.pairwise_gate_layout,
    )).train()
    model = torch.compile(network) if compiled else network
    optimizer = ScheduledSGD(network.parameters(), config.pairwise)
    smoothness = RegionSmoothnessLoss()
    return lambda: optimizer.step(
        pairwise_loss(model, inputs.unary, inputs.batch, config.loop.smoothness_weight, smoothness)
    )


def first_call_seconds(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=321)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    inputs = make_inputs(args.batch, args.size)
    result = {"batch": args.batch, "size": args.size, "threads": args.threads, "cpu": cpu_model(),
              "torch": torch.__version__}
    for name, build in (("unary", unary_iteration), ("pairwise", pairwise_iteration)):
        for mode in ("eager", "compiled"):
            try:
                step = build(inputs, mode == "compiled")
                result[f"{name}_{mode}_first_s"] = first_call_seconds(step)
                result[f"{name}_{mode}_s"] = median_seconds({name: step}, args.rounds, warmup=0)[name]
            except Exception as error:  # a compile failure is a result to report, not a crash
                result[f"{name}_{mode}_error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
        if f"{name}_compiled_s" in result:
            result[f"{name}_compiled_over_eager"] = result[f"{name}_compiled_s"] / result[f"{name}_eager_s"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
