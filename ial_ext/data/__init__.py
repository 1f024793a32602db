"""Data sets: the built-in synthetic one, PASCAL VOC 2012 (+ SBD), COCO 2014 and a folder of your own
images with image-level labels; every one returns the dict described in ``sample`` (the data contract).
``verify_datasets`` checks their files before training."""
from .normalization import IMAGENET_MEAN, IMAGENET_STD, normalize_image
from .palette import VOC_PALETTE, colorize_mask
from .sample import IGNORE_INDEX, labels_from_mask, unknown_mask
from .synthetic import SyntheticDataset
from .voc import VOCSegmentation
from .coco import COCOSegmentation
from .folder import FolderDataset
from .files import check_files, verify_datasets
from .factory import build_dataset

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "normalize_image", "VOC_PALETTE", "colorize_mask",
    "IGNORE_INDEX", "labels_from_mask", "unknown_mask", "SyntheticDataset", "VOCSegmentation",
    "COCOSegmentation", "FolderDataset", "check_files", "verify_datasets", "build_dataset",
]
