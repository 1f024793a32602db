// The SPN scan kernels for AVX2 + FMA: 8x8 in-register transposes for the
// horizontal scans and 8-wide line kernels.
#include "scan_kernels_api.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cstdint>
#include <cstring>

#include "../../common/isa_avx2_begin.h"
#include "scan_kernels.h"
#include "../../common/isa_end.h"

#else  // no x86 SIMD build: cpu_features never selects this table
namespace ial::spn::cpu::avx2 {
template <typename T>
Kernels<T> kernels() {
  return portable::kernels<T>();
}
template Kernels<float> kernels<float>();
template Kernels<double> kernels<double>();
} // namespace ial::spn::cpu::avx2
#endif
