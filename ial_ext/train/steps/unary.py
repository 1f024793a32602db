"""M-step, part 1: the unary network f trained on the current labels (section 3.2.1)."""
from __future__ import annotations

from typing import Optional

from torch import Tensor
from torch.utils.data import Dataset

from ...models import MultiScaleUnary, UnaryNetwork
from ..config import Config
from ..losses import balanced_class_weights, mask_absent_classes, segmentation_loss
from ..optim import PolySGD
from ..runtime import Runtime
from ..views import TrainingView
from .inference import label_maps
from .iterations import run_iterations


def train_unary(
    config: Config,
    runtime: Runtime,
    dataset: Dataset,
    labels: Tensor,
    step: int,
    previous: Optional[UnaryNetwork] = None,
) -> UnaryNetwork:
    """Trains f on (N, H, W) labels (255 ignored), from `previous` when warm-starting."""
    runtime.seed_everything("unary", step)
    network = UnaryNetwork(dataset.num_classes, backbone=config.model.backbone, weights=config.model.weights)
    if previous is not None:
        network.load_state_dict(previous.state_dict())
    model = runtime.wrap(network)
    model.train()
    optimizer = PolySGD(model.parameters(), config.unary)
    class_weights = None
    if config.loop.class_balance > 0:
        class_weights = balanced_class_weights(labels, dataset.num_classes, config.loop.class_balance)
        class_weights = class_weights.to(runtime.device)
    batches = runtime.training_batches(TrainingView(dataset, labels), config.unary.batch_size, "unary", step)
    run_iterations(
        runtime, optimizer, batches, f"step {step}: unary",
        lambda batch: segmentation_loss(model(batch["image"]), batch["target"], class_weights),
    )
    return network.eval()


def unary_inference(config: Config, network: UnaryNetwork) -> MultiScaleUnary:
    """f as the rest of the loop sees it: averaged over scales and the mirror image."""
    return MultiScaleUnary(network, config.model.scales(), config.model.unary_flip).eval()


def unary_probabilities(network, images: Tensor, class_labels: Optional[Tensor]) -> Tensor:
    """alpha_u: softmax of f (logits or log-probabilities); with class_labels, absent
    classes get probability 0."""
    logits = network(images)
    if class_labels is not None:
        logits = mask_absent_classes(logits, class_labels)
    return logits.softmax(dim=1)


def predict_unary_labels(runtime: Runtime, network, dataset: Dataset, step: int) -> Tensor:
    """argmax of alpha_u over the training set, restricted to each image's classes."""
    network.eval()
    return label_maps(
        runtime,
        dataset,
        lambda batch: unary_probabilities(network, batch["image"], batch["class_labels"]).argmax(1),
        f"step {step}: unary maps",
    )
