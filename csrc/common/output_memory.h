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
// scan itself. When IAL_EXT_OUTPUT_CACHE_MB (read once) is above 0, outputs of
// 8 MiB and more come from a cache of up to that many MiB of blocks that earlier
// outputs freed (pages already mapped, advised as transparent huge pages on
// Linux). The cache is off by default: its blocks are invisible to torch's
// memory accounting, and a heap that keeps freed pages (the large-tensor heap,
// retain_freed_memory below) gives every tensor the same saving (README, "The
// ops"). Otherwise outputs are plain at::empty.
at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options);

// Gives the cached free blocks back to the system; returns their size in bytes.
size_t release_output_cache();

// With glibc: blocks below `bytes` come from the heap, and up to that much freed
// memory stays there for the next allocation (mallopt's M_MMAP_THRESHOLD and
// M_TRIM_THRESHOLD), for every tensor of the process. Returns whether it took
// effect (false for 0, or without glibc).
bool retain_freed_memory(size_t bytes);

} // namespace common
} // namespace ial
