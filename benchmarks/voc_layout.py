"""Writes a data set in PASCAL VOC 2012's directory layout (JPEGs, XML labels, palette masks, lists).

    python benchmarks/voc_layout.py /tmp/voc --train 400 --val 100 --image-size 128 --classes 20

The pictures are the synthetic set's (ial_ext.data.SyntheticDataset), so the VOC reader, the
trainer and the file checks can be measured on a VOC-shaped set without the real one.
`copies` repeats each rendered picture under new names: a large set for I/O timings in seconds.
"""
from __future__ import annotations

import argparse
import os
import shutil

import numpy as np
from PIL import Image

from ial_ext.data import VOC_PALETTE, SyntheticDataset
from ial_ext.data.voc import VOC_CLASS_NAMES

SPLIT_FOLDERS = {"train_aug": "SegmentationClassAug", "train": "SegmentationClass", "val": "SegmentationClass"}


def _annotation(name: str, height: int, width: int, classes: list[str]) -> str:
    objects = "".join(f"<object><name>{c}</name><difficult>0</difficult></object>" for c in classes)
    return (f"<annotation><filename>{name}.jpg</filename><size><width>{width}</width>"
            f"<height>{height}</height><depth>3</depth></size>{objects}</annotation>")


def write_split(base: str, split: str, dataset: SyntheticDataset, prefix: str, copies: int = 1) -> list[str]:
    """Writes every image of `dataset` (times `copies`) into the VOC layout under base; returns the names."""
    names = []
    mask_dir = os.path.join(base, SPLIT_FOLDERS[split])
    for index in range(len(dataset)):
        rgb, mask = dataset.generate(index)
        present = [VOC_CLASS_NAMES[c] for c in np.unique(mask) if 0 < c < len(VOC_CLASS_NAMES)]
        first = f"{prefix}_{index:06d}_0"
        Image.fromarray(rgb).save(os.path.join(base, "JPEGImages", f"{first}.jpg"), quality=90)
        palette_mask = Image.fromarray(mask, mode="P")
        palette_mask.putpalette(VOC_PALETTE.reshape(-1).tolist())
        palette_mask.save(os.path.join(mask_dir, f"{first}.png"))
        xml = _annotation(first, *mask.shape, present)
        for copy in range(copies):
            name = f"{prefix}_{index:06d}_{copy}"
            if copy:
                shutil.copyfile(os.path.join(base, "JPEGImages", f"{first}.jpg"),
                                os.path.join(base, "JPEGImages", f"{name}.jpg"))
                shutil.copyfile(os.path.join(mask_dir, f"{first}.png"), os.path.join(mask_dir, f"{name}.png"))
            with open(os.path.join(base, "Annotations", f"{name}.xml"), "w") as handle:
                handle.write(xml)
            names.append(name)
    with open(os.path.join(base, "ImageSets", "Segmentation", f"{split}.txt"), "w") as handle:
        handle.write("\n".join(names) + "\n")
    return names


def write_voc_layout(root: str, train: int, val: int, image_size: int, classes: int, seed: int = 0,
                     copies: int = 1) -> str:
    """A VOC-layout set with `train` (train_aug) and `val` images; returns root."""
    if classes > len(VOC_CLASS_NAMES) - 1:
        raise ValueError(f"VOC has {len(VOC_CLASS_NAMES) - 1} object classes, asked for {classes}")
    base = os.path.join(root, "VOCdevkit", "VOC2012")
    for folder in ("JPEGImages", "Annotations", "SegmentationClass", "SegmentationClassAug", "ImageSets/Segmentation"):
        os.makedirs(os.path.join(base, folder), exist_ok=True)
    common = dict(image_size=image_size, num_object_classes=classes, seed=seed)
    write_split(base, "train_aug", SyntheticDataset("train", num_images=train, **common), "train", copies)
    write_split(base, "val", SyntheticDataset("val", num_images=val, **common), "val", copies)
    return root


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--val", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(write_voc_layout(args.root, args.train, args.val, args.image_size, args.classes, args.seed, args.copies))


if __name__ == "__main__":
    main()
