"""Checkpoints of every network at every step: written atomically, verified when read."""
from __future__ import annotations

import glob
import os
import re
import tempfile
from typing import Optional

import torch

FORMAT = "ial_ext.checkpoint/1"


class CorruptCheckpointError(ValueError):
    pass


def network_entry(network: torch.nn.Module) -> dict:
    """What rebuilds a network: its constructor spec and its weights."""
    return {"spec": network.spec(), "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()}}


def save_checkpoint(path: str, state: dict) -> None:
    """torch.save to a temporary file in the same directory, then an atomic rename: a kill
    leaves either the old file or the new one, never half of one."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".pt")
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


def load_checkpoint(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, garbage bytes, pickle errors
        raise CorruptCheckpointError(f"checkpoint {path} is corrupt or unreadable: {error}") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CorruptCheckpointError(f"{path} is not an ial_ext checkpoint (format {FORMAT})")
    return state


def step_path(directory: str, step: int) -> str:
    return os.path.join(directory, f"step_{step}.pt")


def latest_checkpoint(directory: str, report=print) -> Optional[dict]:
    """The newest step checkpoint that loads; corrupt ones are reported and skipped."""
    steps = []
    for path in glob.glob(os.path.join(directory, "step_*.pt")):
        match = re.fullmatch(r"step_(\d+)\.pt", os.path.basename(path))
        if match:
            steps.append((int(match.group(1)), path))
    for _, path in sorted(steps, reverse=True):
        try:
            return load_checkpoint(path)
        except CorruptCheckpointError as error:
            report(f"skipping {error}")
    return None


def load_segmenter(path: str) -> tuple[torch.nn.Module, Optional[torch.nn.Module], dict]:
    """(unary, pairwise or None, checkpoint) of a step checkpoint, in eval mode.

    The unary network comes wrapped in the multi-scale inference it was evaluated with
    (``unary_inference`` in the checkpoint), so it returns log-probabilities; pairwise is
    None in the no-pairwise ablation.
    """
    from ..models import MultiScaleUnary, build_model

    state = load_checkpoint(path)
    models = state.get("models", {})
    if "unary" not in models:
        raise ValueError(
            f"{path} holds no unary network (it has {sorted(models)}; step 0 checkpoints hold only the "
            "classifier): use a checkpoint of step 1 or later"
        )
    networks = {}
    for name in ("unary", "pairwise"):
        if name in models:
            network = build_model(models[name]["spec"])
            network.load_state_dict(models[name]["state_dict"])
            networks[name] = network.eval()
    unary = networks["unary"]
    inference = state.get("unary_inference")
    if inference is not None:
        unary = MultiScaleUnary(unary, inference["scales"], inference["flip"]).eval()
    return unary, networks.get("pairwise"), state
