// Which kernels the superpixel ops run (common/cpu_features.h).
#include "pool_kernels_api.h"
#include "../../common/cpu_features.h"

namespace ial {
namespace superpixel {
namespace cpu {

const GroupKernels* group_kernels() {
  static const GroupKernels avx2_kernels = avx2::group_kernels();
  if (ial::cpu::active_isa() == ial::cpu::Isa::kDefault || avx2_kernels.reduce == nullptr) {
    return nullptr;
  }
  return &avx2_kernels;
}

const LabelKernels& label_kernels() {
  static const LabelKernels portable_kernels = portable::label_kernels();
  static const LabelKernels avx2_kernels = avx2::label_kernels();
  if (ial::cpu::active_isa() == ial::cpu::Isa::kDefault || avx2_kernels.write_id_slots == nullptr) {
    return portable_kernels;
  }
  return avx2_kernels;
}

} // namespace cpu
} // namespace superpixel
} // namespace ial
