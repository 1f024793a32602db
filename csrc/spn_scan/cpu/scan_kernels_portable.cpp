// The SPN scan kernels for any CPU the compiler targets by default.
#define SPN_CPU_ISA portable
#include "scan_kernels.h"

namespace ial {
namespace spn {
namespace cpu {
namespace portable {

template <typename T>
Kernels<T> kernels() {
  return {&forward_scratch<T>, &forward_plane<T>, &backward_scratch<T>, &backward_plane<T>};
}

template Kernels<float> kernels<float>();
template Kernels<double> kernels<double>();

} // namespace portable
} // namespace cpu
} // namespace spn
} // namespace ial
