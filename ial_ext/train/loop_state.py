"""Where the EM loop stands: what a checkpoint holds, and all a resumed run needs.

No labels: those are in label stores on disk (`labels/step_<t>/<stage>/`), named here by their
path relative to the run folder, so a moved run folder still resumes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from .checkpoint import rebuild


@dataclass
class LoopState:
    config: dict
    num_classes: int
    class_names: list
    step: int = -1  # the last complete step (0: the seeds); the loop works on step + 1
    rows: list = field(default_factory=list)  # Table 5 rows of the complete steps
    labels: Optional[str] = None  # the store that supervises the next unary network
    models: dict = field(default_factory=dict)  # name -> network entry, of the last complete step
    unary_inference: Optional[dict] = None  # the scales and flip the unary network is applied with
    done: dict = field(default_factory=dict)  # phase -> result, for the step in progress
    fit: Optional[dict] = None  # the training phase in progress: {"phase": name, weights, optimizer, RNG}

    def to_dict(self) -> dict:
        return {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict) -> "LoopState":
        names = {item.name for item in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})

    def previous_networks(self) -> dict:
        """The networks of the last complete step, in eval mode (for warm starts)."""
        return {name: rebuild(entry) for name, entry in self.models.items()}

