"""Where a run executes: device, process group (torchrun), progress bars, seeded loaders, collectives."""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .. import retain_freed_memory, use_large_tensor_heap
from .config import RunConfig
from .sampling import ShardBatches, ShuffledBatches


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    progress: bool = True
    seed: int = 0
    workers: int = 0  # DataLoader worker processes
    precision: str = "float32"  # RunConfig.precision: the autocast dtype of training and passes
    compile: bool = False  # RunConfig.compile: torch.compile of the networks fit() trains
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

    def loader(self, dataset: Dataset, batch_sampler, *stream: object) -> DataLoader:
        """A DataLoader over `batch_sampler`'s batches with the run's workers. Its generator
        seeds the workers, so creating it leaves the global random state alone."""
        cuda = self.device.type == "cuda"
        return DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            num_workers=self.workers,
            pin_memory=cuda,
            persistent_workers=cuda and self.workers > 0,
            worker_init_fn=_seed_worker,
            generator=torch.Generator().manual_seed(_derive_seed(self.seed, "workers", *stream)),
        )

    def training_batches(
        self, dataset: Dataset, batch_size: int, *stream: object, start: int = 0
    ) -> Iterator[dict]:
        """Endless shuffled batches (this process's share under DDP), reproducible by stream,
        from iteration `start` on; the dataset is indexed by (position, flip) pairs."""
        sampler = ShuffledBatches(
            len(dataset), max(1, batch_size // self.world_size), _derive_seed(self.seed, "batches", *stream),
            self.rank, self.world_size, start,
        )
        return iter(self.loader(dataset, sampler, *stream))

    def pass_batches(self, dataset: Dataset, batch_size: int, description: str) -> Iterator[dict]:
        """This process's shard of a pass over `dataset`, in order, with a progress bar."""
        batches = ShardBatches(len(dataset), batch_size, self.rank, self.world_size)
        return self.bar(self.loader(dataset, batches, "pass"), desc=description, leave=False)

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sums a (small) tensor over processes, in place. Under NCCL it must live on the
        device; the group also has a gloo backend for CPU tensors."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def agree(self, flag: bool) -> bool:
        """Rank 0's `flag` on every process (for decisions taken by one clock)."""
        if not self.distributed:
            return flag
        value = torch.tensor([int(flag)], device=self.device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    def barrier(self) -> None:
        if self.distributed:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()


def _seed_worker(worker_id: int) -> None:
    """numpy and random in a worker follow torch's per-worker seed. What must not depend on
    the number of workers (data order, flips) is drawn in the main process instead."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def default_workers(device: torch.device, local_processes: int = 1) -> int:
    """Loader workers per process, from the CPUs this process may use (shared by the processes
    of the machine). A GPU leaves the CPUs to loading: all but one, at most 8. On the CPU the
    workers take cores from torch's compute threads: none below 4 CPUs (on 2 cores one worker
    made the demo's steps 13% slower), else a quarter of them."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_process = max(1, cpus // max(1, local_processes))
    if device.type == "cuda":
        return min(8, per_process - 1)
    return 0 if per_process < 4 else min(8, per_process // 4)


def _derive_seed(seed: int, *stream: object) -> int:
    text = "/".join(str(part) for part in (seed, *stream))
    value = 1469598103934665603  # FNV-1a: stable across processes, unlike hash()
    for byte in text.encode():
        value = ((value ^ byte) * 1099511628211) % 2**64
    return value % 2**63


def keep_freed_cpu_memory(config: RunConfig) -> dict:
    """The trainer's CPU memory settings for this process (run.large_tensor_heap,
    run.retained_heap_mib); returns those that took effect."""
    heap = config.large_tensor_heap and use_large_tensor_heap()
    retained = retain_freed_memory(config.retained_heap_mib)
    return {"large_tensor_heap": heap, "retained_heap_mib": config.retained_heap_mib if retained else 0}


def create_runtime(config: RunConfig) -> Runtime:
    """Joins the torchrun process group when launched by torchrun (RANK/WORLD_SIZE set)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(config.device, local_rank)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    if device.type == "cpu":
        keep_freed_cpu_memory(config)
    if world_size > 1 and not dist.is_initialized():
        # Both backends: the few collectives (score counts, decisions) may meet CPU tensors too.
        backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    torch.use_deterministic_algorithms(True, warn_only=True)
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    workers = config.workers if config.workers >= 0 else default_workers(device, local_processes)
    return Runtime(
        device=device, rank=rank, world_size=world_size, progress=config.progress, seed=config.seed, workers=workers,
        precision=config.precision, compile=config.compile,
    )


def close_runtime(runtime: Optional[Runtime]) -> None:
    if runtime is not None and runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def pick_device(choice: str, local_rank: int) -> torch.device:
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" or choice.startswith("cuda:"):
        index = local_rank if choice == "cuda" else int(choice.split(":")[1])
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise ValueError(f"run.device={choice} but torch sees {torch.cuda.device_count()} CUDA device(s)")
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    if choice != "cpu":
        raise ValueError(f"run.device must be auto, cpu, cuda or cuda:N, got {choice!r}")
    return torch.device("cpu")
