#include "output_memory.h"

#include <ATen/EmptyTensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/Allocator.h>
#include <c10/util/Exception.h>
#include <c10/util/accumulate.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace ial {
namespace common {
namespace {

constexpr size_t kHugePage = size_t(2) << 20;
// Below a few huge pages the system allocator usually hands back memory its
// heap already touched; only larger outputs go through the cache.
constexpr size_t kMinCachedBytes = 4 * kHugePage;

size_t cache_limit_from_env() {
  const char* value = std::getenv("IAL_EXT_OUTPUT_CACHE_MB");
  if (value == nullptr || *value == '\0') {
    return 0;  // off unless asked for: the blocks are invisible to torch's memory accounting
  }
  char* end = nullptr;
  const unsigned long long mib = std::strtoull(value, &end, 10);
  TORCH_CHECK(
      *end == '\0' && *value != '-',
      "IAL_EXT_OUTPUT_CACHE_MB must be a whole number of MiB (0 turns the cache off), got '", value, "'");
  return static_cast<size_t>(mib) << 20;
}

// Only for cached blocks, whose pages are faulted in once and reused. Fresh huge
// pages for every output measured slower than small ones where the system has to
// find, clear or get back from the host a free 2 MiB page for each fault (RESULTS.md).
void advise_huge_pages(void* block, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  // Advice only: where THP is off, or the call fails, the block keeps ordinary pages.
  (void)madvise(block, bytes, MADV_HUGEPAGE);
#else
  (void)block;
  (void)bytes;
#endif
}

struct Block {
  void* data;
  size_t bytes;
};

// An allocator whose freed blocks wait, mapped, for the next output of the
// same rounded size. Blocks are whole huge pages, aligned to one.
class CachingOutputAllocator final : public c10::Allocator {
 public:
  static CachingOutputAllocator& instance() {
    // Never destroyed: tensors may be freed during interpreter shutdown.
    static auto* allocator = new CachingOutputAllocator(cache_limit_from_env());
    return *allocator;
  }

  c10::DataPtr allocate(size_t bytes) override {
    const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    void* data = take(rounded);
    if (data == nullptr) {
      data = std::aligned_alloc(kHugePage, rounded);
      TORCH_CHECK_WITH(
          OutOfMemoryError, data != nullptr, "ial_ext: out of memory allocating ", rounded, " bytes");
      advise_huge_pages(data, rounded);
    }
    return {data, new Block{data, rounded}, &CachingOutputAllocator::free_block, c10::Device(c10::kCPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  bool caches() const {
    return limit_ > 0;
  }

  size_t release() {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t released = 0;
    for (auto& entry : free_) {
      std::free(entry.second);
      released += entry.first;
    }
    free_.clear();
    cached_bytes_ = 0;
    return released;
  }

 private:
  explicit CachingOutputAllocator(size_t limit) : limit_(limit) {}

  void* take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto found = free_.find(bytes);
    if (found == free_.end()) {
      return nullptr;
    }
    void* data = found->second;
    free_.erase(found);
    cached_bytes_ -= bytes;
    return data;
  }

  void give_back(void* data, size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_bytes_ + bytes <= limit_) {
        free_.emplace(bytes, data);
        cached_bytes_ += bytes;
        return;
      }
    }
    std::free(data);
  }

  static void free_block(void* context) {
    auto* block = static_cast<Block*>(context);
    instance().give_back(block->data, block->bytes);
    delete block;
  }

  const size_t limit_;
  std::mutex mutex_;
  std::multimap<size_t, void*> free_;
  size_t cached_bytes_ = 0;
};

} // namespace

at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  TORCH_INTERNAL_ASSERT(options.device().is_cpu());
  const auto dtype = c10::typeMetaToScalarType(options.dtype());
  const size_t bytes = static_cast<size_t>(c10::multiply_integers(sizes)) * c10::elementSize(dtype);
  auto& outputs = CachingOutputAllocator::instance();
  if (bytes < kMinCachedBytes || !outputs.caches()) {
    return at::empty(sizes, options);
  }
  return at::Tensor(at::detail::empty_generic(
      sizes, &outputs, c10::DispatchKeySet(c10::DispatchKey::CPU), dtype,
      std::nullopt));
}

size_t release_output_cache() {
  return CachingOutputAllocator::instance().release();
}

bool retain_freed_memory(size_t bytes) {
#if defined(__GLIBC__)
  if (bytes == 0) {
    return false;
  }
  const int limit = static_cast<int>(std::min<size_t>(bytes, INT_MAX));  // mallopt takes an int
  return mallopt(M_MMAP_THRESHOLD, limit) == 1 && mallopt(M_TRIM_THRESHOLD, limit) == 1;
#else
  (void)bytes;
#endif
  return false;
}

} // namespace common
} // namespace ial
