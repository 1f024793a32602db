"""One pairwise training iteration under autocast (bfloat16, float16) against float32: the loss
and every parameter's gradient, on the same inputs and initial weights, as the trainer runs it
(run.precision: the unary map and the guidance CNN under autocast, the ial ops in float32).

    python -m benchmarks.precision_iteration --batch 2 --size 321 --threads 1
"""
from __future__ import annotations

import argparse
import json

import torch

from benchmarks.pairwise_iteration import NUM_CLASSES, Inputs, cpu_model, make_inputs
from ial_ext.models import PairwiseNetwork
from ial_ext.nn import RegionSmoothnessLoss
from ial_ext.train.config import Config
from ial_ext.train.passes import AUTOCAST_DTYPES
from ial_ext.train.steps.pairwise import PairwiseWithGates, pairwise_loss

WEIGHTS_SEED = 0
FLOAT16_LOSS_SCALE = 2.0**16  # torch.amp.GradScaler's initial scale, as fit() applies it


def pairwise_loss_and_gradient(inputs: Inputs, precision: str) -> tuple[float, list[torch.Tensor]]:
    """The loss of one pairwise iteration at `precision` and the gradient of each parameter,
    from the same initial weights whatever the precision; float16 scales the loss for the
    backward as the trainer's gradient scaler does."""
    config = Config()
    torch.manual_seed(WEIGHTS_SEED)
    network = PairwiseNetwork(NUM_CLASSES, width=config.model.pairwise_width, gate_mode=config.model.pairwise_gates,
                              gate_layout=config.model.pairwise_gate_layout)
    model = PairwiseWithGates(network).train()
    dtype = AUTOCAST_DTYPES[precision]
    with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        loss = pairwise_loss(model, inputs.unary, inputs.batch, config.loop.smoothness_weight, RegionSmoothnessLoss())
    scale = FLOAT16_LOSS_SCALE if precision == "float16" else 1.0
    (loss * scale).backward()
    return loss.item(), [p.grad.double() / scale for p in model.parameters() if p.grad is not None]


def parity(inputs: Inputs, precisions=("bfloat16", "float16")) -> dict:
    """{precision: {loss_relative_difference, gradient_cosine, worst_parameter_cosine,
    gradient_relative_norm_error}} against float32; the cosines over all parameters' gradients
    flattened together and, the worst of them, over each parameter's alone."""
    reference_loss, reference = pairwise_loss_and_gradient(inputs, "float32")
    flat_reference = torch.cat([g.flatten() for g in reference])
    result = {"float32_loss": reference_loss}
    for precision in precisions:
        loss, gradient = pairwise_loss_and_gradient(inputs, precision)
        flat = torch.cat([g.flatten() for g in gradient])
        result[precision] = {
            "loss": loss,
            "loss_relative_difference": abs(loss - reference_loss) / abs(reference_loss),
            "gradient_cosine": cosine(flat, flat_reference),
            "worst_parameter_cosine": min(cosine(g, r) for g, r in zip(gradient, reference) if r.norm() > 0),
            "gradient_relative_norm_error": ((flat - flat_reference).norm() / flat_reference.norm()).item(),
        }
    return result


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=321)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=1, help="input sets (seeds 0..n-1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = [parity(make_inputs(args.batch, args.size, seed=seed)) for seed in range(args.seeds)]
    print(json.dumps({"batch": args.batch, "size": args.size, "threads": args.threads, "cpu": cpu_model(),
                      "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
