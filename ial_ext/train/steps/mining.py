"""M-step, part 2: mining confident regions Y_t from the unary map (section 3.3).

Superpixels whose pixels are mostly (> sample_purity) one class of the unary map are the
samples of that class; the region confidence network, trained on them with eq. (9),
re-scores every superpixel; those scored above `confidence` keep the predicted class,
the rest become unknown.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ...models import RegionConfidenceNetwork
from ...ops import superpixel_pool
from ..config import Config
from ..fit import FitCheckpoints, fit
from ..label_store import LabelStore
from ..losses import region_classification_loss
from ..passes import PassResult, fingerprint, label_pass
from ..runtime import Runtime
from ..seeds import IGNORE_INDEX
from ..views import TrainingView

NOT_A_SAMPLE = -1


def region_samples(labels: Tensor, segments: Tensor, num_classes: int, purity: float) -> Tensor:
    """(B, K) class of each superpixel when more than `purity` of its pixels carry it, else -1.

    labels: (B, H, W) class map (255 pixels count against every class); segments: (B, H, W)
    ids in [0, K). Empty segments are no sample.
    """
    num_segments = int(segments.max()) + 1
    one_hot = F.one_hot(labels.clamp_max(num_classes).long(), num_classes + 1)[..., :num_classes]
    shares = superpixel_pool(one_hot.permute(0, 3, 1, 2).double(), segments, num_segments)
    share, label = shares.max(dim=2)
    return torch.where(share > purity, label, torch.full_like(label, NOT_A_SAMPLE))


def rescore_regions(logits: Tensor, class_labels: Tensor, segments: Tensor, confidence: float) -> Tensor:
    """(B, H, W) mined regions: each superpixel takes its top class when that class's
    confidence (softmax over the image's classes) exceeds `confidence`, else 255."""
    present = class_labels[:, None, :] > 0
    scores = logits.masked_fill(~present, torch.finfo(logits.dtype).min).softmax(dim=2)
    top, label = scores.max(dim=2)
    region_label = torch.where(top > confidence, label, torch.full_like(label, IGNORE_INDEX))
    pixel_label = _gather_segments(region_label, segments)
    return torch.where(segments >= 0, pixel_label, torch.full_like(segments, IGNORE_INDEX))


def region_folds(config: Config) -> int:
    if config.mining.folds < 1:
        raise ValueError(f"mining.folds must be >= 1, got {config.mining.folds}")
    return config.mining.folds


def train_region_network(
    config: Config,
    runtime: Runtime,
    dataset: Dataset,
    unary_labels: LabelStore,
    superpixels: Callable[[dict], Tensor],
    step: int,
    fold: int,
    previous: Optional[RegionConfidenceNetwork] = None,
    checkpoints: Optional[FitCheckpoints] = None,
) -> RegionConfidenceNetwork:
    """The region confidence network of one fold, trained with eq. (9) on the superpixel
    samples of the unary labels (with folds > 1, on the images outside the fold)."""
    folds = region_folds(config)
    training = None if folds == 1 else (torch.arange(len(dataset)) % folds != fold).nonzero().flatten()

    def loss_of(model, batch: dict) -> Tensor:
        segments = batch["segments"]
        samples = region_samples(batch["target"], segments, dataset.num_classes, config.mining.sample_purity)
        stride = getattr(model, "module", model).pooling_stride  # the network's, under DDP too
        logits, pooled = _region_logits(model, batch["image"], segments, stride)
        samples = torch.where(pooled, samples, torch.full_like(samples, NOT_A_SAMPLE))
        return region_classification_loss(logits, samples)

    return fit(
        runtime, ("region", step, fold),
        lambda: RegionConfidenceNetwork(
            dataset.num_classes, backbone=config.model.backbone, weights=config.model.weights,
            pooling_stride=config.mining.pooling_stride,
        ),
        TrainingView(dataset, unary_labels, superpixels, indices=training), config.region, loss_of,
        f"step {step}: region network", previous=previous, checkpoints=checkpoints,
    )


def mine_confident_regions(
    config: Config,
    runtime: Runtime,
    dataset: Dataset,
    networks: Sequence[RegionConfidenceNetwork],
    superpixels: Callable[[dict], Tensor],
    step: int,
    store: LabelStore,
) -> PassResult:
    """Y_t into `store`: every superpixel re-scored by the region network of its image's fold
    (networks[index % folds]); those above mining.confidence keep their class."""
    for network in networks:
        network.eval()

    def predict(batch: dict) -> Tensor:
        segments = batch["segments"]
        fold_of = batch["index"].to(segments.device) % len(networks)
        regions = torch.full_like(segments, IGNORE_INDEX)
        for fold, network in enumerate(networks):
            chosen = (fold_of == fold).nonzero().flatten()
            if chosen.numel() == 0:
                continue
            logits, pooled = _region_logits(network, batch["image"][chosen], segments[chosen])
            scored = rescore_regions(logits, batch["class_labels"][chosen], segments[chosen], config.mining.confidence)
            # A superpixel with no cell at the pooling stride has no features: unknown.
            regions[chosen] = torch.where(
                _gather_segments(pooled, segments[chosen]), scored, torch.full_like(scored, IGNORE_INDEX)
            )
        return regions

    view = TrainingView(dataset, superpixels=superpixels, with_mask=True)
    return label_pass(
        runtime, view, predict, dataset.num_classes, f"step {step}: mine", store, fingerprint(*networks)
    )


def _region_logits(model, images: Tensor, segments: Tensor, pooling_stride: int | None = None):
    """Logits (B, K, classes) for full-resolution segments, and (B, K) whether each
    segment kept at least one cell at the network's pooling stride."""
    stride = model.pooling_stride if pooling_stride is None else pooling_stride
    num_segments = int(segments.max()) + 1
    pooled_segments = segments
    if stride > 1:
        from ...superpixels import downsample_labels

        pooled_segments = downsample_labels(segments, stride)
    logits = model(images, pooled_segments, num_segments)
    ids = pooled_segments.flatten(1)
    cells = torch.zeros(ids.shape[0], num_segments, dtype=torch.long, device=ids.device)
    cells.scatter_add_(1, ids.clamp_min(0), (ids >= 0).long())
    return logits, cells > 0


def _gather_segments(per_segment: Tensor, segments: Tensor) -> Tensor:
    """(B, K) values -> (B, H, W) by segment id (ids must be >= 0 where it matters)."""
    return per_segment.gather(1, segments.clamp_min(0).flatten(1)).view_as(segments)
