"""Table 5's measurements on the networks: validation mIoU and the energy of Table 7."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from .label_store import LabelStore
from .metrics import affinity_energy
from .passes import PassResult, fingerprint, label_pass, to_device
from .runtime import Runtime
from .segmenter import Segmenter, crf_labels
from .views import TrainingView


def validate(
    runtime: Runtime, dataset: Dataset, segmenter: Segmenter, store: Optional[LabelStore] = None,
    description: str = "val", crf_iterations: int = 0,
) -> PassResult:
    """The segmenter on a held-out split at inference, no image labels and so no class
    masking; its predictions (after the dense CRF when crf_iterations > 0) go to `store`
    when given. .confusion.miou() is the val mIoU."""
    segmenter.eval()

    def predict(batch: dict) -> Tensor:
        if crf_iterations:
            return crf_labels(segmenter(batch["image"]), batch["rgb"], crf_iterations)
        return segmenter(batch["image"]).argmax(1)

    return label_pass(
        runtime,
        TrainingView(dataset, with_mask=True, with_rgb=crf_iterations > 0),
        predict,
        dataset.num_classes,
        description,
        store,
        fingerprint(segmenter),
    )


@torch.no_grad()
def mean_energy(runtime: Runtime, dataset: Dataset, segmenter: Segmenter, count: int) -> float:
    """Average J(alpha_u) under the gates of g over the first `count` images (Table 7)."""
    segmenter.eval()
    sample = Subset(TrainingView(dataset), range(min(count, len(dataset))))
    batch = to_device(next(iter(DataLoader(sample, batch_size=count))), runtime.device)
    alpha_u = segmenter.unary_probabilities(batch["image"], batch["class_labels"])
    return float(affinity_energy(alpha_u, segmenter.pairwise.guidance(batch["image"])).mean())
