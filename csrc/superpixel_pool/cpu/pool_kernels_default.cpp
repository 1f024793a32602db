// The label pass of the CPU superpixel ops for any CPU the compiler targets by
// default (see pool_kernels_api.h; pool_kernels_avx2.cpp has the vector one).
#include "pool_kernels_api.h"

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

} // namespace

LabelKernels label_kernels() {
  return {&write_id_slots};
}

} // namespace portable
} // namespace cpu
} // namespace superpixel
} // namespace ial
