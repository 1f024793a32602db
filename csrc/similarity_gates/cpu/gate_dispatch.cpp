// Which similarity-gate row kernels run (common/cpu_features.h).
#include "gate_kernels_api.h"
#include "../../common/cpu_features.h"

namespace ial {
namespace similarity {
namespace cpu {

template <typename T>
const Kernels<T>& gate_kernels() {
  static const Kernels<T> table = ial::cpu::select(portable::kernels<T>(), avx2::kernels<T>(), avx2::kernels<T>());
  return table;
}

template const Kernels<float>& gate_kernels<float>();
template const Kernels<double>& gate_kernels<double>();

} // namespace cpu
} // namespace similarity
} // namespace ial
