#include "output_memory.h"

#include <ATen/ops/empty.h>

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace ial {
namespace spn {
namespace cpu {
namespace {

constexpr std::uintptr_t kHugePage = std::uintptr_t(2) << 20;
// Below a few huge pages the allocator usually hands back memory already
// touched (its heap), and the advice would only split mappings.
constexpr std::uintptr_t kMinAdvisedBytes = 4 * kHugePage;

void advise_huge_pages(void* data, std::uintptr_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (bytes < kMinAdvisedBytes) return;
  const auto begin = reinterpret_cast<std::uintptr_t>(data);
  const std::uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
  const std::uintptr_t last = (begin + bytes) & ~(kHugePage - 1);
  if (last > first) {
    // Advice only: a failure (THP compiled out, say) leaves ordinary pages.
    (void)madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
  }
#else
  (void)data;
  (void)bytes;
#endif
}

} // namespace

at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor out = at::empty(sizes, options);
  advise_huge_pages(out.data_ptr(), out.nbytes());
  return out;
}

} // namespace cpu
} // namespace spn
} // namespace ial
