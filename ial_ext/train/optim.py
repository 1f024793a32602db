"""SGD with momentum under the learning-rate schedules of section 4.2: poly (eq. 10) for the
unary and pairwise networks, step (eq. 11) for the region confidence network; with a gradient
scaler when training in float16."""
from typing import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

from .config import OptimConfig

SCHEDULES = ("poly", "step")


def poly_learning_rate(base_lr: float, iteration: int, max_iterations: int, power: float) -> float:
    """eq. (10): lr_k = lr_b (1 - k / K)^tau."""
    return base_lr * (1 - iteration / max_iterations) ** power


def step_learning_rate(base_lr: float, iteration: int, step_size: int, gamma: float) -> float:
    """eq. (11): lr_k = lr_b gamma^floor(k / S)."""
    return base_lr * gamma ** (iteration // step_size)


def schedule_factor(config: OptimConfig) -> Callable[[int], float]:
    """k -> lr_k / lr_b for `config.schedule`."""
    if config.schedule == "poly":
        return lambda k: poly_learning_rate(1.0, min(k, config.iterations), config.iterations, config.poly_power)
    if config.schedule == "step":
        if config.step_size < 1:
            raise ValueError(f"step_size of the step schedule must be >= 1, got {config.step_size}")
        return lambda k: step_learning_rate(1.0, k, config.step_size, config.gamma)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {config.schedule!r}")


class ScheduledSGD:
    """SGD whose learning rate follows `config.schedule` (torch's LambdaLR over the closed
    forms above), one step per iteration. With a `scaler` (float16 training) the loss is
    scaled before backward and steps with non-finite gradients are skipped, as
    torch.amp.GradScaler does; the schedule advances either way."""

    def __init__(self, parameters, config: OptimConfig, scaler: torch.amp.GradScaler | None = None):
        self.config = config
        self.factor = schedule_factor(config)
        self.scaler = scaler
        self.optimizer = torch.optim.SGD(
            [p for p in parameters if p.requires_grad],
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
        self.scheduler = LambdaLR(self.optimizer, self.factor)

    @property
    def iteration(self) -> int:
        return self.scheduler.last_epoch

    def step(self, loss: torch.Tensor) -> float:
        """Backward and one SGD step at this iteration's learning rate (which it returns)."""
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.scheduler.step()
        return lr

    def state_dict(self) -> dict:
        """The schedule position, SGD's momentum buffers and the gradient scaler's state (for
        checkpoints inside a phase)."""
        state = {"iteration": self.iteration, "sgd": self.optimizer.state_dict()}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["sgd"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        # The schedule is a function of the iteration alone: rebuilt there, it sets the rate
        # (checkpoints written before the scheduler hold only the iteration).
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] = self.config.lr
        self.scheduler = LambdaLR(self.optimizer, self.factor, last_epoch=int(state["iteration"]) - 1)
