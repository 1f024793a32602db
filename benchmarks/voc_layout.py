"""A PASCAL VOC 2012 layout on disk, written from the synthetic scenes: for scale benchmarks and tests.

    <root>/VOCdevkit/VOC2012/JPEGImages/<name>.jpg          photos of varied sizes
    <root>/VOCdevkit/VOC2012/Annotations/<name>.xml         the image labels (every <object>'s <name>)
    <root>/VOCdevkit/VOC2012/SegmentationClass/<name>.png   palette masks, 255 borders (train + val)
    <root>/VOCdevkit/VOC2012/SegmentationClassAug/<name>.png
    <root>/VOCdevkit/VOC2012/ImageSets/Segmentation/{train,train_aug,val}.txt

    python benchmarks/voc_layout.py /tmp/voc --train 400 --val 100 --min-side 80 --max-side 160

The content is the synthetic set's (objects that shape and texture tell apart), cut to a random
aspect ratio, with the object classes mapped to VOC ids and a VOC-style band of 255 along every
object boundary. Deterministic for a seed. `copies` repeats each rendered picture under new names:
a large set for I/O timings in seconds.
"""
from __future__ import annotations

import argparse
import os
import shutil

import numpy as np
from PIL import Image

from ial_ext.data import VOC_PALETTE
from ial_ext.data.synthetic_scene import class_appearances, render_scene
from ial_ext.data.voc import VOC_CLASS_NAMES

# person, cat, bird, car, train first (the 5-class default), then the other VOC ids in order
VOC_IDS = (15, 8, 3, 7, 19) + tuple(k for k in range(1, 21) if k not in (15, 8, 3, 7, 19))
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
    lookup[1: len(appearances) + 1] = VOC_IDS[: len(appearances)]
    return np.ascontiguousarray(rgb), _with_borders(lookup[mask])


def _annotation(name: str, height: int, width: int, mask: np.ndarray) -> str:
    present = [VOC_CLASS_NAMES[c] for c in np.unique(mask) if 0 < c < len(VOC_CLASS_NAMES)]
    objects = "".join(f"<object><name>{c}</name><difficult>0</difficult></object>" for c in present)
    return (f"<annotation><filename>{name}.jpg</filename><size><width>{width}</width>"
            f"<height>{height}</height><depth>3</depth></size>{objects}</annotation>")


def _write_image(base: str, name: str, rgb: np.ndarray, mask: np.ndarray) -> None:
    png = Image.fromarray(mask, mode="P")
    png.putpalette(VOC_PALETTE.flatten().tolist())
    png.save(os.path.join(base, "SegmentationClass", f"{name}.png"))
    png.save(os.path.join(base, "SegmentationClassAug", f"{name}.png"))
    with open(os.path.join(base, "Annotations", f"{name}.xml"), "w") as handle:
        handle.write(_annotation(name, *mask.shape, mask))
    jpeg = os.path.join(base, "JPEGImages", f"{name}.jpg")
    Image.fromarray(rgb).save(jpeg + ".tmp", format="JPEG", quality=90)
    os.replace(jpeg + ".tmp", jpeg)  # the JPEG last: its presence means the image is complete


def _copy_image(base: str, source: str, name: str) -> None:
    for folder, ext in (("SegmentationClass", "png"), ("SegmentationClassAug", "png"), ("Annotations", "xml"),
                        ("JPEGImages", "jpg")):
        shutil.copyfile(os.path.join(base, folder, f"{source}.{ext}"), os.path.join(base, folder, f"{name}.{ext}"))


def write_voc_layout(
    root: str, train_images: int, val_images: int, seed: int = 0, min_side: int = 80, max_side: int = 160,
    classes: int = 5, copies: int = 1,
) -> str:
    """Writes the layout under `root` (skipping images already there); returns the VOC2012 folder.

    `train_images` / `val_images` count rendered pictures; each is written `copies` times."""
    if not 1 <= classes <= len(VOC_IDS):
        raise ValueError(f"classes must be 1..{len(VOC_IDS)} (VOC's object classes), got {classes}")
    base = os.path.join(root, "VOCdevkit", "VOC2012")
    lists = os.path.join(base, "ImageSets", "Segmentation")
    for folder in ("JPEGImages", "Annotations", "SegmentationClass", "SegmentationClassAug", lists):
        os.makedirs(os.path.join(base, folder), exist_ok=True)
    appearances = class_appearances(classes)
    splits = {"train": [], "val": []}
    for split, count, year in (("train", train_images, 2000), ("val", val_images, 2001)):
        for index in range(count):
            names = [f"{year}_{index * copies + copy:06d}" for copy in range(copies)]
            splits[split] += names
            if all(os.path.isfile(os.path.join(base, folder, f"{name}.{ext}")) for name in names
                   for folder, ext in (("JPEGImages", "jpg"), ("Annotations", "xml"))):
                continue
            stream = [seed, 0 if split == "train" else 1, index]
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(stream)))
            _write_image(base, names[0], *_photo(rng, appearances, min_side, max_side))
            for name in names[1:]:
                _copy_image(base, names[0], name)
    for split, names in (("train", splits["train"]), ("train_aug", splits["train"]), ("val", splits["val"])):
        with open(os.path.join(lists, f"{split}.txt"), "w") as handle:
            handle.write("".join(f"{name}\n" for name in names))
    return base


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--val", type=int, default=100)
    parser.add_argument("--min-side", type=int, default=80)
    parser.add_argument("--max-side", type=int, default=160)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(write_voc_layout(args.root, args.train, args.val, args.seed, args.min_side, args.max_side,
                           args.classes, args.copies))


if __name__ == "__main__":
    main()
