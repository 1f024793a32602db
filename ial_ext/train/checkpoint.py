"""Checkpoints of every network at every step: written atomically, verified when read."""
from __future__ import annotations

import glob
import os
import re
import tempfile
from typing import Optional

import torch

FORMAT = "ial_ext.checkpoint/1"


class CorruptCheckpointError(RuntimeError):
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
