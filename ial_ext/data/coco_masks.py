"""Decoding COCO segmentations (polygons, uncompressed and compressed RLE) without pycocotools.

Conventions (those of the COCO API): polygon coordinates are continuous, (0, 0) being the top-left
corner of the top-left pixel, so a pixel is inside when its centre (x + 0.5, y + 0.5) is; RLE counts
run over the image in column-major (Fortran) order, alternating background and foreground runs and
starting with background.
"""
import numpy as np
from skimage.draw import polygon as fill_polygon


def decode_segmentation(segmentation, height: int, width: int) -> np.ndarray:
    """A COCO `segmentation` field -> bool (height, width) mask."""
    if isinstance(segmentation, list):
        return polygons_to_mask(segmentation, height, width)
    if isinstance(segmentation, dict):
        return rle_to_mask(segmentation, height, width)
    raise ValueError(f"segmentation must be a polygon list or an RLE dict, got {type(segmentation).__name__}")


def polygons_to_mask(polygons: list, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    for polygon in polygons:
        if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
            raise ValueError("a polygon must be a flat list [x1, y1, x2, y2, ...] of at least 3 points")
        xy = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        # Shift by half a pixel: skimage tests integer pixel centres, COCO's centres sit at +0.5.
        rows, cols = fill_polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, shape=(height, width))
        mask[rows, cols] = True
    return mask


def rle_to_mask(rle: dict, height: int, width: int) -> np.ndarray:
    if "counts" not in rle or "size" not in rle:
        raise ValueError("an RLE segmentation needs 'counts' and 'size'")
    rle_h, rle_w = (int(v) for v in rle["size"])
    if (rle_h, rle_w) != (height, width):
        raise ValueError(f"RLE size {[rle_h, rle_w]} differs from the image's {[height, width]}")
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        counts = decode_rle_string(counts)
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError("RLE counts must be a flat list of non-negative run lengths")
    if counts.sum() != height * width:
        raise ValueError(f"RLE runs cover {int(counts.sum())} pixels, the image has {height * width}")
    values = np.arange(counts.size) % 2 == 1  # runs alternate background, foreground, ...
    flat = np.repeat(values, counts)
    return flat.reshape(width, height).T


def decode_rle_string(text) -> list:
    """COCO's compressed counts string -> list of run lengths.

    Each count is written in 5-bit groups, least significant first, as characters offset by 48;
    bit 0x20 says another group follows and bit 0x10 of the last group is the sign. From the
    third count on, the string stores the difference to the count two places earlier.
    """
    data = text.encode("ascii") if isinstance(text, str) else bytes(text)
    counts, position = [], 0
    while position < len(data):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(data):
                raise ValueError("compressed RLE string ends in the middle of a count")
            group = data[position] - 48
            if not 0 <= group < 64:
                raise ValueError(f"invalid character {chr(data[position])!r} in a compressed RLE string")
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            position += 1
            shift += 5
            if not more and group & 0x10:
                value -= 1 << shift  # sign-extend
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def encode_rle_string(counts) -> str:
    """Inverse of decode_rle_string (used to write test fixtures and by users converting masks)."""
    out = []
    for m, count in enumerate(counts):
        value = int(count) - (int(counts[m - 2]) if m > 2 else 0)
        more = True
        while more:
            group = value & 0x1F
            value >>= 5
            more = value != -1 if group & 0x10 else value != 0
            if more:
                group |= 0x20
            out.append(chr(group + 48))
    return "".join(out)
