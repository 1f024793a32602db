"""Passes over a data set in eval mode: labels predicted per batch, written to a label store,
scored against the ground truth of the same batch. Each process takes its own shard; only
the score counts, (C, C + 1) and (C,), are summed across processes."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from .label_store import LabelStore
from .losses import class_pixel_counts
from .metrics import ConfusionMatrix
from .runtime import Runtime

PASS_BATCH_SIZE = 16
AUTOCAST_DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class PassResult:
    """The scores of a pass: its confusion matrix against the ground truth, and how many
    pixels of each class it labelled (over all pixels, for the class balance of training)."""

    confusion: ConfusionMatrix
    class_pixels: Tensor

    def summary(self) -> dict:
        return {"confusion": self.confusion.counts.cpu().tolist(), "class_pixels": self.class_pixels.cpu().tolist()}

    @classmethod
    def from_summary(cls, summary: dict) -> "PassResult":
        counts = torch.tensor(summary["confusion"], dtype=torch.int64)
        return cls(ConfusionMatrix(counts.shape[0], counts=counts), torch.tensor(summary["class_pixels"]))

    def __add__(self, other: "PassResult") -> "PassResult":
        confusion = ConfusionMatrix(self.confusion.num_classes, counts=self.confusion.counts + other.confusion.counts)
        return PassResult(confusion, self.class_pixels + other.class_pixels)


@torch.no_grad()
def label_pass(
    runtime: Runtime,
    view: Dataset,
    predict: Callable[[dict], Tensor],
    num_classes: int,
    description: str,
    store: Optional[LabelStore] = None,
    key: str = "",
) -> PassResult:
    """predict(batch on the device) -> (b, H, W) labels (255 unknown) for every image of
    `view`, written to `store` (when given) and scored where the batch has a "mask".

    A store that `key` prepared before is continued: batches whose labels all read back
    are not predicted again. The store is marked complete at the end.
    """
    if store is not None:
        if runtime.is_main:
            store.prepare(key)
        runtime.barrier()
    confusion = ConfusionMatrix(num_classes, runtime.device)
    class_pixels = torch.zeros(num_classes, dtype=torch.int64, device=runtime.device)
    for batch in runtime.pass_batches(view, PASS_BATCH_SIZE, description):
        indices = batch["index"].tolist()
        stored = [store.read_if_present(index) for index in indices] if store is not None else [None]
        if all(labels is not None for labels in stored):
            labels = torch.from_numpy(np.stack(stored)).to(runtime.device)
        else:
            with autocast(runtime):
                labels = predict(to_device(batch, runtime.device)).to(torch.uint8)
            if store is not None:
                for index, image_labels in zip(indices, labels.cpu().numpy()):
                    store.write(index, image_labels)
        if "mask" in batch:
            confusion.update(labels, batch["mask"])
        class_pixels += class_pixel_counts(labels, num_classes)
    runtime.all_reduce(confusion.counts)
    runtime.all_reduce(class_pixels)
    result = PassResult(confusion, class_pixels)
    if store is not None:
        runtime.barrier()
        if runtime.is_main:
            store.finish(result.summary())
    return result


def autocast(runtime: Runtime) -> torch.autocast:
    """torch.autocast at `runtime.precision` on the run's device (off for float32). The ial ops
    run in float32 under it whatever they are given (ial_ext/ops/autocast.py)."""
    if runtime.precision not in AUTOCAST_DTYPES:
        raise ValueError(f"run.precision must be one of {sorted(AUTOCAST_DTYPES)}, got {runtime.precision!r}")
    dtype = AUTOCAST_DTYPES[runtime.precision]
    return torch.autocast(runtime.device.type, dtype=dtype, enabled=dtype is not None)


def to_device(batch: dict, device: torch.device) -> dict:
    non_blocking = device.type == "cuda"
    return {
        key: value.to(device, non_blocking=non_blocking) if isinstance(value, Tensor) else value
        for key, value in batch.items()
    }


def fingerprint(*networks: Optional[nn.Module]) -> str:
    """A digest of networks' weights: the key under which a pass writes a label store."""
    digest = hashlib.sha256()
    for network in networks:
        if network is None:
            continue
        for name, value in network.state_dict().items():
            digest.update(name.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
