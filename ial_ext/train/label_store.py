"""One pass's labels on disk: a folder per step and stage, one grey PNG per image.

A pass over a data set writes each image's labels as it goes (the class ids as pixel values,
255 unknown, as SBD's SegmentationClassAug), each file to a temporary name first and then
renamed, so a killed process leaves whole files or none. Each process writes the images of its
own shard; nothing of size (N, H, W) is ever held in memory, and checkpoints name the folder
instead of holding the labels. A finished pass leaves `complete.json` (its class pixel counts
and confusion matrix); an unfinished one is continued: images whose file reads back are not
predicted again, as long as `key.txt` says the folder was written by the same networks.
"""
from __future__ import annotations

import json
import os
from typing import Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

COMPLETE = "complete.json"
KEY = "key.txt"


class LabelStoreError(ValueError):
    pass


class LabelStore:
    """Labels of image `index` at `<directory>/<index>.png`, uint8 (H, W)."""

    def __init__(self, directory: str):
        self.directory = directory

    def path(self, index: int) -> str:
        return os.path.join(self.directory, f"{int(index):07d}.png")

    def write(self, index: int, labels: np.ndarray) -> None:
        if labels.dtype != np.uint8 or labels.ndim != 2:
            raise ValueError(f"labels must be uint8 (H, W), got {labels.dtype} {labels.shape}")
        path = self.path(index)
        temporary = f"{path}.tmp-{os.getpid()}"
        Image.fromarray(labels).save(temporary, format="PNG")
        os.replace(temporary, path)

    def read(self, index: int) -> np.ndarray:
        """The labels of image `index`; an error naming the file when there are none."""
        labels = self.read_if_present(index)
        if labels is None:
            raise LabelStoreError(f"no readable labels for image {index} in {self.path(index)}")
        return labels

    def read_if_present(self, index: int) -> Optional[np.ndarray]:
        """The labels of image `index`, or None when its file is missing or does not decode."""
        try:
            with Image.open(self.path(index)) as image:
                if image.mode != "L":
                    return None
                return np.array(image)  # a writable copy: tensors are made from it
        except (FileNotFoundError, UnidentifiedImageError, OSError):
            return None

    def prepare(self, key: str) -> None:
        """Makes the folder ready for a pass by the networks `key` names: labels another key
        wrote are deleted, those the same key wrote are kept (the pass continues). Called by
        one process before the others write."""
        os.makedirs(self.directory, exist_ok=True)
        key_path = os.path.join(self.directory, KEY)
        try:
            with open(key_path) as handle:
                same = handle.read() == key
        except FileNotFoundError:
            same = False
        if same:
            return
        for name in os.listdir(self.directory):
            os.unlink(os.path.join(self.directory, name))
        _write_atomically(key_path, key)

    def finish(self, summary: dict) -> None:
        """Marks the pass complete (after every process wrote its shard), with its figures."""
        if hasattr(os, "sync"):
            os.sync()  # the labels reach the disk before the file that says they are there
        _write_atomically(os.path.join(self.directory, COMPLETE), json.dumps(summary))

    @property
    def complete(self) -> bool:
        return os.path.isfile(os.path.join(self.directory, COMPLETE))

    def summary(self) -> dict:
        """What `finish` recorded: the pass's class pixel counts and confusion matrix."""
        path = os.path.join(self.directory, COMPLETE)
        if not os.path.isfile(path):
            raise LabelStoreError(f"the labels in {self.directory} are incomplete (no {COMPLETE})")
        with open(path) as handle:
            return json.load(handle)


def _write_atomically(path: str, text: str) -> None:
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)
