"""COCO 2014 semantic segmentation (80 object classes + background) from the instance annotations.

Expected layout under root:

    train2014/<file_name>.jpg   val2014/<file_name>.jpg
    annotations/instances_train2014.json   annotations/instances_val2014.json

Label maps are painted from the instances: the categories, sorted by their COCO id, become classes
1..80 (0 is background). Crowd regions (iscrowd=1) are painted 255 (ignore) first; ordinary
instances are then painted from the largest to the smallest, so where instances overlap the smaller
one wins, and between two of equal size the later one in the file. Instances thus win over crowd
regions. Segmentations are decoded with pycocotools. Image labels are the categories of the image's
non-crowd instances, read from the annotation file (no mask is decoded for them).
"""
import json
import os

import numpy as np
from torch.utils.data import Dataset

from .coco_masks import decode_segmentation
from .files import FileRecord
from .geometry import check_fit_options, fit_to_square
from .image_io import read_rgb
from .palette import VOC_PALETTE
from .sample import IGNORE_INDEX, make_sample, multi_hot

COCO_SPLITS = ("train2014", "val2014")


class COCOSegmentation(Dataset):
    """COCO 2014 as a semantic segmentation data set; see the module docstring for the rules.

    skip_unlabelled=True drops images with no non-crowd instance (nothing to learn from image labels).
    """

    def __init__(self, root: str, split: str = "train2014", image_size: int | None = None,
                 fit: str = "crop", skip_unlabelled: bool = False):
        if split not in COCO_SPLITS:
            raise ValueError(f"unknown COCO split {split!r} for {root}; expected one of {list(COCO_SPLITS)}")
        self.root = root
        self.split = split
        check_fit_options(image_size, fit)
        self.image_size = image_size
        self.fit = fit
        self.palette = VOC_PALETTE
        self.image_dir = os.path.join(root, split)
        if not os.path.isdir(self.image_dir):
            raise FileNotFoundError(f"COCO image folder not found: {self.image_dir}")
        self.annotation_path = os.path.join(root, "annotations", f"instances_{split}.json")
        categories, self.images, self.instances = load_instances(self.annotation_path)
        self.class_names = ["background"] + [name for _, name in categories]
        self.num_classes = len(self.class_names)
        if skip_unlabelled:
            self.images = [im for im in self.images
                           if any(not crowd for _, crowd, _, _ in self.instances.get(im["id"], ()))]

    def __len__(self) -> int:
        return len(self.images)

    def label_map(self, image: dict) -> np.ndarray:
        """uint8 (H, W) label map of one image record, painted as the module docstring says."""
        height, width = image["height"], image["width"]
        mask = np.zeros((height, width), dtype=np.uint8)
        painted = []
        for label, crowd, segmentation, annotation_id in self.instances.get(image["id"], ()):
            try:
                region = decode_segmentation(segmentation, height, width)
            except ValueError as error:
                raise ValueError(
                    f"{self.annotation_path}: annotation {annotation_id} of image "
                    f"{image['file_name']}: {error}"
                ) from error
            if crowd:
                mask[region] = IGNORE_INDEX
            else:
                painted.append((int(region.sum()), label, region))
        # Stable sort: equal areas keep file order, so the later one paints last.
        for _, label, region in sorted(painted, key=lambda item: -item[0]):
            mask[region] = label
        return mask

    def image_labels(self, image: dict) -> np.ndarray:
        """Multi-hot labels of one image record: its non-crowd instances' classes."""
        return multi_hot({label for label, crowd, _, _ in self.instances.get(image["id"], ()) if not crowd},
                         self.num_classes)

    def file_records(self) -> list:
        return [FileRecord(os.path.join(self.image_dir, image["file_name"]), size=(image["height"], image["width"]),
                           source=self.annotation_path) for image in self.images]

    def __getitem__(self, index: int) -> dict:
        image = self.images[index]
        path = os.path.join(self.image_dir, image["file_name"])
        rgb = read_rgb(path)
        if rgb.shape[:2] != (image["height"], image["width"]):
            raise ValueError(
                f"{path} is {rgb.shape[1]}x{rgb.shape[0]} but {self.annotation_path} says "
                f"{image['width']}x{image['height']}"
            )
        mask = self.label_map(image)
        if self.image_size is not None:
            rgb, mask = fit_to_square(rgb, mask, self.image_size, self.fit)
        size = "" if self.image_size is None else f"-px{self.image_size}{self.fit}"
        return make_sample(rgb, mask, self.image_labels(image), index % len(self.images),
                           f"coco-{self.split}-{image['id']}{size}")


def load_instances(path: str):
    """instances_*.json -> (categories [(id, name)] by id, images sorted by id, {image id: instances}).

    An instance is (class label, is crowd, segmentation, annotation id).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"COCO annotation file not found: {path}")
    try:
        with open(path) as handle:
            content = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"malformed COCO annotation file {path}: {error}") from error
    try:
        categories = sorted((int(c["id"]), str(c["name"])) for c in content["categories"])
        label_of = {category_id: k + 1 for k, (category_id, _) in enumerate(categories)}
        images = sorted(
            ({"id": int(im["id"]), "file_name": str(im["file_name"]),
              "height": int(im["height"]), "width": int(im["width"])} for im in content["images"]),
            key=lambda im: im["id"],
        )
        known_images = {im["id"] for im in images}
        instances = {}
        for annotation in content["annotations"]:
            annotation_id = annotation.get("id", "?")
            image_id, category_id = int(annotation["image_id"]), int(annotation["category_id"])
            if image_id not in known_images:
                raise ValueError(f"annotation {annotation_id} refers to unknown image id {image_id}")
            if category_id not in label_of:
                raise ValueError(f"annotation {annotation_id} refers to unknown category id {category_id}")
            instances.setdefault(image_id, []).append(
                (label_of[category_id], bool(annotation.get("iscrowd", 0)),
                 annotation["segmentation"], annotation_id)
            )
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"malformed COCO annotation file {path}: missing or bad field {error}") from error
    except ValueError as error:
        raise ValueError(f"malformed COCO annotation file {path}: {error}") from error
    if len(categories) >= IGNORE_INDEX:
        raise ValueError(f"{path}: {len(categories)} categories do not fit uint8 label maps")
    return categories, images, instances
