"""The dict every data set returns, and image labels derived from a mask."""
import numpy as np
import torch

from .normalization import normalize_image

IGNORE_INDEX = 255


def labels_from_mask(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Multi-hot float32 (num_classes,) of the classes present in `mask` (255 excluded); [0] is always 1."""
    present = np.unique(mask)
    present = present[present != IGNORE_INDEX]
    if present.size and (present.min() < 0 or present.max() >= num_classes):
        raise ValueError(
            f"mask holds labels {present.tolist()} outside 0..{num_classes - 1} (and 255)"
        )
    labels = np.zeros(num_classes, dtype=np.float32)
    labels[present.astype(np.int64)] = 1.0
    labels[0] = 1.0
    return labels


def make_sample(rgb: np.ndarray, mask: np.ndarray, num_classes: int, index: int, name: str) -> dict:
    """Packs an (H, W, 3) uint8 image and its (H, W) label map into the contract's dict."""
    if rgb.shape[:2] != mask.shape:
        raise ValueError(f"image {rgb.shape[:2]} and mask {mask.shape} of {name!r} differ in size")
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if not rgb.flags.writeable:  # decoded images are read-only views; tensors must own writable memory
        rgb = rgb.copy()
    return {
        "image": normalize_image(rgb),
        "rgb": torch.from_numpy(rgb),
        "class_labels": torch.from_numpy(labels_from_mask(mask, num_classes)),
        "mask": torch.from_numpy(np.array(mask, dtype=np.int64)),
        "index": int(index),
        "name": name,
    }
