"""M-step, part 3: the pairwise network g trained on mined regions (section 3.2.2), and the
E-step alpha_p = G alpha_u that refines the unary map with it."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ...models import PairwiseNetwork, UnaryNetwork
from ...nn import RegionSmoothnessLoss, normalize_guidance
from ..config import Config
from ..losses import refined_map_loss
from ..optim import PolySGD
from ..runtime import Runtime
from ..seeds import IGNORE_INDEX
from ..views import TrainingView
from .inference import label_maps
from .iterations import run_iterations
from .unary import unary_probabilities


class _PairwiseWithGates(nn.Module):
    """g's forward returning its gates too, so that DDP sees one forward for both losses."""

    def __init__(self, pairwise: PairwiseNetwork):
        super().__init__()
        self.pairwise = pairwise

    def forward(self, images: Tensor, unary: Tensor):
        guidance = self.pairwise.guidance(images)
        return self.pairwise.propagate(unary, guidance), guidance


def train_pairwise(
    config: Config,
    runtime: Runtime,
    dataset: Dataset,
    unary: UnaryNetwork,
    regions: Tensor,
    superpixels: Optional[Callable[[int], Tensor]],
    step: int,
    previous: Optional[PairwiseNetwork] = None,
) -> PairwiseNetwork:
    """Trains g on regions Y_t (eq. 7) with the unary map of f as its input, plus the region
    smoothness loss (eq. 8) on its gates when superpixels are given and the loss is on."""
    runtime.seed_everything("pairwise", step)
    network = PairwiseNetwork(
        dataset.num_classes, width=config.model.pairwise_width, gate_mode=config.model.pairwise_gates
    )
    if previous is not None:
        network.load_state_dict(previous.state_dict())
    model = runtime.wrap(_PairwiseWithGates(network))
    model.train()
    unary.eval()
    use_smoothness = config.loop.smoothness and superpixels is not None
    smoothness = RegionSmoothnessLoss()
    optimizer = PolySGD(model.parameters(), config.pairwise)
    view = TrainingView(dataset, regions, superpixels if use_smoothness else None)
    batches = runtime.training_batches(view, config.pairwise.batch_size, "pairwise", step)

    def loss_of(batch: dict) -> Tensor:
        with torch.no_grad():
            alpha_u = unary_probabilities(unary, batch["image"], batch["class_labels"])
        refined, guidance = model(batch["image"], alpha_u)
        loss = refined_map_loss(refined, batch["target"])
        if use_smoothness:
            segments = batch["segments"]
            num_segments = int(segments.max()) + 1
            gates = normalize_guidance(guidance)
            loss = loss + config.loop.smoothness_weight * smoothness(gates, segments, num_segments)
        return loss

    run_iterations(runtime, optimizer, batches, f"step {step}: pairwise", loss_of)
    return network.eval()


def refined_probabilities(
    unary: UnaryNetwork, pairwise: PairwiseNetwork, images: Tensor, class_labels: Optional[Tensor]
) -> Tensor:
    """alpha_p = G alpha_u."""
    return pairwise(images, unary_probabilities(unary, images, class_labels))


def refine_with_pairwise(
    runtime: Runtime, unary, pairwise: PairwiseNetwork, dataset: Dataset, step: int, confidence: float = 0.0
) -> Tensor:
    """E-step over the training set: argmax of alpha_p within each image's classes; pixels
    whose top probability is not above `confidence` are unknown (255)."""
    unary.eval()
    pairwise.eval()

    def predict(batch: dict) -> Tensor:
        top, labels = refined_probabilities(unary, pairwise, batch["image"], batch["class_labels"]).max(1)
        return labels.masked_fill(top <= confidence, IGNORE_INDEX) if confidence > 0 else labels

    return label_maps(runtime, dataset, predict, f"step {step}: refine")
