"""The run's data sets and their superpixels, from the configuration."""
from __future__ import annotations

import os

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..data import build_dataset
from ..superpixels import SuperpixelCache, SuperpixelParams
from .config import Config

DEFAULT_SPLITS = {
    "synthetic": ("train", "val"), "voc": ("train_aug", "val"), "coco": ("train2014", "val2014"),
    "folder": ("train", "val"),
}
IN_MEMORY_PIXELS = 50_000_000  # superpixel maps kept in memory below this many pixels in all


def build_datasets(config: Config) -> tuple[Dataset, Dataset]:
    data = config.data
    if data.dataset not in DEFAULT_SPLITS:
        raise ValueError(f"data.dataset must be one of {sorted(DEFAULT_SPLITS)}, got {data.dataset!r}")
    train_split, val_split = DEFAULT_SPLITS[data.dataset]
    train_split = data.train_split or train_split
    val_split = data.val_split or val_split
    if data.dataset == "synthetic":
        common = dict(image_size=data.image_size, num_object_classes=data.object_classes, seed=data.seed)
        return (
            build_dataset("synthetic", train_split, num_images=data.train_images, **common),
            build_dataset("synthetic", val_split, num_images=data.val_images, **common),
        )
    if not data.root:
        raise ValueError(f"data.root must name the {data.dataset} directory")
    return (
        build_dataset(data.dataset, train_split, root=data.root, image_size=data.image_size),
        build_dataset(data.dataset, val_split, root=data.root, image_size=data.image_size),
    )


class SuperpixelSource:
    """index -> (H, W) int64 Felzenszwalb superpixels of a data set image, via the disk cache."""

    def __init__(self, dataset: Dataset, config: Config):
        mining = config.mining
        params = SuperpixelParams(
            scale=mining.superpixel_scale, sigma=mining.superpixel_sigma, min_size=mining.superpixel_min_size
        )
        directory = mining.cache_dir or os.path.join(config.run.output_dir, "superpixels")
        self.cache = SuperpixelCache(directory, params)
        self.dataset = dataset
        size = config.data.image_size
        self.memory: dict[int, Tensor] | None = {} if len(dataset) * size * size <= IN_MEMORY_PIXELS else None

    def __call__(self, index: int) -> Tensor:
        if self.memory is not None and index in self.memory:
            return self.memory[index]
        sample = self.dataset[index]
        segments = torch.from_numpy(self.cache.get(sample["name"], sample["rgb"].numpy()))
        if self.memory is not None:
            self.memory[index] = segments
        return segments
