"""A trained model applied to images: the one place where unary and refined probabilities are
computed, used by training (the pairwise network's input, the E-step), evaluation, `ial infer`
and, through `Segmenter`, the exporter.

    alpha_u = softmax(f(images))            (classes absent from the image labels get 0)
    alpha_p = G alpha_u = g(images, alpha_u)
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from ..models import UnaryNetwork
from ..ops import upsampled_softmax
from .seeds import IGNORE_INDEX


def mask_absent_classes(logits: Tensor, class_labels: Tensor) -> Tensor:
    """Classes absent from an image's label set can never be predicted for it (the weak label)."""
    return logits.masked_fill(_absent(class_labels), torch.finfo(logits.dtype).min)


def unary_probabilities(unary: nn.Module, images: Tensor, class_labels: Optional[Tensor] = None) -> Tensor:
    """alpha_u (B, C, H, W): softmax of f's logits (or log-probabilities, as MultiScaleUnary
    returns); with class_labels (B, C) multi-hot, absent classes get probability 0. A
    UnaryNetwork's logits go from its output stride to the image size inside the softmax op
    (upsampled_softmax), without the full-size logits as a tensor."""
    if isinstance(unary, UnaryNetwork):  # under export the op runs its composite of torch ops
        present = None if class_labels is None else _present(class_labels)
        return upsampled_softmax(unary.coarse_logits(images), images.shape[-2:], present)
    logits = unary(images)
    if _may_overwrite(logits):
        if class_labels is not None:
            logits.masked_fill_(_absent(class_labels), torch.finfo(logits.dtype).min)
        return torch.ops.aten._softmax.out(logits, 1, False, out=logits)
    if class_labels is not None:
        logits = mask_absent_classes(logits, class_labels)
    return logits.softmax(dim=1)


def _may_overwrite(logits: Tensor) -> bool:
    """Whether unary_probabilities masks and normalises the logits in place: on the CPU
    without autograd, where the network's output is this call's own and every full-size map
    is a fresh allocation whose pages the OS clears (two of them saved; the values are the
    same bits, tests/test_train_components.py). Only for contiguous (B, C, H, W) logits:
    ATen's in-place softmax over the channels of a channels-last map is wrong."""
    return (not torch.is_grad_enabled() and logits.device.type == "cpu" and logits.is_contiguous()
            and logits.dtype in (torch.float32, torch.float64))


def _present(class_labels: Tensor) -> Tensor:
    return class_labels > 0


def _absent(class_labels: Tensor) -> Tensor:
    return ~_present(class_labels)[:, :, None, None]


class Segmenter(nn.Module):
    """The unary network f and, unless it is the no-pairwise ablation, the pairwise network g.

    forward(images, class_labels=None) -> the final probabilities (B, C, H, W): alpha_p, or
    alpha_u without g. With class_labels (training images) absent classes are masked; without
    (validation, inference, export) every class competes. `unary` may be a UnaryNetwork
    (logits) or its MultiScaleUnary wrapper (log-probabilities): the softmax is the same.
    """

    def __init__(self, unary: nn.Module, pairwise: Optional[nn.Module] = None):
        super().__init__()
        self.unary = unary
        self.pairwise = pairwise

    def unary_probabilities(self, images: Tensor, class_labels: Optional[Tensor] = None) -> Tensor:
        return unary_probabilities(self.unary, images, class_labels)

    def forward(self, images: Tensor, class_labels: Optional[Tensor] = None) -> Tensor:
        alpha_u = self.unary_probabilities(images, class_labels)
        return alpha_u if self.pairwise is None else self.pairwise(images, alpha_u)

    def labels(self, images: Tensor, class_labels: Optional[Tensor] = None, confidence: float = 0.0) -> Tensor:
        """(B, H, W) argmax of the final probabilities; pixels whose top probability is not
        above `confidence` are unknown (255)."""
        top, labels = self(images, class_labels).max(dim=1)
        return labels.masked_fill(top <= confidence, IGNORE_INDEX) if confidence > 0 else labels


def crf_labels(probabilities: Tensor, rgb: Tensor, iterations: int) -> Tensor:
    """(B, H, W) argmax of the dense CRF (ial_ext.crf) over (B, C, H, W) probabilities and the
    (B, H, W, 3) uint8 pictures; the crf extra must be installed."""
    from ..crf import dense_crf

    labels = [dense_crf(p.float().cpu().numpy(), image.cpu().numpy(), iterations=iterations).argmax(axis=0)
              for p, image in zip(probabilities, rgb)]
    return torch.from_numpy(np.stack(labels)).long().to(probabilities.device)
