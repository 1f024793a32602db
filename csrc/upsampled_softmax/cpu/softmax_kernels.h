// The row kernels of softmax_kernels_api.h, for the ISA region that includes
// this file (IAL_CPU_ISA names its namespace). Only plain loops and the exp of
// common/fast_exp.h appear below, so that the compiler vectorises them and no
// std:: template is instantiated inside an ISA region.
#include "softmax_kernels_api.h"

#include <cmath>
#include <cstdint>
#include <cstring>

// The max and the exp's clamps stay branches while floating-point exceptions
// may trap (GCC's default); nothing here reads the exception flags.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")
#endif

#include "../../common/fast_exp.h"
#ifdef IAL_CPU_AVX2
#include "../../common/avx2_stream.h"
#endif

namespace ial {
namespace upsampled_softmax {
namespace cpu {
namespace IAL_CPU_ISA {
namespace {

using ial::math::IAL_CPU_ISA::exp_of;

template <typename T>
void resize_row(const T* in, const Taps<T>& taps, int64_t width, T* __restrict__ out) {
  for (int64_t k = 0; k < width; ++k) {
    out[k] = taps.w0[k] * in[taps.i0[k]] + taps.w1[k] * in[taps.i1[k]];
  }
}

template <typename T>
void softmax_row(const SoftmaxRow<T>& row, T* scratch) {
  const int64_t n = row.width;
  T* __restrict__ top = scratch;  // the largest value of each column so far
  T* __restrict__ total = scratch + n;
  T* values = scratch + 2 * n;  // class c's at c * n
  const T w0 = row.w0, w1 = row.w1;
  bool any = false;
  for (int64_t c = 0; c < row.classes; ++c) {
    if (row.present != nullptr && !row.present[c]) continue;
    const T* __restrict__ r0 = row.rows0 + c * row.class_stride;
    const T* __restrict__ r1 = row.rows1 + c * row.class_stride;
    T* __restrict__ v = values + c * n;
    for (int64_t j = 0; j < n; ++j) v[j] = w0 * r0[j] + w1 * r1[j];
    if (!any) {
      for (int64_t j = 0; j < n; ++j) top[j] = v[j];
    } else {
      for (int64_t j = 0; j < n; ++j) top[j] = v[j] > top[j] ? v[j] : top[j];
    }
    any = true;
  }
  if (!any) {  // the softmax of C equal values
    const T uniform = T(1) / T(row.classes);
    for (int64_t c = 0; c < row.classes; ++c) {
      T* __restrict__ o = row.out + c * row.out_stride;
      for (int64_t j = 0; j < n; ++j) o[j] = uniform;
    }
    return;
  }
  for (int64_t j = 0; j < n; ++j) total[j] = T(0);
  for (int64_t c = 0; c < row.classes; ++c) {
    if (row.present != nullptr && !row.present[c]) continue;
    T* __restrict__ v = values + c * n;
    for (int64_t j = 0; j < n; ++j) {
      v[j] = exp_of(v[j] - top[j]);
      total[j] += v[j];
    }
  }
  for (int64_t j = 0; j < n; ++j) total[j] = T(1) / total[j];
  for (int64_t c = 0; c < row.classes; ++c) {
    T* __restrict__ o = row.out + c * row.out_stride;
    T* __restrict__ v = values + c * n;
    const bool absent = row.present != nullptr && !row.present[c];
#ifdef IAL_CPU_AVX2
    if constexpr (sizeof(T) == sizeof(float)) {
      if (row.stream) {  // from the class's row of the buffer, which an absent class leaves free
        if (absent) {
          for (int64_t j = 0; j < n; ++j) v[j] = T(0);
        } else {
          for (int64_t j = 0; j < n; ++j) v[j] *= total[j];
        }
        ial::simd::stream_floats(reinterpret_cast<float*>(o), reinterpret_cast<const float*>(v), n);
        continue;
      }
    }
#endif
    if (absent) {
      for (int64_t j = 0; j < n; ++j) o[j] = T(0);
    } else {
      for (int64_t j = 0; j < n; ++j) o[j] = v[j] * total[j];
    }
  }
#ifdef IAL_CPU_AVX2
  if (row.stream) _mm_sfence();
#endif
}

} // namespace

template <typename T>
Kernels<T> kernels() {
  return {&resize_row<T>, &softmax_row<T>};
}

template Kernels<float> kernels<float>();
template Kernels<double> kernels<double>();

} // namespace IAL_CPU_ISA
} // namespace cpu
} // namespace upsampled_softmax
} // namespace ial

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif
