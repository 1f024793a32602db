"""Evaluation: confusion-matrix mIoU, precision of partial labels, and the energy of eq. (1)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..nn.spatial_propagation import NEIGHBOUR_OFFSETS, normalize_gates
from .seeds import IGNORE_INDEX


class ConfusionMatrix:
    """Accumulates (ground truth, prediction) counts over pixels whose truth is known.

    A prediction of 255 (unknown) is a miss for the true class: mIoU then measures how much
    of each object a partial labelling recovers (the mined regions of the paper's Table 5
    are less integral than the unary map), while `precision` measures how right the
    labelled pixels are. counts[t, p]: column num_classes holds the unknown predictions.
    """

    def __init__(self, num_classes: int, device: torch.device | str = "cpu", counts: Tensor | None = None):
        self.num_classes = num_classes
        if counts is None:
            counts = torch.zeros(num_classes, num_classes + 1, dtype=torch.int64, device=device)
        self.counts = counts

    def update(self, prediction: Tensor, truth: Tensor) -> "ConfusionMatrix":
        """Adds one batch, on the device the counts live on."""
        if prediction.shape != truth.shape:
            raise ValueError(
                f"prediction {tuple(prediction.shape)} and truth {tuple(truth.shape)} differ in shape"
            )
        device = self.counts.device
        prediction = prediction.reshape(-1).to(device, torch.int64)
        truth = truth.reshape(-1).to(device, torch.int64)
        known = truth != IGNORE_INDEX
        truth, prediction = truth[known], prediction[known]
        prediction = torch.where(prediction == IGNORE_INDEX, self.num_classes, prediction)
        outside = (truth < 0) | (truth >= self.num_classes) | (prediction < 0) | (prediction > self.num_classes)
        if bool(outside.any()):
            raise ValueError(f"label outside 0..{self.num_classes - 1} (or 255)")
        index = truth * (self.num_classes + 1) + prediction
        self.counts += torch.bincount(index, minlength=self.counts.numel()).view_as(self.counts)
        return self

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        self.counts += other.counts
        return self

    def iou(self) -> Tensor:
        """Per-class IoU (CPU float64); NaN for classes absent from both truth and prediction."""
        counts = self.counts.cpu().double()
        true_positive = counts.diag()
        union = counts.sum(1) + counts[:, : self.num_classes].sum(0) - true_positive
        return torch.where(union > 0, true_positive / union.clamp_min(1), torch.nan)

    def miou(self) -> float:
        return float(torch.nanmean(self.iou()))

    def precision(self) -> float:
        """Share of labelled pixels whose label is right (unknown pixels ignored)."""
        return float(self.counts.diag().sum()) / max(self._labelled(), 1)

    def coverage(self) -> float:
        """Share of evaluated pixels that carry a label."""
        return self._labelled() / max(int(self.counts.sum()), 1)

    def _labelled(self) -> int:
        return int(self.counts[:, : self.num_classes].sum())

    def summary(self) -> dict:
        return {"miou": self.miou(), "precision": self.precision(), "coverage": self.coverage()}


def affinity_energy(probabilities: Tensor, guidance: Tensor) -> Tensor:
    """J = alpha^T L alpha = 1/2 sum_ij w_ij (alpha_i - alpha_j)^2 (eqs. 1-2), per image.

    The weights w are the pairwise network's normalised SPN gates: each pixel is linked
    to its three neighbours of the previous column/row in each of the four scan
    directions. The sum runs over those links and the C channels and is divided by the
    number of pixels, so images of any size compare. probabilities: (B, C, H, W);
    guidance: raw gates (B, 12, H, W), the 12 affinity maps shared by every class, or
    (B, 12C, H, W), one set per class. Returns (B,).
    """
    b, c, h, w = probabilities.shape
    if guidance.dim() != 4 or guidance.shape[0] != b or guidance.shape[2:] != (h, w) or guidance.shape[1] not in (
        12, 12 * c
    ):
        raise ValueError(
            f"affinity_energy: guidance must be {(b, 12, h, w)} (shared by the classes) or {(b, 12 * c, h, w)}, "
            f"got {tuple(guidance.shape)}"
        )
    energy = probabilities.new_zeros(b)
    for direction, raw in enumerate(guidance.chunk(4, dim=1)):
        for gate, (dy, dx) in zip(normalize_gates(raw).chunk(3, dim=1), NEIGHBOUR_OFFSETS[direction]):
            # Pixel (i, j) links to (i + dy, j + dx); keep the pairs inside the image.
            rows = slice(max(-dy, 0), h - max(dy, 0))
            cols = slice(max(-dx, 0), w - max(dx, 0))
            neighbour_rows = slice(max(dy, 0), h - max(-dy, 0))
            neighbour_cols = slice(max(dx, 0), w - max(-dx, 0))
            difference = probabilities[:, :, rows, cols] - probabilities[:, :, neighbour_rows, neighbour_cols]
            energy += 0.5 * (gate[:, :, rows, cols] * difference**2).sum(dim=(1, 2, 3))
    return energy / (h * w)
