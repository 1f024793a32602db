"""Reading and normalising images, the one copy used by training (ial_ext.data) and deployment.

numpy and Pillow only. Images are read upright: the EXIF orientation tag is applied, so a
label map matches the picture as every viewer shows it, in training and in deployment alike.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
# RGB on the 0-1 scale (torchvision's values, the ones ImageNet-pretrained weights expect).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EXIF orientations 5-8 turn the stored picture by 90 degrees: width and height swap.
_EXIF_ORIENTATION_TAG = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
# What Pillow raises for a missing, truncated or garbage file.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError)


def read_rgb(path: str) -> np.ndarray:
    """Any image file -> uint8 (H, W, 3) RGB, upright (EXIF orientation applied), grey and CMYK converted.

    FileNotFoundError if there is no such file, ValueError naming the path if it cannot be decoded.
    """
    from PIL import Image, ImageOps

    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except _DECODE_ERRORS as error:
        raise ValueError(f"cannot read image {path}: {error}") from error


def upright_size(path: str) -> tuple[int, int]:
    """(height, width) of the image as read_rgb returns it, from the file's header alone.

    Pillow opens lazily and verify() checks the structure without decoding the pixels (a JPEG
    truncated inside its pixel data passes; read_rgb then reports it). FileNotFoundError if there
    is no such file, ValueError naming the path if the header is bad.
    """
    from PIL import Image

    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = _orientation(image)
            image.verify()
    except _DECODE_ERRORS as error:
        raise ValueError(f"cannot read image {path}: {error}") from error
    return (width, height) if orientation in _TRANSPOSING_ORIENTATIONS else (height, width)


def _orientation(image) -> int:
    from PIL import Image

    if image.format == "PNG":
        # PNG's getexif() decodes the pixels to look for an eXIf chunk after them: read only
        # the one before them, as header parsing found it.
        exif = Image.Exif()
        if "exif" in image.info:
            exif.load(image.info["exif"])
        return exif.get(_EXIF_ORIENTATION_TAG, 1)
    return image.getexif().get(_EXIF_ORIENTATION_TAG, 1)


def normalize(rgb: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> float32 (3, H, W): (rgb / 255 - mean) / std per channel."""
    array = np.asarray(rgb)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"normalize expects a uint8 (H, W, 3) RGB image, got {array.dtype} {array.shape}")
    normalised = (array.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def mean_rgb_uint8(mean: Sequence[float] = IMAGENET_MEAN) -> tuple:
    """The mean as a uint8 colour: padding with it normalises to ~0."""
    return tuple(int(round(255 * m)) for m in mean)
