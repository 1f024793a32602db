// Which upsampled-softmax row kernels run (common/cpu_features.h).
#include "softmax_kernels_api.h"
#include "../../common/cpu_features.h"

namespace ial {
namespace upsampled_softmax {
namespace cpu {

template <typename T>
const Kernels<T>& softmax_kernels() {
  static const Kernels<T> table = ial::cpu::select(portable::kernels<T>(), avx2::kernels<T>(), avx2::kernels<T>());
  return table;
}

template const Kernels<float>& softmax_kernels<float>();
template const Kernels<double>& softmax_kernels<double>();

} // namespace cpu
} // namespace upsampled_softmax
} // namespace ial
