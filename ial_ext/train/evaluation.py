"""Table 5's measurements: label maps against the ground truth, networks on the val set."""
from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from .metrics import ConfusionMatrix, affinity_energy
from .runtime import Runtime
from .steps.inference import to_device
from .steps.pairwise import refined_probabilities
from .steps.unary import unary_probabilities


def ground_truth(dataset: Dataset) -> Tensor:
    """(N, H, W) uint8 masks, for evaluation only."""
    return torch.stack([dataset[i]["mask"].to(torch.uint8) for i in range(len(dataset))])


def score_labels(labels: Tensor, truth: Tensor, num_classes: int) -> dict:
    """mIoU, precision and coverage of (N, H, W) labels (255 = unknown)."""
    return ConfusionMatrix(num_classes).update(labels, truth).summary()


@torch.no_grad()
def validation_miou(runtime: Runtime, dataset: Dataset, unary, pairwise=None, batch_size: int = 16) -> float:
    """mIoU on a held-out split at inference: no image labels, so no class masking."""
    unary.eval()
    matrix = ConfusionMatrix(dataset.num_classes)
    loader = DataLoader(Subset(dataset, list(runtime.shard(len(dataset)))), batch_size=batch_size)
    for batch in runtime.bar(loader, desc="val", leave=False):
        batch = to_device(batch, runtime.device)
        if pairwise is None:
            probabilities = unary_probabilities(unary, batch["image"], None)
        else:
            pairwise.eval()
            probabilities = refined_probabilities(unary, pairwise, batch["image"], None)
        matrix.update(probabilities.argmax(1), batch["mask"])
    runtime.gather(matrix.counts)
    return matrix.miou()


@torch.no_grad()
def mean_energy(runtime: Runtime, dataset: Dataset, unary, pairwise, count: int) -> float:
    """Average J(alpha_u) under the gates of g over the first `count` images (Table 7)."""
    unary.eval()
    pairwise.eval()
    sample = Subset(dataset, range(min(count, len(dataset))))
    batch = to_device(next(iter(DataLoader(sample, batch_size=count))), runtime.device)
    alpha_u = unary_probabilities(unary, batch["image"], batch["class_labels"])
    return float(affinity_energy(alpha_u, pairwise.guidance(batch["image"])).mean())
