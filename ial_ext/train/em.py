"""Algorithm 1: CAM seeds, then T steps of E (refine with g) and M (train f, mine, train g).

Step numbering follows the paper's Table 5: step 0 is the seeds Y0; step t trains the unary
network f_t on the previous step's labels (Y0, then the refined maps alpha_p), mines the
confident regions Y_t from its map, trains the pairwise network g_t on them, and refines
alpha_p_t = G_t alpha_u_t (the E-step), which supervises f_{t+1}.
"""
from __future__ import annotations

import os
from typing import Optional

import torch

from ..models import build_model
from .checkpoint import latest_checkpoint, network_entry, save_checkpoint, step_path
from .config import Config
from .data_setup import SuperpixelSource, build_datasets
from .evaluation import ground_truth, mean_energy, score_labels, validation_miou
from .figures import save_step_figure
from .report import format_table, table_row, write_table
from .runtime import Runtime, close_runtime, create_runtime
from .steps import (
    generate_seeds,
    mine_confident_regions,
    predict_unary_labels,
    refine_with_pairwise,
    train_classifier,
    train_pairwise,
    train_unary,
    unary_inference,
)

# Settings that may change between a run and its resumption without changing its results.
RESUMABLE_CHANGES = {"run.resume", "run.progress", "run.threads", "run.device", "loop.steps"}


def run_em(config: Config) -> list[dict]:
    """Runs (or resumes) the whole loop; returns the Table 5 rows."""
    runtime = create_runtime(config.run)
    try:
        return _run(config, runtime)
    finally:
        close_runtime(runtime)


def _run(config: Config, runtime: Runtime) -> list[dict]:
    output = config.run.output_dir
    checkpoints = os.path.join(output, "checkpoints")
    train_set, val_set = build_datasets(config)
    truth = ground_truth(train_set)
    needs_superpixels = config.loop.mining or (config.loop.pairwise and config.loop.smoothness)
    superpixels = SuperpixelSource(train_set, config) if needs_superpixels else None
    if runtime.is_main:
        os.makedirs(output, exist_ok=True)
        config.save(os.path.join(output, "config.json"))

    state = latest_checkpoint(checkpoints, runtime.log) if config.run.resume else None
    if state is not None:
        _check_resumable(state["config"], config)
        runtime.log(f"resuming after step {state['step']} from {checkpoints}")
        runtime.log(format_table(state["rows"]))
    else:
        if config.run.resume:
            runtime.log(f"no checkpoint to resume from in {checkpoints}: starting at step 0")
        state = initialize(config, runtime, train_set, truth)
        _save_step(runtime, output, state)

    for step in range(state["step"] + 1, config.loop.steps + 1):
        state = em_step(config, runtime, train_set, val_set, truth, superpixels, state, step)
        _save_step(runtime, output, state)
    runtime.log(f"table: {os.path.join(output, 'table.csv')}\nfigures: {os.path.join(output, 'figures')}")
    return state["rows"]


def initialize(config: Config, runtime: Runtime, train_set, truth) -> dict:
    """Step 0: the CAM network and the seeds Y0."""
    with runtime.timed("classifier"):
        classifier = train_classifier(config, runtime, train_set)
    with runtime.timed("seeds"):
        seeds = generate_seeds(config, runtime, classifier, train_set)
    runtime.log_timings("step 0")
    rows = [table_row(0, "seeds", score_labels(seeds, truth, train_set.num_classes))]
    return {
        "step": 0,
        "config": config.to_dict(),
        "num_classes": train_set.num_classes,
        "class_names": list(train_set.class_names),
        "models": {"classifier": network_entry(classifier)},
        "labels": seeds,
        "figure_seeds": seeds[: config.run.figure_images].clone(),
        "rows": rows,
    }


def em_step(config: Config, runtime: Runtime, train_set, val_set, truth, superpixels, state: dict, step: int) -> dict:
    """One step t: f_t on the previous labels, Y_t mined from f_t, g_t on Y_t, then the E-step."""
    num_classes = train_set.num_classes
    previous = _networks(state) if config.loop.warm_start else {}
    rows = list(state["rows"])

    with runtime.timed("unary"):
        network = train_unary(config, runtime, train_set, state["labels"], step, previous.get("unary"))
        unary = unary_inference(config, network)
        unary_labels = predict_unary_labels(runtime, unary, train_set, step)
    unary_val = None if config.loop.pairwise else validation_miou(runtime, val_set, unary)
    rows.append(table_row(step, "unary", score_labels(unary_labels, truth, num_classes), val_miou=unary_val))
    models = {"unary": network_entry(network)}

    if config.loop.mining:
        with runtime.timed("mining"):
            regions, region_network = mine_confident_regions(
                config, runtime, train_set, unary_labels, superpixels, step, previous.get("region")
            )
        rows.append(table_row(step, "mined", score_labels(regions, truth, num_classes)))
        models["region"] = network_entry(region_network)
    else:
        regions = unary_labels

    refined = None
    if config.loop.pairwise:
        with runtime.timed("pairwise"):
            pairwise = train_pairwise(
                config, runtime, train_set, unary, regions, superpixels, step, previous.get("pairwise")
            )
        with runtime.timed("E-step"):
            refined = refine_with_pairwise(
                runtime, unary, pairwise, train_set, step, config.loop.refined_confidence
            )
        rows.append(
            table_row(
                step,
                "pairwise",
                score_labels(refined, truth, num_classes),
                val_miou=validation_miou(runtime, val_set, unary, pairwise),
                energy=mean_energy(runtime, train_set, unary, pairwise, config.loop.energy_images),
            )
        )
        models["pairwise"] = network_entry(pairwise)

    if runtime.is_main:
        _figure(config, train_set, truth, state["figure_seeds"], unary_labels, regions, refined, step)
    runtime.log_timings(f"step {step}")
    return {
        **state,
        "step": step,
        "models": models,
        "labels": refined if refined is not None else regions,
        "rows": rows,
        "unary_inference": {"scales": list(config.model.scales()), "flip": config.model.unary_flip},
    }


def _networks(state: dict) -> dict:
    networks = {}
    for name, entry in state["models"].items():
        network = build_model(entry["spec"])
        network.load_state_dict(entry["state_dict"])
        networks[name] = network.eval()
    return networks


def _save_step(runtime: Runtime, output: str, state: dict) -> None:
    """Checkpoint, then the table so far (CSV + JSON), printed too."""
    if runtime.is_main:
        save_checkpoint(step_path(os.path.join(output, "checkpoints"), state["step"]), state)
        write_table(state["rows"], output)
    runtime.log(format_table(state["rows"]))
    runtime.barrier()


def _check_resumable(saved: dict, config: Config) -> None:
    current = config.to_dict()
    changed = [
        f"{section}.{key}"
        for section, values in saved.items()
        for key, value in values.items()
        if current.get(section, {}).get(key) != value and f"{section}.{key}" not in RESUMABLE_CHANGES
    ]
    if changed:
        raise ValueError(
            "--resume with settings that differ from the checkpoint's: " + ", ".join(sorted(changed))
        )


def _figure(config, dataset, truth, seeds, unary_labels, regions, refined, step: int) -> Optional[str]:
    count = min(config.run.figure_images, len(dataset))
    if count == 0:
        return None
    rgb = torch.stack([dataset[i]["rgb"] for i in range(count)]).numpy()
    columns = {"seeds": seeds[:count], "unary": unary_labels[:count]}
    if config.loop.mining:
        columns["mined"] = regions[:count]
    if refined is not None:
        columns["refined"] = refined[:count]
    columns["truth"] = truth[:count]
    columns = {title: labels.numpy() for title, labels in columns.items()}
    path = os.path.join(config.run.output_dir, "figures", f"step_{step}.png")
    return save_step_figure(path, rgb, columns, dataset.palette)
