"""Checking a data set's files before training: every bad image and mask, reported together.

Header reads only (Pillow's lazy open plus verify(), no pixel decoding), several files at once,
so a VOC-sized split takes seconds; the pixels themselves are checked when they are loaded.

    verify_datasets(train_set, val_set)   # ValueError listing every problem, or nothing
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

from tqdm import tqdm

from .image_io import upright_size

# Header reads wait on the disk more than on the CPU: a few threads overlap the waits.
CHECK_THREADS = 8
LABEL_MASK_MODES = ("P", "L")


@dataclass(frozen=True)
class FileRecord:
    """The files behind one image of a data set."""

    image: str
    mask: Optional[str] = None  # None: the image has no ground truth
    size: Optional[tuple] = None  # (height, width) the annotations promise, checked when given
    source: str = ""  # where the promise was made, for the message


def check_record(record: FileRecord) -> list[str]:
    """The problems of one image's files ([] when they are fine)."""
    try:
        height, width = upright_size(record.image)
    except (OSError, ValueError) as error:
        return [str(error)]
    problems = []
    if record.size is not None and tuple(record.size) != (height, width):
        promised_h, promised_w = record.size
        problems.append(f"{record.image} is {width}x{height} but {record.source or 'its annotation'} "
                        f"says {promised_w}x{promised_h}")
    if record.mask is not None:
        problems += _check_mask(record.mask, (height, width), record.image)
    return problems


def _check_mask(path: str, image_size: tuple, image: str) -> list[str]:
    from PIL import Image

    if not os.path.isfile(path):
        return [f"label mask not found: {path}"]
    try:
        with Image.open(path) as mask:
            mode, (width, height) = mask.mode, mask.size
            mask.verify()
    except (OSError, ValueError, SyntaxError) as error:
        return [f"cannot read label mask {path}: {error}"]
    if mode not in LABEL_MASK_MODES:
        return [f"label mask {path} has mode {mode!r}; expected a single-channel index PNG ('P' or 'L')"]
    if (height, width) != tuple(image_size):
        return [f"label mask {path} is {width}x{height}, its image {image} is {image_size[1]}x{image_size[0]}"]
    return []


def check_files(dataset, progress: bool = True) -> list[str]:
    """Every problem with the files of `dataset` (missing, undecodable header, mask size or mode).

    A data set lists its files with `file_records()`; one without (the synthetic set) has none.
    """
    records = dataset.file_records() if hasattr(dataset, "file_records") else []
    label = getattr(dataset, "split", "") or type(dataset).__name__
    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        results = pool.map(check_record, records, chunksize=64)
        bar = tqdm(results, total=len(records), desc=f"checking {label}", unit="img", disable=not progress,
                   leave=False)
        return [problem for problems in bar for problem in problems]


def verify_datasets(*datasets, progress: bool = True) -> None:
    """Checks the files of every data set; one ValueError lists all the problems found."""
    problems = [problem for dataset in datasets for problem in check_files(dataset, progress)]
    if problems:
        raise ValueError(f"{len(problems)} bad file(s) in the data sets:\n  " + "\n  ".join(problems))
