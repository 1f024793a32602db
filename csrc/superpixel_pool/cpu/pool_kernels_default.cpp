// The label passes of the CPU superpixel ops for any CPU the compiler targets
// by default (see pool_kernels_api.h; pool_kernels_avx2.cpp has the vector ones).
#include "pool_kernels_api.h"

#include <algorithm>
#include <cstdint>

namespace ial {
namespace superpixel {
namespace cpu {
namespace portable {
namespace {

// Branch-free, so that the compiler can vectorise it where the ISA allows.
bool write_id_slots(const int64_t* __restrict__ labels, int64_t pixels, int64_t k, int32_t* __restrict__ slot) {
  const uint64_t range = static_cast<uint64_t>(k);
  int bad = 0;
  for (int64_t p = 0; p < pixels; ++p) {
    const int64_t id = labels[p];
    const bool valid = static_cast<uint64_t>(id) < range;
    slot[p] = valid ? static_cast<int32_t>(id + 1) : 0;
    bad |= static_cast<int>(!valid & (id != -1));
  }
  return bad != 0;
}

// Branch-free: every pixel writes its slot as its run's, and the run count
// moves on where the slot changes, so short runs (random ids) cost no
// mispredictions and long ones (superpixels) no more than that.
void build_runs(const int32_t* slot, int64_t pixels, int32_t* offset, int32_t* run_slot, int32_t* block_begin) {
  const int64_t padded = (pixels + 7) & ~int64_t(7);
  const int64_t blocks = (padded + kBlock - 1) / kBlock;
  int32_t total = 0;
  for (int64_t block = 0; block < blocks; ++block) {
    const int64_t begin = block * kBlock;
    const int64_t end = std::min(begin + kBlock, padded);
    const int64_t full = std::min(end, pixels);
    block_begin[block] = total;
    int32_t* const block_slots = run_slot + total;
    int32_t run = 0;
    int32_t previous = begin < pixels ? slot[begin] : 0;
    for (int64_t p = begin; p < full; ++p) {
      const int32_t s = slot[p];
      run += s != previous;
      block_slots[run] = s;
      offset[p] = run * kLanes;
      previous = s;
    }
    for (int64_t p = full; p < end; ++p) {  // padding goes to the ignored bin
      run += previous != 0;
      block_slots[run] = 0;
      offset[p] = run * kLanes;
      previous = 0;
    }
    total += run + 1;
  }
  block_begin[blocks] = total;
}

} // namespace

LabelKernels label_kernels() {
  return {&write_id_slots, &build_runs};
}

} // namespace portable
} // namespace cpu
} // namespace superpixel
} // namespace ial
