// Row kernels of the CPU similarity-gate ops, compiled per instruction set
// (gate_kernels_default.cpp, gate_kernels_avx2.cpp) on plain pointers, so that
// no torch header is compiled for a SIMD target; gate_kernels() picks a table
// with common/cpu_features.h. A row is one image row of one batch item; planes
// are H * W contiguous values.
#pragma once

#include <cstdint>

namespace ial {
namespace similarity {
namespace cpu {

// The 8 neighbour offsets (row, column) and the one each link (d, j) uses, in
// the links' order: 4 directions (left->right, right->left, top->bottom,
// bottom->top) x 3 gates (see ../similarity_gates.h).
constexpr int kOffsets = 8;
constexpr int kOffsetRow[kOffsets] = {-1, -1, -1, 0, 0, 1, 1, 1};
constexpr int kOffsetColumn[kOffsets] = {-1, 0, 1, -1, 1, -1, 0, 1};
constexpr int kLinkOffset[12] = {0, 3, 5, 2, 4, 7, 0, 1, 2, 5, 6, 7};

template <typename T>
struct Image {
  const T* embedding = nullptr;  // E planes
  int64_t channels = 0;          // E
  int64_t height = 0;
  int64_t width = 0;
};

template <typename T>
struct Kernels {
  // affinity[o * W + x] = exp(-sum_e (e[y, x] - e[q])^2), q = (y, x) + offset o
  // clamped into the image, for the W pixels of row y and the 8 offsets.
  void (*affinity_row)(const Image<T>& image, int64_t y, T* affinity);
  // out[x] = scale * sigmoid(logit[x]) * affinity[x].
  void (*gate_row)(const T* logit, const T* affinity, T scale, int64_t width, T* out);
  // With go = grad * scale * sigmoid(logit) * affinity: grad_logit[x] = go (1 - sigmoid)
  // and coef[x] += go (the gradient of the link's squared distance is -coef).
  void (*gate_backward_row)(
      const T* grad, const T* logit, const T* affinity, T scale, int64_t width, T* grad_logit, T* coef);
  // grad_embedding (E rows of row y) from coef (8 planes, one per offset): each
  // pixel's own links, and the links of the pixels whose unclamped neighbour it
  // is. The links clamped onto a border pixel other than their end are left to
  // the caller.
  void (*embedding_backward_row)(const Image<T>& image, const T* coef, int64_t y, T* grad_embedding);
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
const Kernels<T>& gate_kernels();

} // namespace cpu
} // namespace similarity
} // namespace ial
