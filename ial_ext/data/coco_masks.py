"""COCO segmentations (polygons, uncompressed and compressed RLE) -> masks, through pycocotools.

pycocotools rasterises and decodes as the COCO API defines; what it would not catch is checked
here first, with an error that says what is wrong: its decoder trusts the run lengths (runs that
fall short of the image leave pixels undefined) and it reads a 4-number polygon as a box.
"""
import numpy as np
from pycocotools import mask as coco_mask


def decode_segmentation(segmentation, height: int, width: int) -> np.ndarray:
    """A COCO `segmentation` field -> bool (height, width) mask."""
    if isinstance(segmentation, list):
        return polygons_to_mask(segmentation, height, width)
    if isinstance(segmentation, dict):
        return rle_to_mask(segmentation, height, width)
    raise ValueError(f"segmentation must be a polygon list or an RLE dict, got {type(segmentation).__name__}")


def polygons_to_mask(polygons: list, height: int, width: int) -> np.ndarray:
    if not polygons:
        return np.zeros((height, width), dtype=bool)
    for polygon in polygons:
        if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
            raise ValueError("a polygon must be a flat list [x1, y1, x2, y2, ...] of at least 3 points")
    rle = coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))
    return coco_mask.decode(rle).astype(bool)


def rle_to_mask(rle: dict, height: int, width: int) -> np.ndarray:
    if "counts" not in rle or "size" not in rle:
        raise ValueError("an RLE segmentation needs 'counts' and 'size'")
    rle_h, rle_w = (int(v) for v in rle["size"])
    if (rle_h, rle_w) != (height, width):
        raise ValueError(f"RLE size {[rle_h, rle_w]} differs from the image's {[height, width]}")
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        compressed = {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        return _decode_compressed(compressed)
    runs = np.asarray(counts)
    if runs.ndim != 1 or not np.issubdtype(runs.dtype, np.integer) or (runs < 0).any():
        raise ValueError("RLE counts must be a flat list of non-negative run lengths")
    if runs.sum() != height * width:
        raise ValueError(f"RLE runs cover {int(runs.sum())} pixels, the image has {height * width}")
    return coco_mask.decode(coco_mask.frPyObjects({"size": [height, width], "counts": runs.tolist()},
                                                  height, width)).astype(bool)


def _decode_compressed(rle: dict) -> np.ndarray:
    try:
        mask = coco_mask.decode(rle)
    except ValueError as error:  # runs beyond the image, characters outside the code
        raise ValueError(f"malformed compressed RLE counts {rle['counts'][:40]!r}: {error}") from error
    # Runs that stop short of the image decode without complaint: the encoding of what was
    # decoded then differs from the input (COCO's strings are pycocotools' own encoding).
    if coco_mask.encode(np.asfortranarray(mask))["counts"] != rle["counts"]:
        raise ValueError(
            f"malformed compressed RLE counts {rle['counts'][:40]!r}: they do not re-encode to themselves "
            "(runs that stop short of the image, or not pycocotools' encoding)"
        )
    return mask.astype(bool)
