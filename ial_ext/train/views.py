"""Training views of a data set: its samples joined with the current pseudo labels and
superpixels, with a random horizontal flip applied to all of them alike."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset


class TrainingView(Dataset):
    """Sample i of `base` plus `target` (from labels[i]) and `segments` (from superpixels(i)).

    labels: (N, H, W) uint8 pseudo labels, 255 unknown. superpixels: index -> (H, W) int64.
    The ground-truth mask is dropped: training never sees it. With `indices`, the view
    holds only those images (item["index"] stays the index into `base`).
    """

    def __init__(
        self,
        base: Dataset,
        labels: Optional[Tensor] = None,
        superpixels: Optional[Callable[[int], Tensor]] = None,
        flip: bool = True,
        indices: Optional[Sequence[int]] = None,
    ):
        self.base = base
        self.indices = list(range(len(base))) if indices is None else [int(i) for i in indices]
        self.labels = labels
        self.superpixels = superpixels
        self.flip = flip

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict:
        index = self.indices[position]
        sample = self.base[index]
        item = {"image": sample["image"], "class_labels": sample["class_labels"], "index": index}
        if self.labels is not None:
            item["target"] = self.labels[index].long()
        if self.superpixels is not None:
            item["segments"] = self.superpixels(index)
        if self.flip and bool(torch.rand(()) < 0.5):
            for key in ("image", "target", "segments"):
                if key in item:
                    item[key] = item[key].flip(-1)
        return item
