// The SPN scan kernels compiled for AVX2 + FMA (x86-64, GCC or Clang), used
// when the running CPU has them: 8x8 in-register transposes for the
// horizontal scans and 8-wide line kernels. Everything included before the
// target pragma stays default code; only the kernels below it are AVX2.
#include "scan_kernels_api.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace ial {
namespace spn {
namespace cpu {

bool avx2_supported() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

} // namespace cpu
} // namespace spn
} // namespace ial

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

#define SPN_CPU_ISA avx2
#define SPN_CPU_AVX2 1
#include "scan_kernels.h"

namespace ial {
namespace spn {
namespace cpu {
namespace avx2 {

template <typename T>
Kernels<T> kernels() {
  return {&forward_scratch<T>, &forward_plane<T>, &backward_scratch<T>, &backward_plane<T>};
}

template Kernels<float> kernels<float>();
template Kernels<double> kernels<double>();

} // namespace avx2
} // namespace cpu
} // namespace spn
} // namespace ial

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else  // no AVX2 build on this platform: the portable kernels serve every call

namespace ial {
namespace spn {
namespace cpu {

bool avx2_supported() {
  return false;
}

namespace avx2 {
template <typename T>
Kernels<T> kernels() {
  return portable::kernels<T>();
}
template Kernels<float> kernels<float>();
template Kernels<double> kernels<double>();
} // namespace avx2

} // namespace cpu
} // namespace spn
} // namespace ial

#endif
