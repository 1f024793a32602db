#include "large_block_heap.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <iterator>
#include <map>
#include <mutex>
#include <unordered_map>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace ial {
namespace common {
namespace {

#if defined(__linux__)

constexpr size_t kGrain = size_t(64) << 10;        // block sizes round up to this
constexpr size_t kSegmentBytes = size_t(1) << 30;  // address space reserved at a time

struct Range {
  size_t bytes;
  size_t segment;  // ranges of different mappings never merge
};

struct Block {
  uintptr_t start;
  size_t bytes;
  size_t segment;
};

// Best fit over the free ranges, which merge with their neighbours when a block
// is freed; pages stay mapped for the next request. Freed ranges are few (tens in a
// training iteration), so a scan finds the fit.
class LargeBlockHeap final : public c10::Allocator {
 public:
  explicit LargeBlockHeap(c10::Allocator* small) : small_(small) {}

  c10::DataPtr allocate(size_t bytes) override {
    if (bytes < kLargeBlockBytes) {
      return small_->allocate(bytes);
    }
    void* data = reinterpret_cast<void*>(take((bytes + kGrain - 1) / kGrain * kGrain));
    // Context and data alike, as raw_allocate's callers (oneDNN among them) require.
    return {data, data, &LargeBlockHeap::free_any, c10::Device(c10::kCPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override {
    return &LargeBlockHeap::free_any;
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  size_t release_free_pages() {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t released = 0;
    for (const auto& entry : free_) {
      if (madvise(reinterpret_cast<void*>(entry.first), entry.second.bytes, MADV_DONTNEED) == 0) {
        released += entry.second.bytes;
      }
    }
    return released;
  }

  static void free_any(void* data);

 private:
  uintptr_t take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto best = free_.end();
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second.bytes >= bytes && (best == free_.end() || it->second.bytes < best->second.bytes)) {
        best = it;
      }
    }
    if (best == free_.end()) {
      best = add_segment(std::max(bytes, kSegmentBytes));
    }
    const Block block{best->first, bytes, best->second.segment};
    const Range rest{best->second.bytes - bytes, best->second.segment};
    free_.erase(best);
    if (rest.bytes > 0) {
      free_.emplace(block.start + bytes, rest);
    }
    used_.emplace(block.start, block);
    used_bytes_ += bytes;
    report(block.start, static_cast<int64_t>(bytes));
    return block.start;
  }

  std::map<uintptr_t, Range>::iterator add_segment(size_t bytes) {
    // Reserved, not committed: a page costs memory once it is touched.
    void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    TORCH_CHECK_WITH(
        OutOfMemoryError, base != MAP_FAILED, "ial_ext: out of memory reserving ", bytes, " bytes for large tensors");
    reserved_bytes_ += bytes;
    return free_.emplace(reinterpret_cast<uintptr_t>(base), Range{bytes, segments_++}).first;
  }

  // False for a block that is not the heap's own.
  bool give_back(uintptr_t start) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto used = used_.find(start);
    if (used == used_.end()) {
      return false;
    }
    const Block block = used->second;
    used_.erase(used);
    used_bytes_ -= block.bytes;
    report(block.start, -static_cast<int64_t>(block.bytes));
    auto it = free_.emplace(block.start, Range{block.bytes, block.segment}).first;
    const auto next = std::next(it);
    if (next != free_.end() && next->second.segment == block.segment && block.start + block.bytes == next->first) {
      it->second.bytes += next->second.bytes;
      free_.erase(next);
    }
    if (it != free_.begin()) {
      const auto previous = std::prev(it);
      if (previous->second.segment == block.segment && previous->first + previous->second.bytes == it->first) {
        previous->second.bytes += it->second.bytes;
        free_.erase(it);
      }
    }
    return true;
  }

  // As torch's own CPU allocator does, so that the profiler's memory view sees these blocks.
  void report(uintptr_t start, int64_t bytes) const {
    if (c10::memoryProfilingEnabled()) {
      c10::reportMemoryUsageToProfiler(
          reinterpret_cast<void*>(start), bytes, used_bytes_, reserved_bytes_, c10::Device(c10::kCPU));
    }
  }

  c10::Allocator* const small_;
  std::mutex mutex_;
  std::map<uintptr_t, Range> free_;  // by address, for merging
  std::unordered_map<uintptr_t, Block> used_;
  size_t segments_ = 0;
  size_t used_bytes_ = 0;
  size_t reserved_bytes_ = 0;
};

std::atomic<LargeBlockHeap*> installed{nullptr};

void LargeBlockHeap::free_any(void* data) {
  LargeBlockHeap* heap = installed.load();
  if (!heap->give_back(reinterpret_cast<uintptr_t>(data))) {
    heap->small_->raw_deleter()(data);
  }
}

#endif

} // namespace

bool install_large_block_heap() {
#if defined(__linux__)
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  if (installed.load() == nullptr) {
    // Never destroyed: tensors may be freed during interpreter shutdown.
    auto* heap = new LargeBlockHeap(c10::GetCPUAllocator());
    installed.store(heap);
    c10::SetCPUAllocator(heap, /*priority=*/1);
  }
  return c10::GetCPUAllocator() == installed.load();
#else
  return false;
#endif
}

bool large_block_heap_installed() {
#if defined(__linux__)
  const auto* heap = installed.load();
  return heap != nullptr && c10::GetCPUAllocator() == heap;
#else
  return false;
#endif
}

size_t release_large_block_pages() {
#if defined(__linux__)
  auto* heap = installed.load();
  return heap == nullptr ? 0 : heap->release_free_pages();
#else
  return 0;
#endif
}

} // namespace common
} // namespace ial
