// Allocation of the large tensors the CPU kernels write from scratch.
#pragma once

#include <ATen/core/Tensor.h>

namespace ial {
namespace spn {
namespace cpu {

// at::empty for an output every element of which the caller writes exactly
// once. Large outputs are fresh pages, and the kernel's first touch of each
// page makes the OS clear it; with 4 KiB pages that costs more than the scan
// itself. On Linux the 2 MiB-aligned part of a large output is advised as a
// transparent huge page region (what torch's THP_MEM_ALLOC_ENABLE=1 does for
// every large tensor), which cuts the faults 512-fold. The advice only
// changes page size; it has no effect where THP is disabled system-wide.
at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options);

} // namespace cpu
} // namespace spn
} // namespace ial
