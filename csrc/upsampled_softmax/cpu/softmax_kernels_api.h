// Row kernels of the CPU upsampled softmax, compiled per instruction set
// (softmax_kernels_default.cpp, softmax_kernels_avx2.cpp) on plain pointers, so that
// no torch header is compiled for a SIMD target; softmax_kernels() picks a table
// with common/cpu_features.h.
#pragma once

#include <cstdint>

namespace ial {
namespace upsampled_softmax {
namespace cpu {

// The two input positions and weights of each output position along one axis
// (bilinear, align_corners=False): out[k] = w0[k] in[i0[k]] + w1[k] in[i1[k]].
template <typename T>
struct Taps {
  const int64_t* i0 = nullptr;
  const int64_t* i1 = nullptr;
  const T* w0 = nullptr;
  const T* w1 = nullptr;
};

// One output row of one batch item: rows0 and rows1 are the two input rows it
// interpolates, already resized along the width (class c's at c * class_stride).
template <typename T>
struct SoftmaxRow {
  const T* rows0 = nullptr;
  const T* rows1 = nullptr;
  int64_t class_stride = 0;
  T w0 = 0;
  T w1 = 0;
  const bool* present = nullptr;  // C flags; none given: every class
  int64_t classes = 0;
  int64_t width = 0;
  T* out = nullptr;  // class c's row at c * out_stride
  int64_t out_stride = 0;
  bool stream = false;  // non-temporal stores where the kernels have them (an output past the caches)
};

template <typename T>
struct Kernels {
  // out[k] = taps.w0[k] in[taps.i0[k]] + taps.w1[k] in[taps.i1[k]], k < width.
  void (*resize_row)(const T* in, const Taps<T>& taps, int64_t width, T* out);
  // The softmax over the present classes of w0 rows0 + w1 rows1; 0 for the others.
  // scratch: (classes + 2) x width values.
  void (*softmax_row)(const SoftmaxRow<T>& row, T* scratch);
};

namespace portable {
template <typename T>
Kernels<T> kernels();
} // namespace portable

namespace avx2 {
template <typename T>
Kernels<T> kernels();
} // namespace avx2

template <typename T>
const Kernels<T>& softmax_kernels();

} // namespace cpu
} // namespace upsampled_softmax
} // namespace ial
