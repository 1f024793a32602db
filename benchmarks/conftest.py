import pytest
import torch

import ial_ext  # noqa: F401  (registers the ops)

# The acceptance figures are for 2 CPU threads; CUDA rows ignore this.
CPU_THREADS = 2


@pytest.fixture(autouse=True, scope="session")
def _threads():
    torch.set_num_threads(CPU_THREADS)


def device_sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def devices():
    found = ["cpu"]
    if torch.cuda.is_available() and ial_ext.built_with_cuda():
        found.append("cuda")
    return found
