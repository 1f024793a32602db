"""M-step, part 3: the pairwise network g trained on mined regions (section 3.2.2), and the
E-step alpha_p = G alpha_u that refines the unary map with it."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ...models import PairwiseNetwork
from ...models.pairwise import PROBABILITY_FLOOR
from ...nn import RegionSmoothnessLoss
from ..config import Config
from ..fit import FitCheckpoints, fit
from ..label_store import LabelStore
from ..losses import refined_map_loss
from ..passes import PassResult, fingerprint, label_pass
from ..runtime import Runtime
from ..segmenter import Segmenter, unary_probabilities
from ..views import TrainingView


class PairwiseWithGates(nn.Module):
    """g's forward for training: its merged scores before the floor and the renormalisation
    over classes (which eq. 7 applies at the labelled pixels only) and its normalised gates (eq.
    8's G), so that DDP sees one forward for both losses."""

    def __init__(self, pairwise: PairwiseNetwork):
        super().__init__()
        self.pairwise = pairwise

    def forward(self, images: Tensor, unary: Tensor):
        guidance = self.pairwise.guidance(images)
        return self.pairwise.merged_scores(unary, guidance), self.pairwise.normalized_guidance(guidance)


def pairwise_loss(
    model: PairwiseWithGates, unary: nn.Module, batch: dict, smoothness_weight: float = 0.0,
    smoothness: Optional[RegionSmoothnessLoss] = None,
) -> Tensor:
    """One pairwise training iteration's loss: eq. 7 on the refined unary map of f, plus
    `smoothness_weight` x eq. 8 on the normalised gates when `smoothness` is given (the batch
    then holds the superpixels, "segments")."""
    with torch.no_grad():
        alpha_u = unary_probabilities(unary, batch["image"], batch["class_labels"])
    scores, gates = model(batch["image"], alpha_u)
    loss = refined_map_loss(scores, batch["target"], floor=PROBABILITY_FLOOR)
    if smoothness is not None:
        segments = batch["segments"]
        num_segments = int(segments.max()) + 1
        loss = loss + smoothness_weight * smoothness(gates, segments, num_segments)
    return loss


def train_pairwise(
    config: Config,
    runtime: Runtime,
    dataset: Dataset,
    unary: nn.Module,
    regions: LabelStore,
    superpixels: Optional[Callable[[dict], Tensor]],
    step: int,
    previous: Optional[PairwiseNetwork] = None,
    checkpoints: Optional[FitCheckpoints] = None,
) -> PairwiseNetwork:
    """Trains g on regions Y_t (eq. 7) with the unary map of f as its input, plus the region
    smoothness loss (eq. 8) on its gates when superpixels are given and the loss is on."""
    unary.eval()
    use_smoothness = config.loop.smoothness and superpixels is not None
    smoothness = RegionSmoothnessLoss() if use_smoothness else None

    def loss_of(model, batch: dict) -> Tensor:
        return pairwise_loss(model, unary, batch, config.loop.smoothness_weight, smoothness)

    return fit(
        runtime, ("pairwise", step),
        lambda: PairwiseNetwork(
            dataset.num_classes, width=config.model.pairwise_width, gate_mode=config.model.pairwise_gates,
            gate_layout=config.model.pairwise_gate_layout, strength=config.model.pairwise_strength,
        ),
        TrainingView(dataset, regions, superpixels if use_smoothness else None), config.pairwise, loss_of,
        f"step {step}: pairwise", previous=previous, train_module=PairwiseWithGates, checkpoints=checkpoints,
    )


def refine_with_pairwise(
    runtime: Runtime, segmenter: Segmenter, dataset: Dataset, step: int, store: LabelStore, confidence: float = 0.0
) -> PassResult:
    """E-step over the training set into `store`: argmax of alpha_p within each image's
    classes; pixels whose top probability is not above `confidence` are unknown (255)."""
    segmenter.eval()
    return label_pass(
        runtime,
        TrainingView(dataset, with_mask=True),
        lambda batch: segmenter.labels(batch["image"], batch["class_labels"], confidence),
        dataset.num_classes,
        f"step {step}: refine",
        store,
        fingerprint(segmenter),
    )
