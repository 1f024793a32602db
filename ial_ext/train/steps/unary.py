"""M-step, part 1: the unary network f trained on the current labels (section 3.2.1)."""
from __future__ import annotations

from typing import Optional

from torch.utils.data import Dataset

from ...models import MultiScaleUnary, UnaryNetwork
from ..config import Config
from ..fit import FitCheckpoints, fit
from ..label_store import LabelStore
from ..losses import class_weights_from_counts, segmentation_loss
from ..passes import PassResult, fingerprint, label_pass
from ..runtime import Runtime
from ..segmenter import unary_probabilities
from ..views import TrainingView


def train_unary(
    config: Config,
    runtime: Runtime,
    dataset: Dataset,
    labels: LabelStore,
    step: int,
    previous: Optional[UnaryNetwork] = None,
    checkpoints: Optional[FitCheckpoints] = None,
) -> UnaryNetwork:
    """Trains f on the labels of a finished pass (255 ignored), from `previous` when warm-starting."""
    class_weights = None
    if config.loop.class_balance > 0:
        counts = labels.summary()["class_pixels"]
        class_weights = class_weights_from_counts(counts, config.loop.class_balance).to(runtime.device)
    return fit(
        runtime, ("unary", step),
        lambda: UnaryNetwork(dataset.num_classes, backbone=config.model.backbone, weights=config.model.weights),
        TrainingView(dataset, labels), config.unary,
        lambda model, batch: segmentation_loss(model(batch["image"]), batch["target"], class_weights),
        f"step {step}: unary", previous=previous, checkpoints=checkpoints,
    )


def unary_inference(config: Config, network: UnaryNetwork) -> MultiScaleUnary:
    """f as the rest of the loop sees it: averaged over scales and the mirror image."""
    return MultiScaleUnary(network, config.model.scales(), config.model.unary_flip).eval()


def predict_unary_labels(runtime: Runtime, network, dataset: Dataset, step: int, store: LabelStore) -> PassResult:
    """argmax of alpha_u over the training set, restricted to each image's classes, into `store`."""
    network.eval()
    return label_pass(
        runtime,
        TrainingView(dataset, with_mask=True),
        lambda batch: unary_probabilities(network, batch["image"], batch["class_labels"]).argmax(1),
        dataset.num_classes,
        f"step {step}: unary maps",
        store,
        fingerprint(network),
    )
