"""Networks that can describe themselves as a plain dict and be rebuilt from it."""
from typing import Any

from torch import nn


class RebuildableNetwork(nn.Module):
    """Base of the project's networks: ``spec()`` gives ``{"class": name, "kwargs": {...}}``.

    The kwargs are plain Python values (ints, strings, lists, None) so a
    checkpoint can store them next to the state_dict. They never name the
    ImageNet weights file: a checkpoint's state_dict supersedes it, and a
    rebuild (for evaluation, export or resume) must not need that file. Options
    whose default depends on the weights (``freeze_batchnorm``) are stored
    resolved, so the rebuilt network trains the same way.
    """

    def _remember_kwargs(self, **kwargs: Any) -> None:
        self._spec_kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}

    def spec(self) -> dict:
        return {"class": type(self).__name__, "kwargs": dict(self._spec_kwargs)}


def check_num_classes(num_classes: int) -> None:
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"num_classes counts classes including background and must be an int >= 2, got {num_classes!r}"
        )
