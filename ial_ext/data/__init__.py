"""Data sets: the built-in synthetic one, PASCAL VOC 2012 (+ SBD) and COCO 2014 readers."""
from .normalization import IMAGENET_MEAN, IMAGENET_STD, normalize_image
from .palette import VOC_PALETTE, colorize_mask
from .sample import IGNORE_INDEX, labels_from_mask
from .synthetic import SyntheticDataset
from .voc import VOCSegmentation
from .coco import COCOSegmentation
from .factory import build_dataset

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "normalize_image", "VOC_PALETTE", "colorize_mask",
    "IGNORE_INDEX", "labels_from_mask", "SyntheticDataset", "VOCSegmentation",
    "COCOSegmentation", "build_dataset",
]
