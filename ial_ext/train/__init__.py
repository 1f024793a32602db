"""The trainer: the EM loop of Algorithm 1 and its steps, losses, metrics and checkpoints."""
from .config import Config, load_config

__all__ = ["Config", "load_config", "run_em"]


def __getattr__(name):
    # The loop pulls in the models and data packages; importing the config alone stays light.
    if name == "run_em":
        from .em import run_em

        return run_em
    raise AttributeError(name)
