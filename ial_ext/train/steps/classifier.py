"""Initialisation of Algorithm 1: a multi-label CAM network and the object seeds Y0."""
from __future__ import annotations

from torch import Tensor
from torch.utils.data import Dataset

from ...models import CAMNetwork
from ..config import Config
from ..losses import classification_loss
from ..optim import PolySGD
from ..runtime import Runtime
from ..seeds import seeds_from_cams, upsample_cams
from ..views import TrainingView
from .inference import label_maps
from .iterations import run_iterations


def train_classifier(config: Config, runtime: Runtime, dataset: Dataset) -> CAMNetwork:
    """Trains the CAM network on image-level labels only (BCE, multi-label)."""
    runtime.seed_everything("classifier")
    model_config = config.model
    weights = model_config.weights if model_config.cam_backbone == model_config.backbone else None
    network = CAMNetwork(dataset.num_classes, backbone=model_config.cam_backbone, weights=weights)
    model = runtime.wrap(network)
    model.train()
    optimizer = PolySGD(model.parameters(), config.classifier)
    batches = runtime.training_batches(TrainingView(dataset), config.classifier.batch_size, "classifier")
    run_iterations(
        runtime, optimizer, batches, "classifier",
        lambda batch: classification_loss(model(batch["image"]), batch["class_labels"]),
    )
    return network.eval()


def generate_seeds(config: Config, runtime: Runtime, network: CAMNetwork, dataset: Dataset) -> Tensor:
    """Y0: (N, H, W) uint8 seeds from the CAMs of each image's present classes, 255 unknown."""
    network.eval()

    def predict(batch: dict) -> Tensor:
        images = batch["image"]
        # CAMs of the image and of its mirror image, averaged: less noisy seeds, as in PSA.
        cams = network.cams(images) + network.cams(images.flip(-1)).flip(-1)
        cams = upsample_cams(cams, images.shape[-2:])
        return seeds_from_cams(
            cams, batch["class_labels"], config.seeds.foreground_alpha, config.seeds.background_alpha
        )

    return label_maps(runtime, dataset, predict, "seeds")
