// What the CPU scan ops (spn_scan, spn_propagate) share around the plane
// kernels: per-thread scratch, the split of work over threads, and the float32
// detour of reduced-precision inputs.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include "../../common/large_block_heap.h"

#include <algorithm>
#include <cstdint>
#include <numeric>

namespace ial {
namespace spn {
namespace cpu {

// Per-thread scratch, aligned to a cache line and left uninitialised (the
// kernels write every element before reading it). Taken from torch's CPU
// allocator, so that under the trainer's large-tensor heap the buffers share
// the blocks freed tensors leave instead of holding their own. Under the heap
// they take at least its block size: glibc may hand a smaller buffer's pages
// back to the OS after every call, and the next call then faults them in again.
template <typename T>
class Scratch {
 public:
  explicit Scratch(int64_t elements)
      : storage_(at::empty({bytes(elements)}, at::TensorOptions().dtype(at::kByte))) {}
  T* data() {
    const auto address = reinterpret_cast<std::uintptr_t>(storage_.mutable_data_ptr());
    return reinterpret_cast<T*>((address + kAlign - 1) & ~std::uintptr_t(kAlign - 1));
  }

 private:
  static constexpr std::uintptr_t kAlign = 64;

  static int64_t bytes(int64_t elements) {
    const int64_t needed = int64_t(elements * sizeof(T) + kAlign);
    return common::large_block_heap_installed() ? std::max<int64_t>(needed, int64_t(common::kLargeBlockBytes))
                                                : needed;
  }

  at::Tensor storage_;
};

// Work on a gradient summed over channels (shared gates) is split into tasks
// of (batch item, part of its channels). Each part sums its channels into its
// own buffer and the parts are added in order afterwards, so the result only
// depends on the thread count, which fixes the number of parts: enough tasks
// for every thread when the batch alone is too small, none wasted otherwise.
struct ChannelParts {
  int64_t parts = 1;
  int64_t channels = 0;

  int64_t begin(int64_t part) const { return part * channels / parts; }
  int64_t end(int64_t part) const { return (part + 1) * channels / parts; }
};

inline ChannelParts channel_parts(int64_t batch, int64_t channels) {
  const int64_t threads = at::get_num_threads();
  const int64_t common = std::gcd(std::max<int64_t>(batch, 1), threads);
  ChannelParts parts;
  parts.channels = channels;
  parts.parts = std::max<int64_t>(1, std::min<int64_t>(channels, threads / common));
  return parts;
}

// The kernel calls of a scan op: one per plane with per-channel gates; with
// shared gates one per (batch item, part of its channels), which runs those
// channels against the batch item's gates.
struct ChannelCalls {
  ChannelParts parts;
  int64_t count = 0;
  int64_t max_channels = 1;  // the most channels one call runs

  int64_t batch(int64_t call) const { return call / parts.parts; }
  int64_t part(int64_t call) const { return call % parts.parts; }
  int64_t first(int64_t call) const { return parts.begin(part(call)); }
  int64_t channels(int64_t call) const { return parts.end(part(call)) - first(call); }
};

inline ChannelCalls channel_calls(int64_t batch, int64_t channels, bool shared_gates) {
  ChannelCalls calls;
  calls.parts = shared_gates ? channel_parts(batch, channels) : ChannelParts{channels, channels};
  calls.count = batch * calls.parts.parts;
  calls.max_channels = (channels + calls.parts.parts - 1) / calls.parts.parts;
  return calls;
}

} // namespace cpu
} // namespace spn
} // namespace ial
