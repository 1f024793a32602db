"""Checkpoints: written atomically, verified when read, found again on resume.

`checkpoints/latest.pt` is rewritten at the end of every phase and every `run.checkpoint_minutes`
inside one; `checkpoints/step_<t>.pt` stays behind after each complete step t, for `ial evaluate`,
`ial infer` and `ial export`. Both hold a `LoopState` (as a dict) and no labels.
"""
from __future__ import annotations

import glob
import os
import re
import tempfile
import zipfile
from typing import Optional

import torch

from ial_export.files import share_like_open

FORMAT = "ial_ext.checkpoint/2"
READABLE_FORMATS = (FORMAT, "ial_ext.checkpoint/1")  # /1 embedded the labels; its networks still load
LATEST = "latest.pt"


class CorruptCheckpointError(ValueError):
    pass


def network_entry(network: torch.nn.Module) -> dict:
    """What rebuilds a network: its constructor spec and its weights."""
    return {"spec": network.spec(), "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()}}


def rebuild(entry: dict) -> torch.nn.Module:
    """The network of a `network_entry`, in eval mode."""
    from ..models import build_model

    network = build_model(entry["spec"])
    network.load_state_dict(entry["state_dict"])
    return network.eval()


def save_checkpoint(path: str, state: dict) -> None:
    """torch.save to a temporary file in the same directory, then an atomic rename: a kill
    leaves either the old file or the new one, never half of one."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".pt")
    share_like_open(handle)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save({"format": FORMAT, **state}, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def load_checkpoint(path: str, formats: tuple = (FORMAT,)) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise CorruptCheckpointError(f"checkpoint {path} is corrupt or unreadable: not a file torch.save wrote "
                                     "(truncated, or another format)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, pickle errors; torch's message runs over many lines
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CorruptCheckpointError(f"checkpoint {path} is corrupt or unreadable: {reason}") from error
    if not isinstance(state, dict) or state.get("format") not in formats:
        raise CorruptCheckpointError(f"{path} is not an ial_ext checkpoint (format {formats[0]})")
    return state


def step_path(directory: str, step: int) -> str:
    return os.path.join(directory, f"step_{step}.pt")


def latest_checkpoint(directory: str, report=print) -> Optional[dict]:
    """The most advanced checkpoint that loads: `latest.pt`, unless the newest readable step
    checkpoint is of a later step (a kill between the two writes); corrupt files are
    reported and skipped."""
    steps = []
    for path in glob.glob(os.path.join(directory, "step_*.pt")):
        match = re.fullmatch(r"step_(\d+)\.pt", os.path.basename(path))
        if match:
            steps.append((int(match.group(1)), path))
    newest_step = None
    for _, path in sorted(steps, reverse=True):
        newest_step = _load_or_report(path, report)
        if newest_step is not None:
            break
    latest = _load_or_report(os.path.join(directory, LATEST), report)
    if latest is None or (newest_step is not None and newest_step["step"] > latest["step"]):
        return newest_step
    return latest


def _load_or_report(path: str, report) -> Optional[dict]:
    if not os.path.isfile(path):
        return None
    try:
        return load_checkpoint(path)
    except CorruptCheckpointError as error:
        report(f"skipping {error}")
        return None


def load_segmenter(path: str) -> tuple[torch.nn.Module, Optional[torch.nn.Module], dict]:
    """(unary, pairwise or None, checkpoint) of a step checkpoint, in eval mode.

    The unary network comes wrapped in the multi-scale inference it was evaluated with
    (``unary_inference`` in the checkpoint), so it returns log-probabilities; pairwise is
    None in the no-pairwise ablation. `Segmenter(unary, pairwise)` applies them.
    """
    from ..models import MultiScaleUnary

    state = load_checkpoint(path, READABLE_FORMATS)
    models = state.get("models", {})
    if "unary" not in models:
        raise ValueError(
            f"{path} holds no unary network (it has {sorted(models)}; step 0 checkpoints hold only the "
            "classifier): use a checkpoint of step 1 or later"
        )
    networks = {name: rebuild(models[name]) for name in ("unary", "pairwise") if name in models}
    unary = networks["unary"]
    inference = state.get("unary_inference")
    if inference is not None:
        unary = MultiScaleUnary(unary, inference["scales"], inference["flip"]).eval()
    return unary, networks.get("pairwise"), state
