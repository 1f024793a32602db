"""Views of a data set for training and for passes: each sample joined with its pseudo labels
(read from a label store) and its superpixels (computed from the decoded image itself, so an
image is decoded once per pass), mirrored when the sampler says so."""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .label_store import LabelStore


class TrainingView(Dataset):
    """Sample `indices[position]` of `base` with `target` (from the label store) and `segments`
    (from superpixels(sample)).

    Indexed by a position, or by a (position, flip) pair from `ShuffledBatches`, which mirrors
    image, target and segments alike. The ground-truth mask is dropped unless `with_mask`
    (passes score against it; training never sees it); the uint8 picture "rgb" (H, W, 3) only
    with `with_rgb` (the dense CRF's input). item["index"] is the index into `base`.
    """

    def __init__(
        self,
        base: Dataset,
        labels: Optional[LabelStore] = None,
        superpixels: Optional[Callable[[dict], Tensor]] = None,
        indices: Optional[Sequence[int]] = None,
        with_mask: bool = False,
        with_rgb: bool = False,
    ):
        self.base = base
        self.indices = range(len(base)) if indices is None else torch.as_tensor(indices, dtype=torch.int64)
        self.labels = labels
        self.superpixels = superpixels
        self.with_mask = with_mask
        self.with_rgb = with_rgb

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: Union[int, tuple]) -> dict:
        position, flip = key if isinstance(key, tuple) else (key, False)
        index = int(self.indices[position])
        sample = self.base[index]
        item = {"image": sample["image"], "class_labels": sample["class_labels"], "index": index}
        if self.with_mask and "mask" in sample:
            item["mask"] = sample["mask"]
        if self.with_rgb:
            item["rgb"] = sample["rgb"]
        if self.labels is not None:
            item["target"] = torch.from_numpy(self.labels.read(index)).long()
        if self.superpixels is not None:
            item["segments"] = self.superpixels(sample)
        if flip:
            for name in ("image", "target", "segments", "mask"):
                if name in item:
                    item[name] = item[name].flip(-1)
            if "rgb" in item:
                item["rgb"] = item["rgb"].flip(-2)  # (H, W, 3)
        return item
