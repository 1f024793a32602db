"""Training objectives of the four networks."""
from __future__ import annotations

from typing import Optional

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


def _floored_sum_over_classes(scores: Tensor, floor: float) -> Tensor:
    """max(scores, floor).sum(dim=1) one class plane at a time: no floored copy of the map."""
    total = scores[:, 0].clamp_min(floor)
    plane = torch.empty_like(total)
    for c in range(1, scores.shape[1]):
        total += torch.clamp_min(scores[:, c], floor, out=plane)
    return total


class _LabelledNLL(torch.autograd.Function):
    """-mean log(f[target] / f.sum over classes) over the labelled pixels, f = max(scores,
    floor), each quotient floored at eps. Saves per-pixel numbers (B, H, W) and, with a floor,
    where the scores are at it (a boolean map): its gradient, w (1 / sum - [c = target] /
    f[target]) where the scores are above the floor, is written in one pass."""

    @staticmethod
    def forward(ctx, scores: Tensor, target: Tensor, floor: Optional[float], eps: float):
        labelled = target != IGNORE_INDEX
        index = torch.where(labelled, target, 0).unsqueeze(1)
        chosen = scores.gather(1, index).squeeze(1)
        if floor is None:
            at_floor = None
            total = scores.sum(dim=1)
        else:
            at_floor = scores <= floor
            chosen = chosen.clamp_min(floor)
            total = _floored_sum_over_classes(scores, floor)
        probability = chosen / total
        count = labelled.sum()
        weight = (labelled & (probability >= eps)).to(scores.dtype) / count
        ctx.save_for_backward(index, chosen, total, weight, at_floor)
        ctx.num_classes = scores.shape[1]
        return -(probability.clamp_min(eps).log() * labelled).sum() / count

    @staticmethod
    def backward(ctx, grad_loss: Tensor):
        index, chosen, total, weight, at_floor = ctx.saved_tensors
        weight = weight * grad_loss
        per_pixel = (weight / total).unsqueeze(1)
        at_target = -(weight / chosen).unsqueeze(1)
        if at_floor is None:
            grad = per_pixel.expand(-1, ctx.num_classes, -1, -1).contiguous()
        else:
            # One pass writes the map with the floored scores' zeros in place.
            grad = torch.where(at_floor, 0, per_pixel)
            at_target = at_target.masked_fill(at_floor.gather(1, index), 0)
        return grad.scatter_add_(1, index, at_target), None, None, None


def refined_map_loss(scores: Tensor, target: Tensor, floor: Optional[float] = None, eps: float = 1e-6) -> Tensor:
    """eq. (7): -Y^T log alpha_p, alpha_p = f / f.sum over the classes with f = max(scores,
    floor) (the pairwise output floored and renormalised; a probability map passes through
    unchanged), the mean over the labelled pixels. Only their quotient and log are computed:
    no (B, C, H, W) floored map, log, quotient or saved copy of the scores."""
    if not bool((target != IGNORE_INDEX).any()):
        return scores.sum() * 0
    return _LabelledNLL.apply(scores, target, floor, eps)


def region_classification_loss(logits: Tensor, region_labels: Tensor) -> Tensor:
    """eq. (9): cross-entropy over superpixel samples; label -1 marks a non-sample."""
    flat_logits = logits.reshape(-1, logits.shape[-1])
    flat_labels = region_labels.reshape(-1)
    if not bool((flat_labels >= 0).any()):
        return logits.sum() * 0
    return F.cross_entropy(flat_logits, flat_labels, ignore_index=-1)

