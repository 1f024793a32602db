"""SGD with momentum under the poly learning-rate policy of eq. (10)."""
import torch

from .config import OptimConfig


def poly_learning_rate(base_lr: float, iteration: int, max_iterations: int, power: float) -> float:
    """eq. (10): lr_k = lr_b (1 - k / K)^tau."""
    return base_lr * (1 - iteration / max_iterations) ** power


class PolySGD:
    """An SGD optimizer whose learning rate follows eq. (10) over `config.iterations` steps."""

    def __init__(self, parameters, config: OptimConfig):
        self.config = config
        self.iteration = 0
        self.optimizer = torch.optim.SGD(
            [p for p in parameters if p.requires_grad],
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )

    def step(self, loss: torch.Tensor) -> float:
        lr = poly_learning_rate(self.config.lr, self.iteration, self.config.iterations, self.config.poly_power)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.iteration += 1
        return lr

    def state_dict(self) -> dict:
        """The schedule position and SGD's momentum buffers (for checkpoints inside a phase)."""
        return {"iteration": self.iteration, "sgd": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.iteration = int(state["iteration"])
        self.optimizer.load_state_dict(state["sgd"])
