"""Where a run executes: device, process group (torchrun), progress bars, seeded loaders."""
from __future__ import annotations

import contextlib
import os
import random
import time
from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from .config import RunConfig


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    progress: bool = True
    seed: int = 0
    timings: dict = field(default_factory=dict)  # phase -> seconds, for the log

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def seed_everything(self, *stream: object) -> int:
        """Seeds torch, numpy and random for one phase of the run, from the run seed and
        the phase's name: a phase gives the same result whether or not the run was resumed."""
        seed = _derive_seed(self.seed, *stream)
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        return seed

    def bar(self, iterable=None, **kwargs):
        return tqdm(iterable, disable=not (self.progress and self.is_main), dynamic_ncols=True, **kwargs)

    @contextlib.contextmanager
    def timed(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - start

    def log_timings(self, heading: str) -> None:
        """Logs and clears the phase times gathered since the last call."""
        parts = ", ".join(f"{phase} {seconds:.0f} s" for phase, seconds in self.timings.items())
        self.log(f"{heading}: {parts}")
        self.timings.clear()

    def log(self, message: str) -> None:
        if self.is_main:
            tqdm.write(message)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model to train: DDP across processes, the module itself otherwise."""
        model = model.to(self.device)
        if not self.distributed:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def training_batches(self, dataset: Dataset, batch_size: int, *stream: object) -> Iterator[dict]:
        """Endless shuffled batches (this process's share under DDP), reproducible by stream."""
        seed = _derive_seed(self.seed, "batches", *stream)
        sampler = None
        generator = torch.Generator().manual_seed(seed)
        if self.distributed:
            sampler = DistributedSampler(dataset, self.world_size, self.rank, shuffle=True, seed=seed, drop_last=True)
        per_process = max(1, batch_size // self.world_size)
        loader = DataLoader(
            dataset,
            batch_size=min(per_process, len(dataset)),
            shuffle=sampler is None,
            sampler=sampler,
            generator=generator,
            drop_last=True,
        )
        epoch = 0
        while True:
            if sampler is not None:
                sampler.set_epoch(epoch)
            yield from loader
            epoch += 1

    def shard(self, size: int) -> range:
        """The indices of 0..size-1 this process handles in a pass over the data set."""
        return range(self.rank, size, self.world_size)

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sums a tensor over processes; each process filled the rows of its shard, zeros elsewhere."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def _derive_seed(seed: int, *stream: object) -> int:
    text = "/".join(str(part) for part in (seed, *stream))
    value = 1469598103934665603  # FNV-1a: stable across processes, unlike hash()
    for byte in text.encode():
        value = ((value ^ byte) * 1099511628211) % 2**64
    return value % 2**63


def create_runtime(config: RunConfig) -> Runtime:
    """Joins the torchrun process group when launched by torchrun (RANK/WORLD_SIZE set)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(config.device, local_rank)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return Runtime(device=device, rank=rank, world_size=world_size, progress=config.progress, seed=config.seed)


def close_runtime(runtime: Optional[Runtime]) -> None:
    if runtime is not None and runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def pick_device(choice: str, local_rank: int) -> torch.device:
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("run.device=cuda but torch sees no CUDA device")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if choice != "cpu":
        raise ValueError(f"run.device must be auto, cpu or cuda, got {choice!r}")
    return torch.device("cpu")
