"""The run folder: a fresh run, a resumed one, or a refusal, decided before anything is written.

    <output_dir>/config.json        the run's settings (what `--run.resume` continues with)
    <output_dir>/checkpoints/       latest.pt and step_<t>.pt
    <output_dir>/labels/            the label stores of every step
    <output_dir>/figures/ table.csv table.json timings.json
    <output_dir>/superpixels/       the superpixel cache (kept by --run.overwrite: it is keyed by content)
"""
from __future__ import annotations

import os
import shutil
from typing import Optional

from ..models import PairwiseNetwork
from .checkpoint import latest_checkpoint
from .config import Config, apply_overrides, load_settings
from .runtime import Runtime

CONFIG_FILE = "config.json"
# What a run writes, and --run.overwrite removes.
RUN_FILES = ("config.json", "table.csv", "table.json", "timings.json")
RUN_FOLDERS = ("checkpoints", "labels", "figures")
# Settings that may change between a run and its resumption without changing its results
# (the thread count and device change the last bits of the arithmetic, as documented).
RESUMABLE_CHANGES = {
    "run.resume", "run.overwrite", "run.output_dir", "run.progress", "run.threads", "run.device", "run.workers",
    "run.retained_heap_mib", "run.large_tensor_heap",
    "run.checkpoint_minutes", "run.figure_images", "mining.cache_dir", "loop.steps",
}


# Settings added since runs were first saved, with the value such a run used: a run folder
# saved before a setting existed resumes as it was trained. They are the pairwise network's
# options, model.pairwise_<option>, whose checkpoints rebuild the same way.
SETTINGS_BEFORE_THEY_EXISTED = {
    f"model.pairwise_{option}": value for option, value in PairwiseNetwork.SPEC_DEFAULTS_BEFORE_OPTION.items()
}


def saved_config(path: str) -> Config:
    """The settings of a run's config.json, SETTINGS_BEFORE_THEY_EXISTED filling what it lacks."""
    return apply_overrides(Config(), {**SETTINGS_BEFORE_THEY_EXISTED, **load_settings(path)})


def resumed_config(output_dir: str, settings: dict) -> Config:
    """The saved settings of the run in `output_dir` with `settings` (dotted names, those
    given explicitly) on top; the defaults with `settings` if the folder holds no run."""
    path = os.path.join(output_dir, CONFIG_FILE)
    config = saved_config(path) if os.path.isfile(path) else Config()
    return apply_overrides(config, {**settings, "run.output_dir": output_dir, "run.resume": True})


def open_run(config: Config, runtime: Runtime) -> Optional[dict]:
    """Checks `config` against the folder, then (rank 0) saves it there; returns the
    checkpoint to resume from, or None for a fresh start.

    Refused, with nothing written: a fresh run into a folder that holds a run (unless
    run.overwrite), and a resumption whose settings differ from the saved ones in more than
    RESUMABLE_CHANGES.
    """
    folder = config.run.output_dir
    checkpoints = os.path.join(folder, "checkpoints")
    saved = None
    if config.run.resume:
        state = latest_checkpoint(checkpoints, runtime.log)
        path = os.path.join(folder, CONFIG_FILE)
        saved = saved_config(path).to_dict() if os.path.isfile(path) else (state or {}).get("config")
        if saved is not None:
            check_resumable(saved, config)
        if state is None:
            runtime.log(f"no checkpoint to resume from in {checkpoints}: starting at step 0")
    else:
        state = None
        if holds_run(folder) and not config.run.overwrite:
            raise FileExistsError(
                f"{folder} already holds a run: continue it with --run.resume, or start over with --run.overwrite"
            )
    runtime.barrier()  # every process has looked before the folder changes
    if runtime.is_main:
        if not config.run.resume and config.run.overwrite:
            clear_run(folder)
        os.makedirs(folder, exist_ok=True)
        recorded = Config.from_dict(config.to_dict())
        recorded.run.resume = recorded.run.overwrite = False
        recorded.save(os.path.join(folder, CONFIG_FILE))
    runtime.barrier()
    return state


def check_resumable(saved: dict, config: Config) -> None:
    current = config.to_dict()
    changed = [
        f"{section}.{key}"
        for section, values in saved.items()
        for key, value in values.items()
        if current.get(section, {}).get(key) != value and f"{section}.{key}" not in RESUMABLE_CHANGES
    ]
    if changed:
        raise ValueError(
            f"--run.resume with settings that differ from the run's in {config.run.output_dir}: "
            + ", ".join(f"{name} (saved {_saved_value(saved, name)!r})" for name in sorted(changed))
        )


def _saved_value(saved: dict, name: str):
    section, key = name.split(".")
    return saved[section][key]


def holds_run(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, CONFIG_FILE)) or any(
        os.path.isdir(os.path.join(folder, name)) and os.listdir(os.path.join(folder, name))
        for name in ("checkpoints", "labels")
    )


def clear_run(folder: str) -> None:
    for name in RUN_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            os.unlink(path)
    for name in RUN_FOLDERS:
        shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
