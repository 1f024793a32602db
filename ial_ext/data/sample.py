"""The data contract: the dict every data set returns for an image.

    image         float32 (3, H, W), ImageNet-normalised: what the networks see
    rgb           uint8 (H, W, 3): the picture (superpixels, figures)
    class_labels  float32 (C,) multi-hot image-level labels, [0] (background) always 1: the weak
                  label, all that training may use
    mask          int64 (H, W) ground truth, for scoring only: class ids, 255 (IGNORE_INDEX) where
                  unknown. An image without ground truth has an all-255 mask, so every score
                  (confusion matrix, precision, coverage) skips it with no special case
    index         int, the image's index in its data set
    name          str, unique for the picture as loaded (caches key on it)

A data set also has `num_classes`, `class_names` (index 0 "background") and `palette`.
"""
import numpy as np
import torch

from .normalization import normalize_image

IGNORE_INDEX = 255


def multi_hot(present, num_classes: int) -> np.ndarray:
    """float32 (num_classes,) with 1 at the class ids in `present` and at 0 (background)."""
    present = np.asarray(list(present), dtype=np.int64)
    if present.size and (present.min() < 0 or present.max() >= num_classes):
        raise ValueError(f"class ids {sorted(set(present.tolist()))} outside 0..{num_classes - 1}")
    labels = np.zeros(num_classes, dtype=np.float32)
    labels[present] = 1.0
    labels[0] = 1.0
    return labels


def labels_from_mask(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Multi-hot float32 (num_classes,) of the classes present in `mask` (255 excluded); [0] is always 1."""
    present = np.unique(mask)
    return multi_hot(present[present != IGNORE_INDEX], num_classes)


def unknown_mask(height: int, width: int) -> np.ndarray:
    """The mask of an image without ground truth: all IGNORE_INDEX."""
    return np.full((height, width), IGNORE_INDEX, dtype=np.uint8)


def make_sample(rgb: np.ndarray, mask: np.ndarray, class_labels: np.ndarray, index: int, name: str) -> dict:
    """Packs an (H, W, 3) uint8 image, its (H, W) label map and its multi-hot labels into the contract's dict."""
    if rgb.shape[:2] != mask.shape:
        raise ValueError(f"image {rgb.shape[:2]} and mask {mask.shape} of {name!r} differ in size")
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if not rgb.flags.writeable:  # decoded images are read-only views; tensors must own writable memory
        rgb = rgb.copy()
    return {
        "image": normalize_image(rgb),
        "rgb": torch.from_numpy(rgb),
        "class_labels": torch.from_numpy(np.asarray(class_labels, dtype=np.float32)),
        "mask": torch.from_numpy(np.array(mask, dtype=np.int64)),
        "index": int(index),
        "name": name,
    }
