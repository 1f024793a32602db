"""A folder of your own images with image-level labels: the case weakly-supervised training is for.

    my_data/
        classes.txt      the object classes, one per line: ids 1, 2, ... in order (0 is background;
                         a first line "background" is allowed and changes nothing)
        images/          the pictures, in any format Pillow reads, subfolders allowed
        train.csv        a labels file per split: one line per image, its path under images/, then
        val.csv          its classes, comma-separated ("background" alone: an image without objects)
        masks/           optional: <image path without suffix>.png, an index PNG of class ids
                         (255 = unknown), used only to score the images that have one

A labels file (split "train" reads train.csv; a split with a "/" or ending in .csv names the file,
relative to root unless absolute):

    # image, classes
    beach/0001.jpg, dog
    beach/0002.jpg, dog, person
    kitchen.png, dining table, person
    street.jpg, background

Blank lines and lines starting with "#" are skipped; fields are CSV (quote a path holding a comma).
The labels file and the class list are checked when the data set is built, and every problem
(unknown class, image missing, image listed twice, image without classes, no image at all) is
reported in one error.
"""
from __future__ import annotations

import csv
import os

import numpy as np
from torch.utils.data import Dataset

from .files import FileRecord
from .geometry import check_fit_options, fit_to_square
from .image_io import read_image_and_mask
from .palette import VOC_PALETTE
from .sample import IGNORE_INDEX, make_sample, multi_hot

BACKGROUND = "background"
CLASS_LIST = "classes.txt"
IMAGE_DIR = "images"
MASK_DIR = "masks"
LABELS_SUFFIX = ".csv"


def read_class_list(path: str) -> list[str]:
    """classes.txt -> class names with "background" first; ValueError naming the file if bad."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"class list not found: {path} (one object class per line)")
    with open(path, encoding="utf-8") as handle:
        names = [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]
    if names[:1] == [BACKGROUND]:
        names = names[1:]
    problems = []
    if not names:
        problems.append("it names no object class")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        problems.append(f"classes listed more than once: {repeated}")
    if BACKGROUND in names:
        problems.append(f"{BACKGROUND!r} may only be the first line (it is class 0)")
    if len(names) + 1 > IGNORE_INDEX:
        problems.append(f"{len(names)} object classes do not fit uint8 label maps (at most {IGNORE_INDEX - 1})")
    if problems:
        raise ValueError(f"bad class list {path}: " + "; ".join(problems))
    return [BACKGROUND] + names


def labels_file_of(root: str, split: str) -> str:
    if "/" in split or os.sep in split or split.endswith(LABELS_SUFFIX):
        return split if os.path.isabs(split) else os.path.join(root, split)
    return os.path.join(root, split + LABELS_SUFFIX)


def read_labels_file(path: str, class_names: list[str], image_dir: str) -> tuple[list[str], np.ndarray]:
    """(image paths under image_dir, (N, C) multi-hot labels); one ValueError lists every bad line."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"labels file not found: {path} (one line per image: path, classes)")
    class_ids = {name: k for k, name in enumerate(class_names)}
    images, labels, first_line, problems = [], [], {}, []
    with open(path, encoding="utf-8", newline="") as handle:
        lines = [(number, line) for number, line in enumerate(handle, 1)
                 if line.strip() and not line.lstrip().startswith("#")]
    for (number, _), fields in zip(lines, csv.reader((line for _, line in lines), skipinitialspace=True)):
        fields = [field.strip() for field in fields]
        image, classes = fields[0], [name for name in fields[1:] if name]
        where = f"line {number}: {image}"
        if image in first_line:
            problems.append(f"{where} is listed again (first on line {first_line[image]})")
            continue
        first_line[image] = number
        if not classes:
            problems.append(f"{where} has no classes (write {BACKGROUND!r} for an image without objects)")
            continue
        unknown = [name for name in classes if name not in class_ids]
        if unknown:
            problems.append(f"{where} names unknown classes {unknown}")
            continue
        if not os.path.isfile(os.path.join(image_dir, image)):
            problems.append(f"{where}: image not found: {os.path.join(image_dir, image)}")
            continue
        images.append(image)
        labels.append(multi_hot([class_ids[name] for name in classes], len(class_names)))
    if not lines:
        problems.append("it lists no image")
    if problems:
        known = ", ".join(class_names[1:])
        raise ValueError(f"{len(problems)} problem(s) in labels file {path} (classes: {known}):\n  "
                         + "\n  ".join(problems))
    return images, np.stack(labels)


class FolderDataset(Dataset):
    """Images with image-level labels from a labels file; masks optional (see the module docstring).

    image_size=None keeps native sizes (batch size 1, or a custom collate); an int resizes every
    image to image_size x image_size as `fit` says (see geometry.fit_to_square).
    """

    def __init__(self, root: str, split: str = "train", image_size: int | None = None, fit: str = "crop"):
        if not os.path.isdir(root):
            raise FileNotFoundError(f"data set folder not found: {root}")
        check_fit_options(image_size, fit)
        self.root = root
        self.split = split
        self.image_size = image_size
        self.fit = fit
        self.palette = VOC_PALETTE
        self.image_dir = os.path.join(root, IMAGE_DIR)
        if not os.path.isdir(self.image_dir):
            raise FileNotFoundError(f"image folder not found: {self.image_dir}")
        self.mask_dir = os.path.join(root, MASK_DIR)
        self.class_names = read_class_list(os.path.join(root, CLASS_LIST))
        self.num_classes = len(self.class_names)
        self.labels_file = labels_file_of(root, split)
        self.images, self.labels = read_labels_file(self.labels_file, self.class_names, self.image_dir)

    def __len__(self) -> int:
        return len(self.images)

    def mask_path(self, image: str):
        """The image's mask, or None when it has none."""
        path = os.path.join(self.mask_dir, os.path.splitext(image)[0] + ".png")
        return path if os.path.isfile(path) else None

    def file_records(self) -> list:
        return [FileRecord(os.path.join(self.image_dir, image), self.mask_path(image)) for image in self.images]

    def __getitem__(self, index: int) -> dict:
        image = self.images[index]
        rgb, mask = read_image_and_mask(os.path.join(self.image_dir, image), self.mask_path(image), self.num_classes)
        if self.image_size is not None:
            rgb, mask = fit_to_square(rgb, mask, self.image_size, self.fit)
        size = "" if self.image_size is None else f"-px{self.image_size}{self.fit}"
        return make_sample(rgb, mask, self.labels[index], index % len(self.images), f"folder-{image}{size}")
