// Non-temporal stores of a run of floats, shared by the CPU kernels of both
// ops (include only where <immintrin.h> is available: x86-64, GCC or Clang).
//
// Written that way, an output far larger than the last-level cache skips the
// read of every destination line before its write. The stores need aligned
// addresses, so the ends of an unaligned run get regular stores.
// Callers issue _mm_sfence() once their streamed stores are done.
//
// static + always_inline + its own target attribute, as avx2_transpose.h.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace ial {
namespace simd {

// dst[0 .. n) = src[0 .. n); src may have any alignment. Whole 64-byte lines
// are streamed and the partial lines at the ends get regular stores, so no
// line takes both kinds (a regular store into a line that is being
// write-combined costs a flush of the partial line).
__attribute__((target("avx2"), always_inline)) static inline void stream_floats(float* dst, const float* src,
                                                                                int64_t n) {
  constexpr int64_t kLine = 64 / sizeof(float);
  const auto misaligned = static_cast<int64_t>((reinterpret_cast<uintptr_t>(dst) & 63) / sizeof(float));
  const int64_t head = misaligned == 0 ? 0 : kLine - misaligned;
  int64_t i = 0;
  for (; i < head && i < n; ++i) {
    dst[i] = src[i];
  }
  for (; i + kLine <= n; i += kLine) {
    _mm256_stream_ps(dst + i, _mm256_loadu_ps(src + i));
    _mm256_stream_ps(dst + i + 8, _mm256_loadu_ps(src + i + 8));
  }
  for (; i < n; ++i) {
    dst[i] = src[i];
  }
}

} // namespace simd
} // namespace ial
