"""What the dense CRF does to the CAM seeds Y0 (precision, mIoU, coverage) and what it costs per image.

    python benchmarks/crf_seeds.py                                     # the demo's synthetic set
    python benchmarks/crf_seeds.py --dataset voc --root /tmp/voc --image-size 128

Trains the CAM network as `ial train` does (ial_ext.train's functions and settings), then makes
the seeds of every training image twice, against the same masks: as the trainer does by default, and
with PSA's CRF step (`--seeds.crf`, ial_ext.train.seeds.crf_seeds_from_cams). Also times
one 321 x 321 image of 21 classes (VOC's), 10 iterations, which pydensecrf runs on one thread.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from ial_ext.crf import dense_crf
from ial_ext.data import SyntheticDataset
from ial_ext.train.config import Config
from ial_ext.train.data_setup import build_datasets
from ial_ext.train.metrics import ConfusionMatrix
from ial_ext.train.runtime import create_runtime
from ial_ext.train.seeds import crf_seeds_from_cams, seeds_from_cams, upsample_cams
from ial_ext.train.steps.classifier import train_classifier


def measure(config: Config, iterations: int) -> dict:
    runtime = create_runtime(config.run)
    train_set, _ = build_datasets(config)
    network = train_classifier(config, runtime, train_set)
    plain, refined = ConfusionMatrix(train_set.num_classes), ConfusionMatrix(train_set.num_classes)
    crf_seconds, images = 0.0, 0
    with torch.no_grad():
        for batch in DataLoader(train_set, batch_size=16):
            pictures = batch["image"]
            cams = network.cams(pictures) + network.cams(pictures.flip(-1)).flip(-1)
            cams = upsample_cams(cams, pictures.shape[-2:])
            seeds = seeds_from_cams(cams, batch["class_labels"], config.seeds.foreground_alpha,
                                    config.seeds.background_alpha)
            plain.update(seeds, batch["mask"])
            start = time.perf_counter()
            with_crf = crf_seeds_from_cams(cams, batch["class_labels"], batch["rgb"], config.seeds.foreground_alpha,
                                           config.seeds.background_alpha, iterations)
            crf_seconds += time.perf_counter() - start
            refined.update(with_crf, batch["mask"])
            images += len(pictures)
    return {"images": images, "image_size": config.data.image_size, "classes": train_set.num_classes,
            "seeds": plain.summary(), "seeds_crf": refined.summary(), "crf_seconds_per_image": crf_seconds / images}


def time_voc_sized_image(iterations: int, repeats: int = 3) -> float:
    """Seconds of dense_crf on a 321 x 321 picture with 21 classes (the slowest of VOC's cases)."""
    rgb, mask = SyntheticDataset("train", num_images=1, image_size=321, num_object_classes=20).generate(0)
    rng = np.random.default_rng(0)
    scores = rng.random((21, 321, 321), dtype=np.float32) + 4 * (np.arange(21)[:, None, None] == mask[None])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        dense_crf(scores, rgb, iterations=iterations)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--root")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--classifier-iterations", type=int, default=Config().classifier.iterations)
    parser.add_argument("--crf-iterations", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    config = Config()
    config.data.dataset, config.data.root, config.data.image_size = args.dataset, args.root, args.image_size
    config.classifier.iterations = args.classifier_iterations
    config.run.threads, config.run.progress = args.threads, False
    config.run.output_dir = tempfile.mkdtemp(prefix="crf-seeds-")
    result = measure(config, args.crf_iterations)
    result["crf_seconds_321px_21_classes"] = time_voc_sized_image(args.crf_iterations)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
