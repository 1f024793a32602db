"""Resizing a loaded image and its mask to a fixed square, so batches collate."""
import numbers

import numpy as np
from PIL import Image

from .normalization import mean_rgb_uint8
from .sample import IGNORE_INDEX

FIT_MODES = ("crop", "pad")


def check_fit_options(image_size, fit: str) -> None:
    """Raises ValueError for options fit_to_square would reject (checked when a data set is built)."""
    if fit not in FIT_MODES:
        raise ValueError(f"fit must be one of {FIT_MODES}, got {fit!r}")
    if image_size is not None and (not isinstance(image_size, numbers.Integral) or image_size <= 0):
        raise ValueError(f"image_size must be None or a positive int, got {image_size!r}")


def fit_to_square(rgb: np.ndarray, mask: np.ndarray, size: int, fit: str = "crop"):
    """(H, W, 3) uint8 image and (H, W) mask -> both size x size.

    fit="crop": the shorter side is resized to `size`, the longer one centre-cropped (nothing padded).
    fit="pad": the longer side is resized to `size`, the shorter one centre-padded (image with the
    ImageNet mean colour, mask with 255 so padding is never scored or trained on).
    Images resize bilinearly, masks by nearest neighbour (labels are never blended).
    """
    check_fit_options(size, fit)
    height, width = mask.shape
    side = min(height, width) if fit == "crop" else max(height, width)
    scale = size / side
    new_h = max(1, int(round(height * scale)))
    new_w = max(1, int(round(width * scale)))
    if (new_h, new_w) != (height, width):
        rgb = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.BILINEAR))
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((new_w, new_h), Image.NEAREST))
    out_rgb = np.empty((size, size, 3), dtype=np.uint8)
    out_rgb[...] = mean_rgb_uint8()
    out_mask = np.full((size, size), IGNORE_INDEX, dtype=np.uint8)
    # Centred window: source offset when cropping, destination offset when padding.
    src_y, dst_y, span_y = _centre(new_h, size)
    src_x, dst_x, span_x = _centre(new_w, size)
    out_rgb[dst_y:dst_y + span_y, dst_x:dst_x + span_x] = rgb[src_y:src_y + span_y, src_x:src_x + span_x]
    out_mask[dst_y:dst_y + span_y, dst_x:dst_x + span_x] = mask[src_y:src_y + span_y, src_x:src_x + span_x]
    return out_rgb, out_mask


def _centre(length: int, size: int):
    if length >= size:
        return (length - size) // 2, 0, size
    return 0, (size - length) // 2, length
