"""The order in which a training phase sees its images, and which of them it mirrors.

Both are drawn here, in the main process, from the phase's seed and the epoch alone: the
batches do not depend on the number of DataLoader workers, and a phase resumed at iteration
k is handed exactly the batches it would have seen, with nothing but k saved.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


class ShuffledBatches(Sampler):
    """Endless batches of (position, flip) pairs over `size` items, from iteration `start` on.

    Each epoch is a fresh permutation with a fair coin per item for the horizontal flip.
    Under DDP every process takes every world_size-th item of the permutation, its tail cut
    to a multiple of world_size (DistributedSampler's drop_last), so the processes never
    share an item within an epoch; incomplete batches at an epoch's end are dropped.
    """

    def __init__(
        self, size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, start: int = 0,
        flip: bool = True,
    ):
        per_process = size // world_size
        if per_process < 1:
            raise ValueError(f"{size} training images cannot be shared by {world_size} processes")
        self.size = size
        self.batch_size = min(batch_size, per_process)
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start = start
        self.flip = flip
        self.batches_per_epoch = per_process // self.batch_size

    def epoch(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(positions, flips) of this process in one epoch."""
        generator = torch.Generator().manual_seed((self.seed + epoch) % 2**63)
        order = torch.randperm(self.size, generator=generator)
        flips = torch.rand(self.size, generator=generator) < 0.5
        if not self.flip:
            flips.zero_()
        kept = (self.size // self.world_size) * self.world_size
        share = slice(self.rank, kept, self.world_size)
        return order[:kept][share], flips[:kept][share]

    def __iter__(self) -> Iterator[list[tuple[int, bool]]]:
        iteration = self.start
        epoch, order, flips = None, None, None
        while True:
            current, position = divmod(iteration, self.batches_per_epoch)
            if current != epoch:
                epoch = current
                order, flips = self.epoch(epoch)
            window = slice(position * self.batch_size, (position + 1) * self.batch_size)
            yield list(zip(order[window].tolist(), flips[window].tolist()))
            iteration += 1


class ShardBatches(Sampler):
    """Batches of positions over this process's shard of a pass (every world_size-th item)."""

    def __init__(self, size: int, batch_size: int, rank: int = 0, world_size: int = 1):
        self.positions = range(rank, size, world_size)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-len(self.positions) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        for first in range(0, len(self.positions), self.batch_size):
            yield list(self.positions[first: first + self.batch_size])
