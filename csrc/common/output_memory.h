// Allocation of the large CPU tensors the kernels write from scratch.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>

namespace ial {
namespace common {

// at::empty for a CPU output every element of which the caller writes.
//
// A fresh large allocation is fresh pages, and the kernel's first touch of each
// page makes the OS clear it: with 4 KiB pages that costs about as much as the
// scan itself, and more than the whole kernel for scans that write in column
// tiles. So outputs of 8 MiB and more come from a cache of blocks that earlier
// outputs freed (pages already mapped), and a block that has to be made anew is
// advised as transparent huge pages on Linux, which cuts its faults 512-fold.
// The cache keeps at most IAL_EXT_OUTPUT_CACHE_MB MiB of free blocks (read once,
// default 1024); 0 turns it off. Smaller outputs are plain at::empty.
at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options);

// Gives the cached free blocks back to the system; returns their size in bytes.
size_t release_output_cache();

} // namespace common
} // namespace ial
