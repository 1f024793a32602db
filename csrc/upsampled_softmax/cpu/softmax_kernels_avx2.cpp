// The upsampled-softmax row kernels for AVX2 + FMA (8-wide loops, vectorised by the compiler).
#include "softmax_kernels_api.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../../common/isa_avx2_begin.h"
#include "softmax_kernels.h"
#include "../../common/isa_end.h"

#else  // no x86 SIMD build: cpu_features never selects this table
namespace ial::upsampled_softmax::cpu::avx2 {
template <typename T>
Kernels<T> kernels() {
  return portable::kernels<T>();
}
template Kernels<float> kernels<float>();
template Kernels<double> kernels<double>();
} // namespace ial::upsampled_softmax::cpu::avx2
#endif
