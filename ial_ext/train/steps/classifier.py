"""Initialisation of Algorithm 1: a multi-label CAM network and the object seeds Y0."""
from __future__ import annotations

from typing import Optional

from torch import Tensor
from torch.utils.data import Dataset

from ...crf import require_crf
from ...models import CAMNetwork
from ..config import Config
from ..fit import FitCheckpoints, fit
from ..label_store import LabelStore
from ..losses import classification_loss
from ..passes import PassResult, fingerprint, label_pass
from ..runtime import Runtime
from ..seeds import crf_seeds_from_cams, seeds_from_cams, upsample_cams
from ..views import TrainingView


def train_classifier(
    config: Config, runtime: Runtime, dataset: Dataset, checkpoints: Optional[FitCheckpoints] = None
) -> CAMNetwork:
    """Trains the CAM network on image-level labels only (BCE, multi-label)."""
    model_config = config.model
    weights = model_config.weights if model_config.cam_backbone == model_config.backbone else None
    return fit(
        runtime, ("classifier",),
        lambda: CAMNetwork(dataset.num_classes, backbone=model_config.cam_backbone, weights=weights),
        TrainingView(dataset), config.classifier,
        lambda model, batch: classification_loss(model(batch["image"]), batch["class_labels"]),
        "classifier", checkpoints=checkpoints,
    )


def generate_seeds(
    config: Config, runtime: Runtime, network: CAMNetwork, dataset: Dataset, store: LabelStore
) -> PassResult:
    """Y0 into `store`: seeds from the CAMs of each image's present classes, 255 unknown."""
    if config.seeds.crf:
        require_crf()
    network.eval()

    def predict(batch: dict) -> Tensor:
        images = batch["image"]
        # CAMs of the image and of its mirror image, averaged: less noisy seeds, as in PSA.
        cams = network.cams(images) + network.cams(images.flip(-1)).flip(-1)
        cams = upsample_cams(cams, images.shape[-2:])
        seeds = config.seeds
        if seeds.crf:
            return crf_seeds_from_cams(cams, batch["class_labels"], batch["rgb"], seeds.foreground_alpha,
                                       seeds.background_alpha, seeds.crf_iterations)
        return seeds_from_cams(cams, batch["class_labels"], seeds.foreground_alpha, seeds.background_alpha)

    view = TrainingView(dataset, with_mask=True, with_rgb=config.seeds.crf)
    return label_pass(runtime, view, predict, dataset.num_classes, "seeds", store, fingerprint(network))
