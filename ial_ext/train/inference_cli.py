"""`ial evaluate` and `ial infer`: a trained checkpoint applied to a split or to image files."""
from __future__ import annotations

import os

import torch

from ..crf import require_crf
from ..data import VOC_PALETTE, normalize_image
from .checkpoint import load_segmenter
from .config import Config
from .data_setup import build_datasets
from .evaluation import validate
from .runtime import Runtime, pick_device
from .segmenter import Segmenter, crf_labels


def evaluate_checkpoint(path: str, config: Config, split: str, crf_iterations: int = 0) -> dict:
    """mIoU of the checkpoint's unary and refined outputs on a split (after the dense CRF when
    crf_iterations > 0)."""
    if crf_iterations:
        require_crf()
    unary, pairwise, _ = load_segmenter(path)
    train_set, val_set = build_datasets(config)
    dataset = val_set if split == "val" else train_set
    runtime = Runtime(device=pick_device(config.run.device, 0), progress=config.run.progress)
    unary.to(runtime.device)
    segmenters = {"unary_miou": Segmenter(unary)}
    if pairwise is not None:
        segmenters["pairwise_miou"] = Segmenter(unary, pairwise.to(runtime.device))
    scores = {name: validate(runtime, dataset, segmenter, crf_iterations=crf_iterations).confusion.miou()
              for name, segmenter in segmenters.items()}
    for name, value in scores.items():
        print(f"{split} {name}: {100 * value:.1f}")
    return scores


@torch.no_grad()
def infer_images(checkpoint: str, inputs: list[str], output: str, device: str = "auto",
                 crf_iterations: int = 0) -> list[str]:
    """Writes one palette PNG of labels per image (after the dense CRF when crf_iterations > 0);
    returns their paths. The PyTorch twin of `ial-deploy`, whose image discovery, reading and
    PNG writing it shares."""
    from ial_export.deploy import find_images, output_names, read_rgb, save_label_png

    if crf_iterations:
        require_crf()
    paths = find_images(inputs)
    names = output_names(paths)
    target = pick_device(device, 0)
    segmenter = Segmenter(*load_segmenter(checkpoint)[:2]).to(target).eval()
    os.makedirs(output, exist_ok=True)
    written = []
    runtime = Runtime(device=target)
    for path, name in zip(runtime.bar(paths, desc="infer"), names):
        rgb = read_rgb(path)
        images = normalize_image(rgb)[None].to(target)
        destination = os.path.join(output, name + ".png")
        if crf_iterations:
            labels = crf_labels(segmenter(images), torch.from_numpy(rgb)[None], crf_iterations)[0]
        else:
            labels = segmenter.labels(images)[0]
        save_label_png(labels.cpu().numpy(), VOC_PALETTE, destination)
        written.append(destination)
    return written
