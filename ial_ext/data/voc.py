"""PASCAL VOC 2012 segmentation, with SBD's augmented training set (train_aug, 10,582 images).

Expected layout (root may be the folder holding VOCdevkit, VOCdevkit itself, or VOC2012):

    VOCdevkit/VOC2012/
        JPEGImages/<name>.jpg
        Annotations/<name>.xml                  the image labels: every <object>'s <name>
        SegmentationClass/<name>.png            masks of train / val (palette PNGs, 255 = boundary)
        SegmentationClassAug/<name>.png         masks of train_aug (grey or palette PNGs, values 0..20, 255)
        ImageSets/Segmentation/{train,val}.txt
        ImageSets/Segmentation/train_aug.txt    the 10,582 names of VOC train + SBD minus VOC val

Image labels come from the XML annotations, as PSA's cls_labels are made (every object, difficult
and truncated ones too), never from the masks: training needs no mask. Masks serve for scoring
only; without the split's mask folder every mask is unknown (all 255) and nothing is scored.

SegmentationClassAug and train_aug.txt are the widely shared conversion of SBD (Hariharan et al.
2011) to VOC's PNG format (as used by DeepLab, PSA, ...). List files hold one image per line,
either a bare name ("2007_000032") or a DeepLab-style line ("/JPEGImages/2007_000032.jpg
/SegmentationClassAug/2007_000032.png"), of which the first path's stem is taken.
"""
import os
import xml.etree.ElementTree as ElementTree

import numpy as np
from torch.utils.data import Dataset

from .files import FileRecord
from .geometry import check_fit_options, fit_to_square
from .image_io import read_image_and_mask
from .palette import VOC_PALETTE
from .sample import make_sample, multi_hot

VOC_CLASS_NAMES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]
# Which mask folder each split's masks live in.
VOC_SPLITS = {"train_aug": "SegmentationClassAug", "train": "SegmentationClass", "val": "SegmentationClass"}


def find_voc2012(root: str) -> str:
    """The VOC2012 folder under `root` (root/VOCdevkit/VOC2012, root/VOC2012 or root itself)."""
    for candidate in (os.path.join(root, "VOCdevkit", "VOC2012"), os.path.join(root, "VOC2012"), root):
        if os.path.isdir(os.path.join(candidate, "JPEGImages")):
            return candidate
    raise FileNotFoundError(
        f"no PASCAL VOC 2012 under {root}: expected "
        f"{os.path.join(root, 'VOCdevkit', 'VOC2012', 'JPEGImages')}"
    )


def read_name_list(path: str) -> list:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image list not found: {path}")
    names = []
    with open(path) as handle:
        for line in handle:
            if line.strip():
                first = line.split()[0]
                names.append(os.path.splitext(os.path.basename(first))[0])
    if not names:
        raise ValueError(f"image list {path} is empty")
    return names


def read_xml_labels(path: str, class_ids: dict) -> set:
    """The class ids of the objects in one VOC XML annotation; ValueError naming the file if bad."""
    try:
        objects = ElementTree.parse(path).getroot().findall("object")
    except ElementTree.ParseError as error:
        raise ValueError(f"malformed XML annotation {path}: {error}") from error
    names = [(entry.findtext("name") or "").strip() for entry in objects]
    unknown = sorted(set(names) - set(class_ids))
    if unknown:
        raise ValueError(f"{path} names unknown classes {unknown}; VOC's are {sorted(class_ids)}")
    return {class_ids[name] for name in names}


class VOCSegmentation(Dataset):
    """PASCAL VOC 2012 (21 classes); image labels from Annotations/*.xml, masks for scoring only.

    image_size=None keeps native sizes (batch size 1, or a custom collate); an int resizes every
    image to image_size x image_size as `fit` says (see geometry.fit_to_square).
    """

    num_classes = len(VOC_CLASS_NAMES)
    class_names = VOC_CLASS_NAMES

    def __init__(self, root: str, split: str = "train_aug", image_size: int | None = None, fit: str = "crop"):
        if split not in VOC_SPLITS:
            raise ValueError(
                f"unknown VOC split {split!r} for {root}; expected one of {list(VOC_SPLITS)}"
            )
        self.base = find_voc2012(root)
        self.split = split
        check_fit_options(image_size, fit)
        self.image_size = image_size
        self.fit = fit
        self.palette = VOC_PALETTE
        mask_dir = os.path.join(self.base, VOC_SPLITS[split])
        self.mask_dir = mask_dir if os.path.isdir(mask_dir) else None
        self.names = read_name_list(os.path.join(self.base, "ImageSets", "Segmentation", f"{split}.txt"))
        self.labels = self._read_labels()

    def _read_labels(self) -> np.ndarray:
        """(N, 21) float32 multi-hot labels from the XML annotations; one error lists every bad file."""
        class_ids = {name: k for k, name in enumerate(self.class_names) if k > 0}
        labels = np.zeros((len(self.names), self.num_classes), dtype=np.float32)
        problems = []
        for row, name in enumerate(self.names):
            path = os.path.join(self.base, "Annotations", f"{name}.xml")
            try:
                labels[row] = multi_hot(read_xml_labels(path, class_ids), self.num_classes)
            except FileNotFoundError:
                problems.append(f"image labels not found: {path}")
            except ValueError as error:
                problems.append(str(error))
        if problems:
            raise ValueError(f"{len(problems)} bad VOC annotation(s) for split {self.split!r}:\n  "
                             + "\n  ".join(problems))
        return labels

    def __len__(self) -> int:
        return len(self.names)

    def image_path(self, name: str) -> str:
        return os.path.join(self.base, "JPEGImages", f"{name}.jpg")

    def mask_path(self, name: str):
        return None if self.mask_dir is None else os.path.join(self.mask_dir, f"{name}.png")

    def file_records(self) -> list:
        return [FileRecord(self.image_path(name), self.mask_path(name)) for name in self.names]

    def __getitem__(self, index: int) -> dict:
        name = self.names[index]
        rgb, mask = read_image_and_mask(self.image_path(name), self.mask_path(name), self.num_classes)
        if self.image_size is not None:
            rgb, mask = fit_to_square(rgb, mask, self.image_size, self.fit)
        return make_sample(rgb, mask, self.labels[index], index % len(self.names), self.name_of(name))

    def name_of(self, name: str) -> str:
        # A resized image is another picture for caches keyed by name (superpixels).
        size = "" if self.image_size is None else f"-px{self.image_size}{self.fit}"
        return f"voc-{name}{size}"
