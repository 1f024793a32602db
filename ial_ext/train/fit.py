"""What training any of the four networks takes, written once: seed, build, warm start, wrap,
optimizer, batches, iterations, and the checkpoints inside the phase that let a killed run
continue at the iteration it had reached."""
from __future__ import annotations

import random
from typing import Callable, Optional, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from .config import OptimConfig
from .optim import ScheduledSGD
from .passes import autocast, to_device
from .runtime import Runtime

LOSS_SHOWN_EVERY = 10  # .item() waits for the device; reading it every step would stall a GPU
CHECKPOINT_CHECKED_EVERY = 10  # iterations between two looks at the clock (a collective under DDP)


class FitCheckpoints(Protocol):
    """Where fit() keeps the state of the phase in progress (the loop's checkpoints)."""

    def resume(self, phase: str) -> Optional[dict]:
        """The saved state of `phase` if the run is resuming inside it."""

    def due(self) -> bool:
        """Whether it is time for a checkpoint (the same answer on every process)."""

    def save(self, phase: str, state: dict) -> None:
        """Checkpoints the run with `state` as the phase in progress."""


def fit(
    runtime: Runtime,
    stream: tuple,
    build: Callable[[], nn.Module],
    view: Dataset,
    optim: OptimConfig,
    loss_of: Callable[[nn.Module, dict], Tensor],
    description: str,
    previous: Optional[nn.Module] = None,
    train_module: Callable[[nn.Module], nn.Module] = lambda network: network,
    checkpoints: Optional[FitCheckpoints] = None,
) -> nn.Module:
    """Trains build()'s network for `optim.iterations` SGD steps of loss_of(model, batch) on
    shuffled batches of `view`, and returns it in eval mode.

    `stream` names the phase (("unary", step), ...): it seeds the weights' initialisation and
    the batches, so a phase gives the same network whether or not the run was resumed.
    `previous` warm-starts the network. `train_module(network)` is what the optimizer and DDP
    see (a wrapper whose forward returns all the loss needs). With `checkpoints`, the weights,
    optimizer, schedule position and RNG states are saved every so often and restored when the
    run resumes inside this phase; the data order needs only the iteration.
    """
    phase = "/".join(str(part) for part in stream)
    runtime.seed_everything(*stream)
    network = build()
    if previous is not None:
        network.load_state_dict(previous.state_dict())
    saved = checkpoints.resume(phase) if checkpoints is not None else None
    if saved is not None:
        network.load_state_dict(saved["network"])
    model = runtime.wrap(train_module(network))
    model.train()
    scaler = torch.amp.GradScaler(runtime.device.type) if runtime.precision == "float16" else None
    optimizer = ScheduledSGD(model.parameters(), optim, scaler)
    if runtime.compile:
        model = torch.compile(model)
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        restore_rng(saved["rng"])
        runtime.log(f"{description}: resuming at iteration {optimizer.iteration} of {optim.iterations}")
    batches = runtime.training_batches(view, optim.batch_size, *stream, start=optimizer.iteration)
    progress = runtime.bar(range(optimizer.iteration, optim.iterations), desc=description)
    for iteration in progress:
        batch = to_device(next(batches), runtime.device)
        with autocast(runtime):
            loss = loss_of(model, batch)
        optimizer.step(loss)
        if iteration % LOSS_SHOWN_EVERY == 0:
            progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        done = iteration + 1
        if checkpoints is not None and done % CHECKPOINT_CHECKED_EVERY == 0 and done < optim.iterations:
            if checkpoints.due():
                checkpoints.save(phase, {
                    "network": {k: v.detach().to("cpu", copy=True) for k, v in network.state_dict().items()},
                    "optimizer": optimizer.state_dict(),
                    "rng": rng_state(),
                })
    return network.eval()


def rng_state() -> dict:
    """torch (CPU and this device's CUDA), numpy and random states, in types a weights-only
    torch.load reads back. Every process seeds and draws alike, so one copy serves all."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "random": [version, list(internal), gauss_next],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    version, internal, gauss_next = state["random"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
