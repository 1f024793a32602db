// The row kernels of gate_kernels_api.h, for the ISA region that includes this
// file (IAL_CPU_ISA names its namespace). Only plain loops, memcpy and libm's
// exp (in common/fast_exp.h) appear below, as in spn_scan/cpu/scan_kernels.h: a std:: template
// instantiated here could be merged by the linker with the portable unit's copy.
// Inner loops run over the interior columns without bounds checks so the
// compiler vectorises them; the first and last column take the clamped (or
// absent) neighbours.
#include "gate_kernels_api.h"

#include <cmath>
#include <cstdint>
#include <cstring>

// GCC keeps the float comparisons of the clamps and the sigmoid as branches
// while floating-point exceptions may trap (its default), which stops the loops
// from vectorising; nothing here reads the exception flags.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")
#endif

#include "../../common/fast_exp.h"

namespace ial {
namespace similarity {
namespace cpu {
namespace IAL_CPU_ISA {
namespace {

using ial::math::IAL_CPU_ISA::exp_of;

template <typename T>
inline T sigmoid_of(T x) {
  return T(1) / (T(1) + exp_of(-x));
}

inline int64_t clamped(int64_t i, int64_t size) {
  return i < 0 ? 0 : (i >= size ? size - 1 : i);
}

// The first and the last column (one column when the image is one wide).
template <typename F>
inline void for_edge_columns(int64_t width, F&& f) {
  f(int64_t(0));
  if (width > 1) f(width - 1);
}

template <typename T>
void affinity_row(const Image<T>& image, int64_t y, T* affinity) {
  const int64_t h = image.height, w = image.width, plane = h * w;
  for (int64_t i = 0; i < kOffsets * w; ++i) {
    affinity[i] = T(0);
  }
  for (int64_t e = 0; e < image.channels; ++e) {
    const T* channel = image.embedding + e * plane;
    const T* __restrict__ p = channel + y * w;
    for (int o = 0; o < kOffsets; ++o) {
      const int dx = kOffsetColumn[o];
      const T* __restrict__ q = channel + clamped(y + kOffsetRow[o], h) * w;
      T* __restrict__ d2 = affinity + o * w;
      for (int64_t x = 1; x < w - 1; ++x) {
        const T d = p[x] - q[x + dx];
        d2[x] += d * d;
      }
      for_edge_columns(w, [&](int64_t x) {
        const T d = p[x] - q[clamped(x + dx, w)];
        d2[x] += d * d;
      });
    }
  }
  for (int64_t i = 0; i < kOffsets * w; ++i) {
    affinity[i] = exp_of(-affinity[i]);
  }
}

template <typename T>
void gate_row(const T* __restrict__ logit, const T* __restrict__ affinity, T scale, int64_t width,
              T* __restrict__ out) {
  for (int64_t x = 0; x < width; ++x) {
    out[x] = scale * sigmoid_of(logit[x]) * affinity[x];
  }
}

template <typename T>
void gate_backward_row(const T* __restrict__ grad, const T* __restrict__ logit, const T* __restrict__ affinity,
                       T scale, int64_t width, T* __restrict__ grad_logit, T* __restrict__ coef) {
  for (int64_t x = 0; x < width; ++x) {
    const T s = sigmoid_of(logit[x]);
    const T go = grad[x] * scale * s * affinity[x];
    grad_logit[x] = go * (T(1) - s);
    coef[x] += go;
  }
}

template <typename T>
void embedding_backward_row(const Image<T>& image, const T* coef, int64_t y, T* grad_embedding) {
  const int64_t h = image.height, w = image.width, plane = h * w;
  for (int64_t e = 0; e < image.channels; ++e) {
    const T* channel = image.embedding + e * plane;
    const T* __restrict__ p = channel + y * w;
    T* __restrict__ out = grad_embedding + e * plane + y * w;
    for (int64_t x = 0; x < w; ++x) {
      out[x] = T(0);
    }
    for (int o = 0; o < kOffsets; ++o) {
      const int dy = kOffsetRow[o], dx = kOffsetColumn[o];
      // This pixel's own link: d|e_p - e_q|^2 / de_p = 2 (e_p - e_q).
      const T* __restrict__ q = channel + clamped(y + dy, h) * w;
      const T* __restrict__ c = coef + o * plane + y * w;
      for (int64_t x = 1; x < w - 1; ++x) {
        out[x] -= T(2) * c[x] * (p[x] - q[x + dx]);
      }
      for_edge_columns(w, [&](int64_t x) { out[x] -= T(2) * c[x] * (p[x] - q[clamped(x + dx, w)]); });
      // The link of pixel s = (y, x) - offset, whose neighbour this pixel is.
      const int64_t ys = y - dy;
      if (ys < 0 || ys >= h) continue;
      const T* __restrict__ s = channel + ys * w;
      const T* __restrict__ cs = coef + o * plane + ys * w;
      for (int64_t x = 1; x < w - 1; ++x) {
        out[x] += T(2) * cs[x - dx] * (s[x - dx] - p[x]);
      }
      for_edge_columns(w, [&](int64_t x) {
        const int64_t xs = x - dx;
        if (xs >= 0 && xs < w) {
          out[x] += T(2) * cs[xs] * (s[xs] - p[x]);
        }
      });
    }
  }
}

} // namespace

template <typename T>
Kernels<T> kernels() {
  return {&affinity_row<T>, &gate_row<T>, &gate_backward_row<T>, &embedding_backward_row<T>};
}

template Kernels<float> kernels<float>();
template Kernels<double> kernels<double>();

} // namespace IAL_CPU_ISA
} // namespace cpu
} // namespace similarity
} // namespace ial

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif
