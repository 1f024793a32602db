"""Reading images and label PNGs with errors that name the file.

Images are read by the deployment runner's read_rgb (EXIF orientation applied), so a model sees
a picture the same way in training and in deployment.
"""
import os

import numpy as np
from ial_export.images import read_rgb, upright_size
from PIL import Image, UnidentifiedImageError

from .sample import unknown_mask

__all__ = ["read_rgb", "upright_size", "read_label_png", "read_image_and_mask"]


def read_label_png(path: str, num_classes: int) -> np.ndarray:
    """Single-channel label PNG (palette 'P' or grey 'L') -> uint8 (H, W) of 0..num_classes-1 or 255."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label mask not found: {path}")
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise ValueError(
                    f"label mask {path} has mode {image.mode!r}; expected a single-channel index PNG "
                    "('P' palette or 'L' grey), values = class ids, 255 = ignore"
                )
            labels = np.asarray(image)
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot decode label mask {path}: {error}") from error
    bad = (labels >= num_classes) & (labels != 255)
    if bad.any():
        raise ValueError(
            f"label mask {path} holds values {np.unique(labels[bad]).tolist()} outside "
            f"0..{num_classes - 1} and 255"
        )
    return labels


def read_image_and_mask(image_path: str, mask_path, num_classes: int):
    """(uint8 (H, W, 3) image, uint8 (H, W) mask); mask_path None: the all-255 mask of no ground truth."""
    rgb = read_rgb(image_path)
    if mask_path is None:
        return rgb, unknown_mask(*rgb.shape[:2])
    mask = read_label_png(mask_path, num_classes)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask {mask_path} is {mask.shape}, its image is {rgb.shape[:2]}")
    return rgb, mask
