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
// scan itself. So outputs of 8 MiB and more are advised as transparent huge
// pages on Linux (512-fold fewer faults), and, when IAL_EXT_OUTPUT_CACHE_MB
// (read once) is above 0, come from a cache of up to that many MiB of blocks
// that earlier outputs freed (pages already mapped). The cache is off by
// default: its blocks are invisible to torch's memory accounting, and an
// allocator that keeps freed pages (jemalloc, glibc's M_MMAP_THRESHOLD) gives
// every op the same saving (README, "The ops"). Smaller outputs are plain at::empty.
at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options);

// Gives the cached free blocks back to the system; returns their size in bytes.
size_t release_output_cache();

} // namespace common
} // namespace ial
