"""What one run of each recipe in configs/ costs: per network, the seconds of one training
iteration at the recipe's batch size and 321 px, the seconds per image of its pass (the label pass
it runs over the data set), and the process's peak memory; from them, the hours of a run.

Each (recipe, network) is measured in a fresh process (its peak RSS is that network's alone, plus
torch's own); one warm-up iteration, then the mean of `--iterations` timed ones, on one torch thread
timed as the CPU time of that thread (time.thread_time: other processes' time slices on a shared
machine do not inflate it; on an idle core it is the wall time), wall time beside it. With `--batch`
the networks run at that batch size and the hours take the seconds per iteration scaled to the
recipe's batch (convolutions on one thread cost in proportion to the images). The inputs are
synthetic scenes with the recipe's number of classes (timings do not depend on the content; the
region network's do on the number of superpixels, which the recipe's Felzenszwalb settings give).

    python -m benchmarks.cost_table --threads 1 --json cost.json     # every recipe, every network
    python -m benchmarks.cost_table --batch 2 --iterations 1 --json cost.json   # quicker, scaled to the batch
    python -m benchmarks.cost_table --recipe voc_vgg16 --network unary --threads 1   # one row
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import time

import torch

from benchmarks.pairwise_iteration import cpu_model

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
NETWORKS = ("classifier", "unary", "region", "pairwise")
PASS_BATCH = 2  # images per timed pass batch (per-image figures; the trainer's passes take 16)
# Images of the data sets the recipes name (train split, val split).
DATA_SET_IMAGES = {"voc": (10582, 1449), "coco": (82783, 40504)}
NUM_CLASSES = {"voc": 21, "coco": 81}


def recipe_config(name: str, size: int | None = None, batch: int | None = None):
    """The recipe, optionally at another image size and batch size (quick looks)."""
    from ial_ext.train.config import load_config

    config = load_config(os.path.join(CONFIGS, f"{name}.json"))
    if size:
        config.data.image_size = size
    for network in NETWORKS if batch else ():
        getattr(config, network).batch_size = batch
    return config


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def make_batch(config, batch_size: int, num_classes: int) -> dict:
    """A training batch at the recipe's image size: images, image labels, a target with a third
    unknown (as mined regions leave it), and the recipe's superpixels."""
    from ial_ext.data import SyntheticDataset
    from ial_ext.superpixels import SuperpixelParams, felzenszwalb_superpixels

    size = config.data.image_size
    scenes = SyntheticDataset("train", num_images=batch_size, image_size=size, num_object_classes=num_classes - 1)
    samples = [scenes[k] for k in range(batch_size)]
    target = torch.stack([s["mask"] for s in samples]).long()
    target[torch.rand(target.shape) < 0.3] = 255
    params = SuperpixelParams(scale=config.mining.superpixel_scale, sigma=config.mining.superpixel_sigma,
                              min_size=config.mining.superpixel_min_size)
    start = time.thread_time()
    segments = torch.stack([torch.from_numpy(felzenszwalb_superpixels(s["rgb"].numpy(), params)) for s in samples])
    superpixel_seconds = (time.thread_time() - start) / batch_size
    batch = {"image": torch.stack([s["image"] for s in samples]),
             "class_labels": torch.stack([s["class_labels"] for s in samples]), "target": target,
             "segments": segments.long()}
    return batch, superpixel_seconds


def network_steps(config, network: str, num_classes: int):
    """(the module to train, its loss on a batch, the pass's prediction on a batch), as the
    trainer's phase and pass for `network` compute them."""
    from ial_ext.models import CAMNetwork, MultiScaleUnary, PairwiseNetwork, RegionConfidenceNetwork, UnaryNetwork
    from ial_ext.nn import RegionSmoothnessLoss
    from ial_ext.train.losses import classification_loss, region_classification_loss, segmentation_loss
    from ial_ext.train.segmenter import Segmenter, unary_probabilities
    from ial_ext.train.steps.mining import NOT_A_SAMPLE, _region_logits, region_samples
    from ial_ext.train.steps.pairwise import PairwiseWithGates, pairwise_loss

    model = config.model
    if network == "classifier":
        module = CAMNetwork(num_classes, backbone=model.cam_backbone)
        return (module, lambda m, b: classification_loss(m(b["image"]), b["class_labels"]),
                lambda b: module.cams(b["image"]) + module.cams(b["image"].flip(-1)).flip(-1))
    unary = UnaryNetwork(num_classes, backbone=model.backbone)
    unary_map = MultiScaleUnary(unary, model.scales(), model.unary_flip)
    if network == "unary":
        return (unary, lambda m, b: segmentation_loss(m(b["image"]), b["target"]),
                lambda b: unary_probabilities(unary_map.eval(), b["image"], b["class_labels"]).argmax(1))
    if network == "region":
        module = RegionConfidenceNetwork(num_classes, backbone=model.backbone,
                                         pooling_stride=config.mining.pooling_stride)

        def region_loss(m, b):
            samples = region_samples(b["target"], b["segments"], num_classes, config.mining.sample_purity)
            logits, pooled = _region_logits(m, b["image"], b["segments"])
            return region_classification_loss(logits, torch.where(pooled, samples, torch.full_like(samples, NOT_A_SAMPLE)))

        return module, region_loss, lambda b: _region_logits(module, b["image"], b["segments"])[0]
    pairwise = PairwiseNetwork(num_classes, width=model.pairwise_width, gate_mode=model.pairwise_gates,
                               gate_layout=model.pairwise_gate_layout)
    smoothness = RegionSmoothnessLoss() if config.loop.smoothness else None
    segmenter = Segmenter(unary_map.eval(), pairwise)
    return (PairwiseWithGates(pairwise),
            lambda m, b: pairwise_loss(m, unary_map.eval(), b, config.loop.smoothness_weight, smoothness),
            lambda b: segmenter.eval().labels(b["image"], b["class_labels"]))


def measure(recipe: str, network: str, iterations: int, size=None, batch=None) -> dict:
    """One row: this process builds the network, times its pass and its training iterations."""
    from ial_ext.train.optim import ScheduledSGD

    config = recipe_config(recipe, size, batch)
    num_classes = NUM_CLASSES[config.data.dataset]
    optim = getattr(config, network)
    torch.manual_seed(0)
    module, loss_of, predict = network_steps(config, network, num_classes)
    batch, superpixel_seconds = make_batch(config, optim.batch_size, num_classes)
    rss_built = peak_rss_mib()
    pass_batch = {k: v[:PASS_BATCH] for k, v in batch.items()}
    with torch.no_grad():
        module.eval()
        predict(pass_batch)  # warm-up
        pass_cpu, pass_wall = timed(lambda: predict(pass_batch))
    rss_pass = peak_rss_mib()
    module.train()
    optimizer = ScheduledSGD(module.parameters(), optim)
    times = [timed(lambda: optimizer.step(loss_of(module, batch))) for _ in range(1 + iterations)]
    recipe_batch = getattr(recipe_config(recipe), network).batch_size
    iteration_cpu = sum(cpu for cpu, _ in times[1:]) / iterations
    return {
        "recipe": recipe, "network": network, "batch_size": optim.batch_size, "size": config.data.image_size,
        "classes": num_classes, "iteration_s": iteration_cpu, "iteration_wall_s": sum(w for _, w in times[1:]) / iterations,
        "first_iteration_s": times[0][0], "recipe_batch_size": recipe_batch,
        "iteration_s_at_recipe_batch": iteration_cpu * recipe_batch / optim.batch_size,
        "pass_s_per_image": pass_cpu / PASS_BATCH, "pass_wall_s_per_image": pass_wall / PASS_BATCH,
        "superpixels_s_per_image": superpixel_seconds,
        "rss_before_mib": rss_built, "peak_rss_pass_mib": rss_pass, "peak_rss_train_mib": peak_rss_mib(),
        "threads": torch.get_num_threads(), "cpu": cpu_model(), "torch": torch.__version__,
    }


def timed(call) -> tuple[float, float]:
    """(CPU seconds of this thread, wall seconds) of call()."""
    cpu, wall = time.thread_time(), time.perf_counter()
    call()
    return time.thread_time() - cpu, time.perf_counter() - wall


def run_hours(config, rows: dict) -> dict:
    """Hours of one run of `config` per phase, from the measured rows of its four networks: each
    training phase its iterations, each pass its data set's images (T steps after the seeds)."""
    train_images, val_images = DATA_SET_IMAGES[config.data.dataset]
    steps = config.loop.steps
    seconds = {
        "classifier": config.classifier.iterations * rows["classifier"]["iteration_s_at_recipe_batch"],
        "seeds pass": train_images * rows["classifier"]["pass_s_per_image"],
        "superpixels (once, cached)": train_images * rows["region"]["superpixels_s_per_image"],
    }
    per_step = {
        "unary": config.unary.iterations * rows["unary"]["iteration_s_at_recipe_batch"],
        "unary pass": train_images * rows["unary"]["pass_s_per_image"],
        "region": config.region.iterations * rows["region"]["iteration_s_at_recipe_batch"],
        "mining pass": train_images * rows["region"]["pass_s_per_image"],
        "pairwise": config.pairwise.iterations * rows["pairwise"]["iteration_s_at_recipe_batch"],
        "refine + val passes": (train_images + val_images) * rows["pairwise"]["pass_s_per_image"],
    }
    seconds.update({f"{name} (x{steps} steps)": steps * value for name, value in per_step.items()})
    hours = {name: value / 3600 for name, value in seconds.items()}
    hours["total"] = sum(hours.values())
    return hours


def run_row(recipe: str, network: str, args) -> dict:
    """measure() in a fresh process, so that its peak RSS is this network's alone."""
    command = [sys.executable, "-m", "benchmarks.cost_table", "--recipe", recipe, "--network", network,
               "--iterations", str(args.iterations), "--threads", str(args.threads)]
    command += ["--size", str(args.size)] if args.size else []
    command += ["--batch", str(args.batch)] if args.batch else []
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:  # e.g. killed for memory: the row says so, the table goes on
        return {"recipe": recipe, "network": network, "error": (done.stderr.strip().splitlines() or
                                                                [f"exit status {done.returncode}"])[-1]}
    return json.loads(done.stdout)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", help="one recipe (configs/<name>.json); default: all")
    parser.add_argument("--network", choices=NETWORKS, help="measure one network in this process")
    parser.add_argument("--iterations", type=int, default=2, help="timed training iterations after one warm-up")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, help="image size instead of the recipe's (quick looks)")
    parser.add_argument("--batch", type=int, help="batch size of every network instead of the recipe's")
    parser.add_argument("--json", help="write the rows and hours here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.network:
        print(json.dumps(measure(args.recipe, args.network, args.iterations, args.size, args.batch)))
        return
    recipes = [args.recipe] if args.recipe else sorted(
        os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(CONFIGS, "*.json")))
    result = {}
    for recipe in recipes:
        rows = {}
        for network in NETWORKS:
            rows[network] = run_row(recipe, network, args)
            print(json.dumps(rows[network]), flush=True)
        complete = not any("error" in row for row in rows.values())
        hours = run_hours(recipe_config(recipe, args.size, args.batch), rows) if complete else None
        result[recipe] = {"rows": rows, "hours": hours}
        print(json.dumps({recipe: result[recipe]["hours"]}, indent=1), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
