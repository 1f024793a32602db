"""`ial evaluate` and `ial infer`: a trained checkpoint applied to a split or to image files."""
from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from ..data import VOC_PALETTE, normalize_image
from .checkpoint import load_segmenter
from .config import Config
from .data_setup import build_datasets
from .evaluation import validation_miou
from .runtime import Runtime, pick_device
from .steps.pairwise import refined_probabilities

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def evaluate_checkpoint(path: str, config: Config, split: str) -> dict:
    unary, pairwise, _ = load_segmenter(path)
    train_set, val_set = build_datasets(config)
    dataset = val_set if split == "val" else train_set
    runtime = Runtime(device=pick_device(config.run.device, 0), progress=config.run.progress)
    unary.to(runtime.device)
    scores = {"unary_miou": validation_miou(runtime, dataset, unary)}
    if pairwise is not None:
        pairwise.to(runtime.device)
        scores["pairwise_miou"] = validation_miou(runtime, dataset, unary, pairwise)
    for name, value in scores.items():
        print(f"{split} {name}: {100 * value:.1f}")
    return scores


def _image_paths(inputs: list[str]) -> list[str]:
    paths = []
    for entry in inputs:
        if os.path.isdir(entry):
            paths += sorted(
                os.path.join(entry, name) for name in os.listdir(entry) if name.lower().endswith(IMAGE_SUFFIXES)
            )
        elif os.path.isfile(entry):
            paths.append(entry)
        else:
            raise FileNotFoundError(f"no such image or folder: {entry}")
    return paths


@torch.no_grad()
def infer_images(checkpoint: str, inputs: list[str], output: str, device: str = "auto") -> list[str]:
    """Writes one palette PNG of labels per image; returns their paths."""
    unary, pairwise, _ = load_segmenter(checkpoint)
    target = pick_device(device, 0)
    unary.to(target)
    if pairwise is not None:
        pairwise.to(target)
    os.makedirs(output, exist_ok=True)
    written = []
    runtime = Runtime(device=target)
    for path in runtime.bar(_image_paths(inputs), desc="infer"):
        try:
            rgb = np.asarray(Image.open(path).convert("RGB"))
        except OSError as error:
            raise ValueError(f"cannot read image {path}: {error}") from error
        images = normalize_image(rgb)[None].to(target)
        if pairwise is None:
            probabilities = unary(images).softmax(1)
        else:
            probabilities = refined_probabilities(unary, pairwise, images, None)
        labels = probabilities.argmax(1)[0].to(torch.uint8).cpu().numpy()
        png = Image.fromarray(labels, mode="P")
        png.putpalette(np.asarray(VOC_PALETTE, dtype=np.uint8).reshape(-1).tolist())
        destination = os.path.join(output, os.path.splitext(os.path.basename(path))[0] + ".png")
        png.save(destination)
        written.append(destination)
    return written
