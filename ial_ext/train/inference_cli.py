"""`ial evaluate` and `ial infer`: a trained checkpoint applied to a split or to image files."""
from __future__ import annotations

import json
import os
import sys
from typing import Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from ial_export.deploy import DEFAULT_MAX_SIZE

from ..crf import require_crf
from ..data import VOC_PALETTE, normalize_image
from .checkpoint import load_segmenter
from .config import Config, RunConfig, apply_overrides
from .data_setup import build_datasets
from .evaluation import validate
from .report import class_iou, format_class_iou, format_confusion
from .runtime import Runtime, close_runtime, create_runtime, pick_device
from .segmenter import Segmenter, crf_labels


def checkpoint_config(state: dict, overrides: Optional[dict] = None) -> Config:
    """The settings of the run a checkpoint was taken in (data, model, inference), the machine's
    own (run.device, run.progress) at their defaults, and `overrides` (dotted names) on top."""
    config = Config.from_dict(state["config"])
    config.run.device, config.run.progress = RunConfig.device, RunConfig.progress
    return apply_overrides(config, overrides or {})


def evaluate_checkpoint(path: str, config: Optional[Config] = None, split: str = "val", crf_iterations: int = 0,
                        overrides: Optional[dict] = None, json_path: Optional[str] = None) -> dict:
    """mIoU of the checkpoint's unary and refined outputs on a split (after the dense CRF when
    crf_iterations > 0), printed with their per-class IoU and the final output's confusion
    matrix; {"unary_miou": ..., "pairwise_miou": ...} is returned. The data set is the one of
    the checkpoint's run (`checkpoint_config`) unless `config` is given."""
    if crf_iterations:
        require_crf()
    unary, pairwise, state = load_segmenter(path)
    config = config if config is not None else checkpoint_config(state, overrides)
    train_set, val_set = build_datasets(config)
    dataset = val_set if split == "val" else train_set
    if dataset.num_classes != state["num_classes"]:
        raise ValueError(
            f"{path} was trained on {state['num_classes']} classes, the {split} split of {config.data.dataset} "
            f"has {dataset.num_classes}: name the data set it was trained on (--data.dataset, --data.root)"
        )
    runtime = create_runtime(config.run)
    try:
        unary.to(runtime.device)
        segmenters = {"unary": Segmenter(unary)}
        if pairwise is not None:
            segmenters["pairwise"] = Segmenter(unary, pairwise.to(runtime.device))
        confusions = {name: validate(runtime, dataset, segmenter, description=f"{split} {name}",
                                     crf_iterations=crf_iterations).confusion
                      for name, segmenter in segmenters.items()}
    finally:
        close_runtime(runtime)
    names = list(dataset.class_names)
    per_class = {name: class_iou(confusion.iou(), names) for name, confusion in confusions.items()}
    scores = {f"{name}_miou": confusion.miou() for name, confusion in confusions.items()}
    crf = f", dense CRF {crf_iterations} iterations" if crf_iterations else ""
    print(f"{path} (step {state['step']}): {split} split of {config.data.dataset}, {len(dataset)} images, "
          f"{config.data.image_size} px{crf}")
    for name, value in scores.items():
        print(f"{split} {name}: {100 * value:.1f}")
    print(f"\nper-class IoU ({split}, %)\n" + format_class_iou(names, per_class))
    final = list(confusions)[-1]
    matrix = format_confusion(names, confusions[final].counts)
    if matrix is not None:
        print(f"\nconfusion matrix of the {final} output ({split}; rows: truth, columns: prediction, "
              "% of the true class's pixels)\n" + matrix)
    if json_path:
        with open(json_path, "w") as handle:
            json.dump({"checkpoint": path, "step": state["step"], "split": split, "crf_iterations": crf_iterations,
                       "outputs": {name: {"miou": scores[f"{name}_miou"], "class_iou": per_class[name],
                                          "confusion": confusions[name].counts.cpu().tolist()}
                                   for name in confusions}}, handle, indent=2)
    return scores


@torch.no_grad()
def infer_images(checkpoint: str, inputs: list[str], output: str, device: str = "auto", crf_iterations: int = 0,
                 overlay_alpha: Optional[float] = None, max_size: int = DEFAULT_MAX_SIZE,
                 failures: Optional[list] = None, progress: bool = True) -> list[str]:
    """Writes one palette PNG of labels per image (after the dense CRF when crf_iterations > 0),
    and with overlay_alpha <name>_overlay.png with a legend; returns the label maps' paths. An
    image that cannot be read or segmented is reported on stderr, skipped, and added to
    `failures` as (path, reason). The PyTorch twin of `ial-deploy`: the same image discovery,
    reading, scaling to `max_size`, and outputs."""
    from ial_export.deploy import (
        OVERLAY_SUFFIX, find_images, fit_to_max_size, labels_at_size, output_names, read_rgb, save_label_png,
        save_overlay,
    )

    if crf_iterations:
        require_crf()
    paths = find_images(inputs)
    names = output_names(paths)
    target = pick_device(device, 0)
    unary, pairwise, state = load_segmenter(checkpoint)
    segmenter = Segmenter(unary, pairwise).to(target).eval()
    class_names = state.get("class_names", [])
    os.makedirs(output, exist_ok=True)
    failures = [] if failures is None else failures
    written = []
    runtime = Runtime(device=target, progress=progress)
    for path, name in zip(runtime.bar(paths, desc="infer"), names):
        destination = os.path.join(output, name)
        try:
            rgb = read_rgb(path)
            scaled = fit_to_max_size(rgb, max_size)
            images = normalize_image(scaled)[None].to(target)
            if crf_iterations:
                labels = crf_labels(segmenter(images), torch.from_numpy(scaled.copy())[None], crf_iterations)[0]
            else:
                labels = segmenter.labels(images)[0]
            labels = labels_at_size(labels.cpu().numpy().astype(np.uint8), *rgb.shape[:2])
            save_label_png(labels, VOC_PALETTE, destination + ".png")
            if overlay_alpha is not None:
                save_overlay(rgb, labels, VOC_PALETTE, overlay_alpha, destination + OVERLAY_SUFFIX + ".png",
                             class_names)
        except (OSError, ValueError, RuntimeError) as error:  # unreadable, undecodable, out of memory
            failures.append((path, str(error)))
            tqdm.write(f"ial infer: skipping {path}: {error}", file=sys.stderr)
            continue
        written.append(destination + ".png")
    return written
