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


def retain_freed_memory(limit_mib: int) -> bool:
    """Keeps freed CPU memory in the process for the next allocation, for every tensor.

    With glibc's defaults a block of 32 MiB or more (a (4, 21, 321, 321) float32 map is 33
    MiB) is mapped afresh for each allocation, and the heap's free top goes back to the OS past
    64 MiB: a training loop then touches much of its memory for the first time in every
    iteration, and the OS clears each page. This raises both of glibc's thresholds (mallopt) to
    `limit_mib` MiB, so freed blocks stay in the heap and are reused, and the ops' large outputs
    come from that heap too. The trainer calls it (run.retained_heap_mib, 256). Returns whether it
    took effect: False for 0 and without glibc (musl, macOS, Windows), whose allocators keep
    their own policy."""
    return bool(limit_mib > 0 and _C.retain_freed_memory(int(limit_mib) << 20))


def use_large_tensor_heap() -> bool:
    """Takes every CPU tensor of 1 MiB and more, for the rest of the process, from a heap that
    holds only such blocks and keeps their pages for the next one (Linux).

    In glibc's heap small long-lived blocks pin holes between the large ones, and a training
    loop's peak RSS climbs from one iteration to the next; here large blocks meet only large
    ones, and freed neighbours merge. Its pages stay mapped, as the retained heap's do (no page
    is cleared twice); `release_large_tensor_pages()` gives the free ones back. The trainer calls
    it on the CPU (run.large_tensor_heap). Returns whether it is torch's CPU allocator now."""
    return bool(_C.install_large_block_heap())


def release_large_tensor_pages() -> int:
    """Gives the free pages of the large-tensor heap back to the OS; returns their bytes."""
    return _C.release_large_block_pages()


def cpu_info() -> dict:
    """What the CPU kernels run on: ``isa`` ("avx512", "avx2" or "default", after torch's
    ATEN_CPU_CAPABILITY), the cache sizes their tiling follows (bytes), and
    ``streaming_store_bytes``: outputs larger than that are written around the caches."""
    return dict(_C.cpu_info())


__all__ = [
    "ops", "nn", "built_with_cuda", "cpu_info", "release_output_cache", "retain_freed_memory",
    "use_large_tensor_heap", "release_large_tensor_pages", "__version__",
]
