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
    """sample -> (H, W) int64 Felzenszwalb superpixels of its image, via the disk cache (never a
    copy per image in memory: the cache's files are small and the OS keeps them at hand)."""

    def __init__(self, config: Config):
        mining = config.mining
        params = SuperpixelParams(
            scale=mining.superpixel_scale, sigma=mining.superpixel_sigma, min_size=mining.superpixel_min_size
        )
        directory = mining.cache_dir or os.path.join(config.run.output_dir, "superpixels")
        self.cache = SuperpixelCache(directory, params)

    def __call__(self, sample: dict) -> Tensor:
        return torch.from_numpy(self.cache.get(sample["name"], sample["rgb"].numpy()))
