"""`ial evaluate` and `ial infer`: a trained checkpoint applied to a split or to image files."""
from __future__ import annotations

import os

import torch

from ..data import VOC_PALETTE, normalize_image
from .checkpoint import load_segmenter
from .config import Config
from .data_setup import build_datasets
from .evaluation import validate
from .runtime import Runtime, pick_device
from .segmenter import Segmenter


def evaluate_checkpoint(path: str, config: Config, split: str) -> dict:
    unary, pairwise, _ = load_segmenter(path)
    train_set, val_set = build_datasets(config)
    dataset = val_set if split == "val" else train_set
    runtime = Runtime(device=pick_device(config.run.device, 0), progress=config.run.progress)
    unary.to(runtime.device)
    scores = {"unary_miou": validate(runtime, dataset, Segmenter(unary)).confusion.miou()}
    if pairwise is not None:
        pairwise.to(runtime.device)
        scores["pairwise_miou"] = validate(runtime, dataset, Segmenter(unary, pairwise)).confusion.miou()
    for name, value in scores.items():
        print(f"{split} {name}: {100 * value:.1f}")
    return scores


@torch.no_grad()
def infer_images(checkpoint: str, inputs: list[str], output: str, device: str = "auto") -> list[str]:
    """Writes one palette PNG of labels per image; returns their paths. The PyTorch twin of
    `ial-deploy`, whose image discovery, reading and PNG writing it shares."""
    from ial_export.deploy import find_images, output_names, read_rgb, save_label_png

    paths = find_images(inputs)
    names = output_names(paths)
    target = pick_device(device, 0)
    segmenter = Segmenter(*load_segmenter(checkpoint)[:2]).to(target).eval()
    os.makedirs(output, exist_ok=True)
    written = []
    runtime = Runtime(device=target)
    for path, name in zip(runtime.bar(paths, desc="infer"), names):
        images = normalize_image(read_rgb(path))[None].to(target)
        destination = os.path.join(output, name + ".png")
        save_label_png(segmenter.labels(images)[0].cpu().numpy(), VOC_PALETTE, destination)
        written.append(destination)
    return written
