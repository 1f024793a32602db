"""The model the exporter writes: unary network, softmax, optional pairwise refinement, argmax."""
from typing import Optional

import torch
from torch import Tensor, nn


def softmax_over_classes(logits: Tensor) -> Tensor:
    """softmax over dim 1, written out: ONNX Softmax on a non-last axis makes onnxruntime
    transpose internally (~7x slower at 21 x 321 x 321 on CPU than these five ops)."""
    exponentials = torch.exp(logits - logits.amax(dim=1, keepdim=True))
    return exponentials / exponentials.sum(dim=1, keepdim=True)


class DeploymentModel(nn.Module):
    """images (N, 3, H, W) normalised -> (probabilities (N, C, H, W) float32, labels (N, H, W) int64).

    ``unary(images)`` must return logits (N, C, H, W) at input resolution and
    ``pairwise(images, unary_probabilities)`` refined probabilities of the same
    shape (``ial_ext.models.UnaryNetwork`` / ``PairwiseNetwork``, or any modules
    with those call signatures). Without ``pairwise`` (the no-pairwise
    ablation) the probabilities are the unary softmax.
    """

    def __init__(self, unary: nn.Module, pairwise: Optional[nn.Module] = None):
        super().__init__()
        self.unary = unary
        self.pairwise = pairwise

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        probabilities = softmax_over_classes(self.unary(images))
        if self.pairwise is not None:
            probabilities = self.pairwise(images, probabilities)
        return probabilities, probabilities.argmax(dim=1)
