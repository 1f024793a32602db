"""Passes over a whole data set in eval mode, split across processes and gathered."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from ..runtime import Runtime
from ..seeds import IGNORE_INDEX


@torch.no_grad()
def label_maps(
    runtime: Runtime,
    dataset: Dataset,
    predict: Callable[[dict], Tensor],
    description: str,
    batch_size: int = 16,
    rows: Optional[int] = None,
) -> Tensor:
    """(rows, H, W) uint8 label maps, predict(batch) -> (b, H, W) int labels (255 unknown),
    written at each item's "index" (rows defaults to len(dataset); rows never predicted are 0)."""
    shard = list(runtime.shard(len(dataset)))
    first = dataset[0]["image"]
    # int32 so that the cross-process sum (zeros outside a process's shard) is exact on gloo.
    labels = torch.zeros(rows or len(dataset), *first.shape[-2:], dtype=torch.int32)
    loader = DataLoader(Subset(dataset, shard), batch_size=batch_size, shuffle=False)
    for batch in runtime.bar(loader, desc=description, leave=False):
        batch_labels = predict(to_device(batch, runtime.device))
        labels[batch["index"]] = batch_labels.to(torch.int32).cpu()
    return runtime.gather(labels).clamp_(0, IGNORE_INDEX).to(torch.uint8)


def to_device(batch: dict, device: torch.device) -> dict:
    return {key: value.to(device) if isinstance(value, Tensor) else value for key, value in batch.items()}

