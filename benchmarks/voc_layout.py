"""A PASCAL VOC 2012 layout on disk, written from the synthetic scenes: for scale benchmarks and tests.

    <root>/VOCdevkit/VOC2012/JPEGImages/<name>.jpg          photos of varied sizes
    <root>/VOCdevkit/VOC2012/SegmentationClass/<name>.png   palette masks, 255 borders (train + val)
    <root>/VOCdevkit/VOC2012/SegmentationClassAug/<name>.png
    <root>/VOCdevkit/VOC2012/ImageSets/Segmentation/{train,train_aug,val}.txt

The content is the synthetic set's (objects that shape and texture tell apart), cut to a random
aspect ratio, with the object classes mapped to VOC ids and a VOC-style band of 255 along every
object boundary. Deterministic for a seed.
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

from ial_ext.data import VOC_PALETTE
from ial_ext.data.synthetic_scene import class_appearances, render_scene

VOC_IDS = (15, 8, 3, 7, 19)  # person, cat, bird, car, train: the object classes 1..5 of the scenes
BORDER = 255


def _with_borders(mask: np.ndarray) -> np.ndarray:
    """255 wherever a pixel's 3x3 neighbourhood holds two labels (VOC's object outlines)."""
    padded = np.pad(mask, 1, mode="edge")
    height, width = mask.shape
    neighbours = [padded[1 + dy: 1 + dy + height, 1 + dx: 1 + dx + width] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    edge = np.zeros(mask.shape, dtype=bool)
    for neighbour in neighbours:
        edge |= neighbour != mask
    return np.where(edge, BORDER, mask).astype(np.uint8)


def _photo(rng: np.random.Generator, appearances, min_side: int, max_side: int):
    height, width = (int(side) for side in rng.integers(min_side, max_side + 1, size=2))
    side = max(height, width)
    rgb, mask = render_scene(rng, side, appearances)
    top, left = (int(rng.integers(0, side - height + 1)), int(rng.integers(0, side - width + 1)))
    rgb, mask = rgb[top: top + height, left: left + width], mask[top: top + height, left: left + width]
    if mask.max() == 0:  # the crop lost every object: keep the whole scene's top-left corner instead
        rgb, mask = render_scene(rng, side, appearances)
        rgb, mask = rgb[:height, :width], mask[:height, :width]
    lookup = np.zeros(256, dtype=np.uint8)
    lookup[1: len(VOC_IDS) + 1] = VOC_IDS
    return np.ascontiguousarray(rgb), _with_borders(lookup[mask])


def write_voc_layout(
    root: str, train_images: int, val_images: int, seed: int = 0, min_side: int = 80, max_side: int = 160
) -> str:
    """Writes the layout under `root` (skipping images already there); returns the VOC2012 folder."""
    base = os.path.join(root, "VOCdevkit", "VOC2012")
    folders = {name: os.path.join(base, name) for name in ("JPEGImages", "SegmentationClass", "SegmentationClassAug")}
    lists = os.path.join(base, "ImageSets", "Segmentation")
    for folder in (*folders.values(), lists):
        os.makedirs(folder, exist_ok=True)
    appearances = class_appearances(len(VOC_IDS))
    splits = {"train": [f"2000_{i:06d}" for i in range(train_images)],
              "val": [f"2001_{i:06d}" for i in range(val_images)]}
    for split, names in splits.items():
        for index, name in enumerate(names):
            jpeg = os.path.join(folders["JPEGImages"], f"{name}.jpg")
            if os.path.isfile(jpeg):
                continue
            stream = [seed, 0 if split == "train" else 1, index]
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(stream)))
            rgb, mask = _photo(rng, appearances, min_side, max_side)
            png = Image.fromarray(mask, mode="P")
            png.putpalette(VOC_PALETTE.flatten().tolist())
            png.save(os.path.join(folders["SegmentationClass"], f"{name}.png"))
            png.save(os.path.join(folders["SegmentationClassAug"], f"{name}.png"))
            Image.fromarray(rgb).save(jpeg + ".tmp", format="JPEG", quality=90)
            os.replace(jpeg + ".tmp", jpeg)  # the JPEG last: its presence means the image is complete
    for split, names in (("train", splits["train"]), ("train_aug", splits["train"]), ("val", splits["val"])):
        with open(os.path.join(lists, f"{split}.txt"), "w") as handle:
            handle.write("".join(f"{name}\n" for name in names))
    return base
