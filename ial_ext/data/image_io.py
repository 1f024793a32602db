"""Reading images and label PNGs with errors that name the file."""
import os

import numpy as np
from PIL import Image, UnidentifiedImageError


def read_rgb(path: str) -> np.ndarray:
    """Any image file -> uint8 (H, W, 3) RGB (grey and CMYK images converted)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot decode image {path}: {error}") from error


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
