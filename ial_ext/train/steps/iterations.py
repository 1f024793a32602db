"""The training loop every network shares: batches in, one optimizer step per iteration."""
from __future__ import annotations

from typing import Callable, Iterator

from torch import Tensor

from ..optim import PolySGD
from ..runtime import Runtime
from .inference import to_device

LOSS_SHOWN_EVERY = 10  # .item() waits for the device; reading it every step would stall a GPU


def run_iterations(
    runtime: Runtime,
    optimizer: PolySGD,
    batches: Iterator[dict],
    description: str,
    loss_of: Callable[[dict], Tensor],
) -> None:
    """`optimizer.config.iterations` steps of loss_of(batch on the run's device), with a progress bar."""
    progress = runtime.bar(range(optimizer.config.iterations), desc=description)
    for iteration in progress:
        loss = loss_of(to_device(next(batches), runtime.device))
        optimizer.step(loss)
        if iteration % LOSS_SHOWN_EVERY == 0:
            progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
