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

    With IAL_EXT_OUTPUT_CACHE_MB set above 0 (it is off by default), CPU ops take
    outputs of 8 MiB and more from a cache of up to that many MiB of blocks that earlier
    outputs freed, which spares the OS clearing fresh pages on every call."""
    return _C.release_output_cache()


def cpu_info() -> dict:
    """What the CPU kernels run on: ``isa`` ("avx512", "avx2" or "default", after torch's
    ATEN_CPU_CAPABILITY) and the cache sizes their tiling follows (bytes)."""
    return dict(_C.cpu_info())


__all__ = ["ops", "nn", "built_with_cuda", "cpu_info", "release_output_cache", "__version__"]
