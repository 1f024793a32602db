"""Weakly-supervised semantic segmentation by iterative affinity learning.

Importing the package registers the compiled ops under ``torch.ops.ial`` and
their autograd and fake (meta) kernels.
"""
import torch  # noqa: F401  (loads libtorch before the extension)

try:
    from . import _C
except ImportError as error:  # pragma: no cover - only without a build
    raise ImportError(
        "ial_ext._C is not built. Install the package with "
        "`pip install --no-build-isolation .` (or `make test`), "
        "after installing torch."
    ) from error

from . import ops  # noqa: E402  (registers autograd and fake kernels)
from . import nn  # noqa: E402

__version__ = "0.1.0"


def built_with_cuda() -> bool:
    """True when the CUDA kernels were compiled into this build."""
    return _C.built_with_cuda()


def release_output_cache() -> int:
    """Frees the blocks kept for reuse by large CPU op outputs; returns the bytes freed.

    CPU ops take outputs of 8 MiB and more from a cache of blocks that earlier outputs
    freed, which spares the OS clearing fresh pages on every call. The cache holds at
    most IAL_EXT_OUTPUT_CACHE_MB MiB of free blocks (default 1024; 0 turns it off)."""
    return _C.release_output_cache()


__all__ = ["ops", "nn", "built_with_cuda", "release_output_cache", "__version__"]
