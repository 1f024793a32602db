"""Training objectives of the four networks."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .seeds import IGNORE_INDEX


def classification_loss(logits: Tensor, class_labels: Tensor) -> Tensor:
    """Multi-label BCE of the CAM network over the foreground classes."""
    return F.binary_cross_entropy_with_logits(logits, class_labels[:, 1:])


def segmentation_loss(logits: Tensor, target: Tensor, class_weights: Tensor | None = None) -> Tensor:
    """Softmax cross-entropy with unknown pixels (255) ignored; 0 when nothing is labelled."""
    if not bool((target != IGNORE_INDEX).any()):
        return logits.sum() * 0
    return F.cross_entropy(logits, target, weight=class_weights, ignore_index=IGNORE_INDEX)


def class_pixel_counts(labels: Tensor, num_classes: int) -> Tensor:
    """(num_classes,) int64 pixels of each class in `labels` (any shape; 255 ignored)."""
    flat = labels.reshape(-1).long()
    return torch.bincount(flat[flat != IGNORE_INDEX], minlength=num_classes)[:num_classes]


def balanced_class_weights(labels: Tensor, num_classes: int, power: float = 1.0) -> Tensor:
    """Median-frequency weights of labels (255 ignored); see `class_weights_from_counts`."""
    return class_weights_from_counts(class_pixel_counts(labels, num_classes), power)


def class_weights_from_counts(counts: Tensor, power: float = 1.0) -> Tensor:
    """Median-frequency weights (Eigen and Fergus 2015) from per-class pixel counts: a class's
    pixels weigh (median_freq / freq)^power, so background, most of every image, no longer
    drowns the object classes (power 0: no balancing). Classes without pixels get 1."""
    counts = torch.as_tensor(counts)
    num_classes = counts.numel()
    frequency = counts.double() / counts.sum().clamp_min(1)
    present = frequency > 0
    if not bool(present.any()):
        return torch.ones(num_classes)
    median = frequency[present].median()
    weights = (median / frequency.clamp_min(1e-12)) ** power
    return torch.where(present, weights, torch.ones_like(frequency)).float()


def refined_map_loss(probabilities: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """eq. (7): -Y^T log alpha_p, on the pairwise output, which is already a probability map."""
    if not bool((target != IGNORE_INDEX).any()):
        return probabilities.sum() * 0
    log_probabilities = probabilities.clamp_min(eps).log()
    return F.nll_loss(log_probabilities, target, ignore_index=IGNORE_INDEX)


def region_classification_loss(logits: Tensor, region_labels: Tensor) -> Tensor:
    """eq. (9): cross-entropy over superpixel samples; label -1 marks a non-sample."""
    flat_logits = logits.reshape(-1, logits.shape[-1])
    flat_labels = region_labels.reshape(-1)
    if not bool((flat_labels >= 0).any()):
        return logits.sum() * 0
    return F.cross_entropy(flat_logits, flat_labels, ignore_index=-1)

