import pytest
import torch

import ial_ext  # noqa: F401  (registers the ops)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def cuda_available() -> bool:
    return torch.cuda.is_available() and ial_ext.built_with_cuda()


requires_cuda = pytest.mark.skipif(
    not cuda_available(), reason="needs a CUDA device and a CUDA build of ial_ext"
)
