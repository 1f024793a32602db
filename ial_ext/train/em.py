"""Algorithm 1: CAM seeds, then T steps of E (refine with g) and M (train f, mine, train g).

Step numbering follows the paper's Table 5: step 0 is the seeds Y0; step t trains the unary
network f_t on the previous step's labels (Y0, then the refined maps alpha_p), mines the
confident regions Y_t from its map, trains the pairwise network g_t on them, and refines
alpha_p_t = G_t alpha_u_t (the E-step), which supervises f_{t+1}.

Every phase of a step (a network trained, a pass over a data set) is run through `Loop`,
which skips it when a resumed run had finished it and checkpoints after it; the training
phases also checkpoint inside themselves every `run.checkpoint_minutes`.
"""
from __future__ import annotations

import json
import os
import time
from typing import Callable, Optional

import numpy as np
from torch import nn

from .checkpoint import LATEST, network_entry, rebuild, save_checkpoint, step_path
from ..data import verify_datasets
from .config import Config
from .data_setup import SuperpixelSource, build_datasets
from .evaluation import mean_energy, validate
from .figures import save_step_figure, stage_caption
from .label_store import LabelStore
from .loop_state import LoopState
from .passes import PassResult
from .report import class_iou, format_table, table_row, write_table
from .run_folder import open_run
from .runtime import Runtime, close_runtime, create_runtime
from .segmenter import Segmenter
from .steps import (
    generate_seeds,
    mine_confident_regions,
    predict_unary_labels,
    refine_with_pairwise,
    train_classifier,
    train_pairwise,
    train_region_network,
    train_unary,
    unary_inference,
)
from .steps.mining import region_folds


def run_em(config: Config) -> list[dict]:
    """Runs (or resumes) the whole loop; returns the Table 5 rows."""
    runtime = create_runtime(config.run)
    try:
        train_set, val_set = build_datasets(config)
        verify_datasets(train_set, val_set, progress=runtime.progress and runtime.is_main)
        saved = open_run(config, runtime)
        if saved is None:
            state = LoopState(config.to_dict(), train_set.num_classes, list(train_set.class_names))
        else:
            state = LoopState.from_dict(saved)
            runtime.log(f"resuming {describe_progress(state)} from {config.run.output_dir}")
            runtime.log(format_table(state.rows))
        loop = Loop(config, runtime, train_set, val_set, state)
        if state.step < 0:
            initialize(loop)
        for step in range(state.step + 1, config.loop.steps + 1):
            em_step(loop, step)
        output = config.run.output_dir
        runtime.log(f"table: {os.path.join(output, 'table.csv')}\nfigures: {os.path.join(output, 'figures')}")
        return state.rows
    finally:
        close_runtime(runtime)


def initialize(loop: "Loop") -> None:
    """Step 0: the CAM network and the seeds Y0."""
    config, runtime, data = loop.config, loop.runtime, loop.train_set
    classifier = loop.network("classifier", lambda: train_classifier(config, runtime, data, loop))
    seeds = loop.labels("seeds", lambda store: generate_seeds(config, runtime, classifier, data, store))
    rows = [table_row(0, "seeds", seeds.confusion.summary())]
    loop.figure(0, [], rows)
    loop.finish_step({"classifier": classifier}, rows, "seeds")


def em_step(loop: "Loop", step: int) -> None:
    """One step t: f_t on the previous labels, Y_t mined from f_t, g_t on Y_t, then the E-step."""
    config, runtime, data = loop.config, loop.runtime, loop.train_set
    previous = loop.state.previous_networks() if config.loop.warm_start else {}
    supervision = loop.store_of(loop.state.labels)

    network = loop.network(
        "unary", lambda: train_unary(config, runtime, data, supervision, step, previous.get("unary"), loop)
    )
    unary = unary_inference(config, network)
    unary_maps = loop.labels("unary", lambda store: predict_unary_labels(runtime, unary, data, step, store))
    models = {"unary": network}
    stages = ["unary"]  # this step's label stores, in the order they are made; the last one supervises f_{t+1}

    if config.loop.mining:
        region_networks = [
            loop.network(f"region/{fold}", lambda: train_region_network(
                config, runtime, data, loop.store("unary", step), loop.superpixels, step, fold,
                previous.get("region"), loop,
            ))
            for fold in range(region_folds(config))
        ]
        mined = loop.labels("mined", lambda store: mine_confident_regions(
            config, runtime, data, region_networks, loop.superpixels, step, store
        ))
        models["region"] = region_networks[-1]
        stages.append("mined")

    segmenter = Segmenter(unary)
    if config.loop.pairwise:
        smoothness_superpixels = loop.superpixels if config.loop.smoothness else None
        pairwise = loop.network("pairwise", lambda: train_pairwise(
            config, runtime, data, unary, loop.store(stages[-1], step), smoothness_superpixels, step,
            previous.get("pairwise"), loop,
        ))
        segmenter = Segmenter(unary, pairwise)
        refined = loop.labels("refined", lambda store: refine_with_pairwise(
            runtime, segmenter, data, step, store, config.loop.refined_confidence
        ))
        energy = loop.value("energy", lambda: mean_energy(runtime, data, segmenter, config.loop.energy_images))
        models["pairwise"] = pairwise
        stages.append("refined")
    val = loop.labels("val", lambda store: validate(runtime, loop.val_set, segmenter, store)).confusion
    val_scores = {"val_miou": val.miou(), "val_class_iou": class_iou(val.iou(), loop.val_set.class_names)}

    # The val mIoU belongs to the step's final output: the refined map, or the unary map without g.
    rows = [table_row(step, "unary", unary_maps.confusion.summary(), **({} if config.loop.pairwise else val_scores))]
    if config.loop.mining:
        rows.append(table_row(step, "mined", mined.confusion.summary()))
    if config.loop.pairwise:
        rows.append(table_row(step, "pairwise", refined.confusion.summary(), energy=energy, **val_scores))
    loop.figure(step, stages, rows)
    loop.finish_step(models, rows, stages[-1],
                     unary_inference={"scales": list(config.model.scales()), "flip": config.model.unary_flip})


class Loop:
    """The loop's phases and checkpoints around a `LoopState`.

    network(name, train) / labels(stage, run_pass) / value(name, compute) run a phase of the
    step in progress unless the state says it is done, record its result and checkpoint. It
    is also the `FitCheckpoints` of the training phases: resume(), due() and save().
    """

    def __init__(self, config: Config, runtime: Runtime, train_set, val_set, state: LoopState):
        self.config = config
        self.runtime = runtime
        self.train_set = train_set
        self.val_set = val_set
        self.state = state
        self.output = config.run.output_dir
        needs_superpixels = config.loop.mining or (config.loop.pairwise and config.loop.smoothness)
        self.superpixels = SuperpixelSource(config) if needs_superpixels else None
        self.last_checkpoint = time.monotonic()

    # -- phases of the step in progress -------------------------------------------------

    def network(self, name: str, train: Callable[[], nn.Module]) -> nn.Module:
        """The network of phase `name`: trained, or rebuilt from the state when resuming."""
        if name not in self.state.done:
            self._run_phase(name, lambda: network_entry(train()))
        return rebuild(self.state.done[name]).to(self.runtime.device)

    def labels(self, stage: str, run_pass: Callable[[LabelStore], PassResult]) -> PassResult:
        """The scores of the pass writing labels/step_<t>/<stage>; run_pass(store) runs it."""
        name = f"{stage} labels"
        if name not in self.state.done:
            store = self.store(stage, self.state.step + 1)
            self._run_phase(name, lambda: {"store": self._relative(store), **run_pass(store).summary()})
        return PassResult.from_summary(self.state.done[name])

    def value(self, name: str, compute: Callable[[], float]):
        if name not in self.state.done:
            self._run_phase(name, compute)
        return self.state.done[name]

    def _run_phase(self, name: str, compute: Callable) -> None:
        start = time.perf_counter()
        result = compute()
        seconds = time.perf_counter() - start
        self.state.done[name] = result
        self.state.fit = None
        self.save()
        phase = name.split("/")[0]
        self.runtime.timings[phase] = self.runtime.timings.get(phase, 0.0) + seconds
        self._record_timing(phase, seconds)

    def finish_step(self, models: dict, rows: list, labels_stage: str, **extra) -> None:
        """The step in progress is complete: its networks become the state's models, its
        rows join the table, its last labels supervise the next step; step checkpoint."""
        state = self.state
        step = state.step + 1
        state.models = {name: network_entry(network) for name, network in models.items()}
        state.rows = state.rows + rows
        state.labels = self._relative(self.store(labels_stage, step))
        for key, value in extra.items():
            setattr(state, key, value)
        state.step, state.done, state.fit = step, {}, None
        if self.runtime.is_main:
            save_checkpoint(step_path(self._checkpoints(), step), state.to_dict())
            self.save()
            write_table(state.rows, self.output)
        self.runtime.log_timings(f"step {step}")
        self.runtime.log(format_table(state.rows))
        self.runtime.barrier()

    # -- label stores -------------------------------------------------------------------

    def store(self, stage: str, step: int) -> LabelStore:
        return LabelStore(os.path.join(self.output, "labels", f"step_{step}", stage))

    def store_of(self, relative: str) -> LabelStore:
        return LabelStore(os.path.join(self.output, relative))

    def _relative(self, store: LabelStore) -> str:
        return os.path.relpath(store.directory, self.output)

    # -- checkpoints (FitCheckpoints for fit()) -----------------------------------------

    def resume(self, phase: str) -> Optional[dict]:
        fit = self.state.fit
        return fit if fit is not None and fit["phase"] == phase else None

    def due(self) -> bool:
        elapsed = time.monotonic() - self.last_checkpoint
        return self.runtime.agree(elapsed >= 60 * self.config.run.checkpoint_minutes)

    def save(self, phase: Optional[str] = None, fit_state: Optional[dict] = None) -> None:
        """Writes checkpoints/latest.pt; with a training phase's state when inside one."""
        if phase is not None:
            self.state.fit = {"phase": phase, **fit_state}
            self.runtime.log(
                f"checkpoint: step {self.state.step + 1}, {phase} at iteration {fit_state['optimizer']['iteration']}"
            )
        if self.runtime.is_main:
            save_checkpoint(os.path.join(self._checkpoints(), LATEST), self.state.to_dict())
        self.last_checkpoint = time.monotonic()

    def _checkpoints(self) -> str:
        return os.path.join(self.output, "checkpoints")

    # -- outputs ------------------------------------------------------------------------

    def _record_timing(self, phase: str, seconds: float) -> None:
        """Appends to timings.json (phase, step, seconds): what benchmarks/scale.py reads."""
        if not self.runtime.is_main:
            return
        path = os.path.join(self.output, "timings.json")
        entries = json.load(open(path)) if os.path.isfile(path) else []
        entries.append({"step": self.state.step + 1, "phase": phase, "seconds": seconds})
        with open(path + ".tmp", "w") as handle:
            json.dump(entries, handle, indent=1)
        os.replace(path + ".tmp", path)

    def figure(self, step: int, stages: list, rows: list) -> Optional[str]:
        """Figure 6 for the first run.figure_images training images: their labels, read back
        from the seeds' store and this step's `stages`, and their ground truth; the scores of
        the step's table `rows` (and the seeds') with them."""
        count = min(self.config.run.figure_images, len(self.train_set))
        if count == 0 or not self.runtime.is_main:
            return None
        samples = [self.train_set[index] for index in range(count)]
        stores = {"seeds": self.store("seeds", 0), **{stage: self.store(stage, step) for stage in stages}}
        columns = {title: np.stack([store.read(index) for index in range(count)]) for title, store in stores.items()}
        columns["truth"] = np.stack([sample["mask"].numpy() for sample in samples])
        rgb = np.stack([sample["rgb"].numpy() for sample in samples])
        path = os.path.join(self.output, "figures", f"step_{step}.png")
        scores = {row["stage"]: row for row in (self.state.rows[:1] if step else []) + rows}
        scores["refined"] = scores.get("pairwise")
        val = next((row["val_miou"] for row in rows if row["val_miou"] is not None), None)
        heading = f"step {step}" + (f", val mIoU {100 * val:.1f}" if val is not None else ": the seeds")
        return save_step_figure(path, rgb, columns, self.train_set.palette, class_names=self.train_set.class_names,
                                heading=heading, captions={title: stage_caption(scores.get(title)) for title in columns})


def describe_progress(state: LoopState) -> str:
    """Where a checkpoint stands, in words."""
    step = state.step + 1
    if not state.done and state.fit is None:
        return f"after step {state.step}" if state.step >= 0 else "at the start"
    text = f"inside step {step}"
    if state.done:
        text += f" (done: {', '.join(state.done)})"
    if state.fit is not None:
        text += f", {state.fit['phase']} at iteration {state.fit['optimizer']['iteration']}"
    return text
