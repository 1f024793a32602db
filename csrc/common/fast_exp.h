// exp for the per-ISA kernels: include it after IAL_CPU_ISA is defined (a <name>_default.cpp, or
// the region of isa_avx2_begin.h) and after <cmath> and <cstring>, so each instruction set gets its own copy.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace ial {
namespace math {
namespace IAL_CPU_ISA {

// exp(x) for float, branch-free so that loops over it vectorise: Cody-Waite
// reduction by ln 2 and Cephes' degree-6 polynomial (about 1 ulp), x clamped
// to [-87, 88] (results stay normal floats).
inline float exp_of(float x) {
  x = x > -87.0f ? x : -87.0f;  // one comparison per statement: both become a vector max / min
  x = x < 88.0f ? x : 88.0f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float two_to_n;
  std::memcpy(&two_to_n, &bits, sizeof(two_to_n));
  return p * two_to_n;
}

inline double exp_of(double x) {
  return std::exp(x);
}

} // namespace IAL_CPU_ISA
} // namespace math
} // namespace ial
