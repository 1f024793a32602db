// SPN scan kernels, compiled once per instruction set.
//
// The translation unit that includes this header defines IAL_CPU_ISA (the
// namespace the kernels land in) and, for the SIMD builds, opens the target
// region of common/isa_*_begin.h first. Only plain loops, memcpy and intrinsics
// appear below: a std:: template instantiated here could be merged by the
// linker with the portable unit's copy and run AVX2 code on a CPU without it.
//
// Planes are independent. Within a plane the recurrence runs line by line over
// contiguous arrays so the inner loops vectorise. Vertical scans read image rows
// in place. Horizontal scans move a tile of `tile` columns into per-thread line
// buffers (a transpose) and back, so every element still crosses memory once.
// A call runs several channels against one gate set (see ScanInputs), the
// channels inside the loop over tiles or row blocks.
#pragma once

#include "../spn_scan.h"
#include "scan_kernels_api.h"

#include <cstdint>
#include <cstring>

#ifdef IAL_CPU_AVX2
#include "../../common/avx2_stream.h"
#include "../../common/avx2_transpose.h"
#endif

namespace ial {
namespace spn {
namespace cpu {
namespace IAL_CPU_ISA {

template <bool kAccumulate, typename T>
inline void put(T* p, T v) {
  if constexpr (kAccumulate) {
    *p += v;
  } else {
    *p = v;
  }
}

// ---------------------------------------------------------------------------
// Line kernels (one scan step over `n` contiguous positions). Two forms: rows
// read in place (vertical scans), whose first and last positions drop a gate,
// and padded lines (the tile buffers of horizontal scans, see PaddedLines),
// where zeros around the line and in the dropped gates let one branch-free
// vector loop run over whole vectors.

// A channel's strength s on shared raw gates (spn_propagate with strength):
// its gates are normalize(s (a, b, c)) = (a, b, c) min(s, r), r = 1 / (|a| +
// |b| + |c|) per position, so the kernels scale the shared gates on the fly by
// f = min(s, r) instead of reading a scaled copy per channel. Without it
// (r == nullptr) the gates are used as given.
template <typename T>
struct GateScale {
  const T* r = nullptr;
  T s = T(1);
};

template <typename T>
inline T gate_factor(T s, T r) {
  return r < s ? r : s;
}

// One position with every neighbour present:
// h = x + a (hp[i-1] - x) + b (hp[i] - x) + c (hp[i+1] - x), which is
// (1 - a - b - c) x + a hp[i-1] + b hp[i] + c hp[i+1]; scaled, the three
// terms are multiplied by f.
template <bool kScaled, typename T>
inline T forward_value(T xv, T a, T b, T c, T left, T middle, T right, T f) {
  if constexpr (kScaled) {
    return xv + f * (a * (left - xv) + b * (middle - xv) + c * (right - xv));
  } else {
    return xv + a * (left - xv) + b * (middle - xv) + c * (right - xv);
  }
}

// Positions [begin, end) with every neighbour present.
template <bool kScaled, typename T>
inline void forward_span(
    const T* __restrict__ x,
    const T* __restrict__ a,
    const T* __restrict__ b,
    const T* __restrict__ c,
    const T* __restrict__ hp,
    T* __restrict__ h,
    int64_t begin,
    int64_t end,
    const T* __restrict__ r,
    T s) {
  for (int64_t i = begin; i < end; ++i) {
    const T f = kScaled ? gate_factor(s, r[i]) : T(1);
    h[i] = forward_value<kScaled>(x[i], a[i], b[i], c[i], hp[i - 1], hp[i], hp[i + 1], f);
  }
}

// A row in place: a is dropped at the first position, c at the last. hp ==
// nullptr marks the first line, where every gate is dropped.
template <bool kScaled, typename T>
void forward_line(
    const T* __restrict__ x,
    const T* __restrict__ a,
    const T* __restrict__ b,
    const T* __restrict__ c,
    const T* __restrict__ hp,
    T* __restrict__ h,
    int64_t n,
    GateScale<T> scale = {}) {
  if (hp == nullptr) {
    std::memcpy(h, x, n * sizeof(T));
    return;
  }
  const int64_t l = n - 1;
  if constexpr (kScaled) {
    const T f0 = gate_factor(scale.s, scale.r[0]);
    if (n == 1) {
      h[0] = x[0] + f0 * (b[0] * (hp[0] - x[0]));
      return;
    }
    h[0] = x[0] + f0 * (b[0] * (hp[0] - x[0]) + c[0] * (hp[1] - x[0]));
    forward_span<true>(x, a, b, c, hp, h, 1, n - 1, scale.r, scale.s);
    const T fl = gate_factor(scale.s, scale.r[l]);
    h[l] = x[l] + fl * (a[l] * (hp[l - 1] - x[l]) + b[l] * (hp[l] - x[l]));
    return;
  }
  if (n == 1) {
    h[0] = x[0] + b[0] * (hp[0] - x[0]);
    return;
  }
  h[0] = x[0] + b[0] * (hp[0] - x[0]) + c[0] * (hp[1] - x[0]);
  forward_span<false>(x, a, b, c, hp, h, 1, n - 1, scale.r, scale.s);
  h[l] = x[l] + a[l] * (hp[l - 1] - x[l]) + b[l] * (hp[l] - x[l]);
}

// A padded line, scanned in place: `line` holds x and gets h, positions [0,
// n_vec), n_vec = n rounded up to whole vectors. In place, a tile's x and h
// share one buffer: half the cache the channel's tile would take otherwise.
template <bool kScaled, typename T>
void forward_line_padded(
    T* __restrict__ line,
    const T* __restrict__ a,
    const T* __restrict__ b,
    const T* __restrict__ c,
    const T* __restrict__ hp,
    int64_t n_vec,
    GateScale<T> scale = {}) {
  if (hp == nullptr) return;  // the first line: h = x
  const T* __restrict__ r = scale.r;
  for (int64_t i = 0; i < n_vec; ++i) {
    const T f = kScaled ? gate_factor(scale.s, r[i]) : T(1);
    line[i] = forward_value<kScaled>(line[i], a[i], b[i], c[i], hp[i - 1], hp[i], hp[i + 1], f);
  }
}

// One backward step. `na/nb/nc` hold what line s+1 sends back through its
// gates (na[i] = a'[s+1, i] q[s+1, i], ...; zeros after the last line). The
// adjoint of h at line s is q[i] = g[i] + na[i+1] + nb[i] + nc[i-1]; the line
// writes (or adds) the gradients and what it sends on to line s-1 (ca/cb/cc).
template <typename T>
struct BackwardLine {
  const T* g;
  const T* x;
  const T* a;
  const T* b;
  const T* c;
  const T* hp;  // h of line s-1, nullptr on the first line
  const T* na;
  const T* nb;
  const T* nc;
  T* gx;
  T* ga;
  T* gb;
  T* gc;
  T* ca;
  T* cb;
  T* cc;
  // Scaled gates (GateScale): the gate gradients above are those of the raw
  // shared gates at the factor f (f x what unscaled gates get); gt gets (or
  // adds) t = a da + b db + c dc (q x the raw gates' share of the step) where
  // the normalisation binds (r < s), which the caller maps to the raw gates
  // once per batch item, and gs adds t where it does not: the strength's share.
  GateScale<T> scale = {};
  T* gt = nullptr;
  T* gs = nullptr;
};

template <typename T>
inline T adjoint(const BackwardLine<T>& l, int64_t i, int64_t n) {
  T q = l.g[i] + l.nb[i];
  if (i + 1 < n) q += l.na[i + 1];
  if (i > 0) q += l.nc[i - 1];
  return q;
}

// Edge positions (first and last) of a row in place, where a or c is dropped.
template <bool kAccX, bool kAccG, bool kScaled, typename T>
inline void backward_edge(const BackwardLine<T>& l, int64_t i, int64_t n) {
  const T q = adjoint(l, i, n);
  const T xv = l.x[i];
  const bool has_a = i > 0;
  const bool has_c = i + 1 < n;
  const T a = has_a ? l.a[i] : T(0);
  const T c = has_c ? l.c[i] : T(0);
  const T b = l.b[i];
  if constexpr (kScaled) {
    const T r = l.scale.r[i];
    const T f = gate_factor(l.scale.s, r);
    const T ea = has_a ? q * (l.hp[i - 1] - xv) : T(0);
    const T eb = q * (l.hp[i] - xv);
    const T ec = has_c ? q * (l.hp[i + 1] - xv) : T(0);
    const T t = a * ea + b * eb + c * ec;
    const bool binds = r < l.scale.s;
    put<kAccX>(l.gx + i, (T(1) - f * a - f * b - f * c) * q);
    put<kAccG>(l.ga + i, f * ea);
    put<kAccG>(l.gb + i, f * eb);
    put<kAccG>(l.gc + i, f * ec);
    put<kAccG>(l.gt + i, binds ? t : T(0));
    l.gs[i] += binds ? T(0) : t;
    l.ca[i] = f * a * q;
    l.cb[i] = f * b * q;
    l.cc[i] = f * c * q;
    return;
  }
  put<kAccX>(l.gx + i, (T(1) - a - b - c) * q);
  put<kAccG>(l.ga + i, has_a ? q * (l.hp[i - 1] - xv) : T(0));
  put<kAccG>(l.gb + i, q * (l.hp[i] - xv));
  put<kAccG>(l.gc + i, has_c ? q * (l.hp[i + 1] - xv) : T(0));
  l.ca[i] = a * q;
  l.cb[i] = b * q;
  l.cc[i] = c * q;
}

// Positions [begin, end) with every gate present; scaled, also r, s, gt and gs
// (see BackwardLine). Parameters (not struct members) carry __restrict__ so the
// compiler vectorises the loops.
template <bool kAccX, bool kAccG, bool kScaled, typename T>
void backward_span_loop(
    int64_t begin,
    int64_t end,
    const T* __restrict__ g,
    const T* __restrict__ x,
    const T* __restrict__ a,
    const T* __restrict__ b,
    const T* __restrict__ c,
    const T* __restrict__ hp,
    const T* __restrict__ na,
    const T* __restrict__ nb,
    const T* __restrict__ nc,
    T* __restrict__ gx,
    T* __restrict__ ga,
    T* __restrict__ gb,
    T* __restrict__ gc,
    T* __restrict__ ca,
    T* __restrict__ cb,
    T* __restrict__ cc,
    const T* __restrict__ r,
    T s,
    T* __restrict__ gt,
    T* __restrict__ gs) {
  if constexpr (!kScaled) {
    for (int64_t i = begin; i < end; ++i) {
      const T q = g[i] + na[i + 1] + nb[i] + nc[i - 1];
      const T xv = x[i];
      put<kAccX>(gx + i, (T(1) - a[i] - b[i] - c[i]) * q);
      put<kAccG>(ga + i, q * (hp[i - 1] - xv));
      put<kAccG>(gb + i, q * (hp[i] - xv));
      put<kAccG>(gc + i, q * (hp[i + 1] - xv));
      ca[i] = a[i] * q;
      cb[i] = b[i] * q;
      cc[i] = c[i] * q;
    }
    return;
  }
  int64_t i = begin;
#ifdef IAL_CPU_AVX2
  // GCC does not vectorise this loop (it keeps a branch for the binding test).
  if constexpr (sizeof(T) == sizeof(float)) {
    auto load = [](const T* p) { return _mm256_loadu_ps(reinterpret_cast<const float*>(p)); };
    auto store = [](T* p, __m256 v) { _mm256_storeu_ps(reinterpret_cast<float*>(p), v); };
    auto add_to = [&](T* p, __m256 v) { store(p, _mm256_add_ps(load(p), v)); };
    const __m256 sv = _mm256_set1_ps(float(s));
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= end; i += 8) {
      const __m256 q = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(load(g + i), load(na + i + 1)), load(nb + i)),
                                     load(nc + i - 1));
      const __m256 xv = load(x + i);
      const __m256 rv = load(r + i);
      const __m256 f = _mm256_min_ps(rv, sv);  // r < s ? r : s, as gate_factor
      const __m256 av = load(a + i);
      const __m256 bv = load(b + i);
      const __m256 cv = load(c + i);
      const __m256 ea = _mm256_mul_ps(q, _mm256_sub_ps(load(hp + i - 1), xv));
      const __m256 eb = _mm256_mul_ps(q, _mm256_sub_ps(load(hp + i), xv));
      const __m256 ec = _mm256_mul_ps(q, _mm256_sub_ps(load(hp + i + 1), xv));
      const __m256 t = _mm256_fmadd_ps(av, ea, _mm256_fmadd_ps(bv, eb, _mm256_mul_ps(cv, ec)));
      const __m256 bound = _mm256_and_ps(_mm256_cmp_ps(rv, sv, _CMP_LT_OQ), t);
      const __m256 fa = _mm256_mul_ps(f, av);
      const __m256 fb = _mm256_mul_ps(f, bv);
      const __m256 fc = _mm256_mul_ps(f, cv);
      const __m256 vx = _mm256_mul_ps(_mm256_sub_ps(_mm256_sub_ps(_mm256_sub_ps(one, fa), fb), fc), q);
      if constexpr (kAccX) add_to(gx + i, vx); else store(gx + i, vx);
      if constexpr (kAccG) {
        add_to(ga + i, _mm256_mul_ps(f, ea));
        add_to(gb + i, _mm256_mul_ps(f, eb));
        add_to(gc + i, _mm256_mul_ps(f, ec));
        add_to(gt + i, bound);
      } else {
        store(ga + i, _mm256_mul_ps(f, ea));
        store(gb + i, _mm256_mul_ps(f, eb));
        store(gc + i, _mm256_mul_ps(f, ec));
        store(gt + i, bound);
      }
      add_to(gs + i, _mm256_sub_ps(t, bound));
      store(ca + i, _mm256_mul_ps(fa, q));
      store(cb + i, _mm256_mul_ps(fb, q));
      store(cc + i, _mm256_mul_ps(fc, q));
    }
  }
#endif
  for (; i < end; ++i) {
    const T q = g[i] + na[i + 1] + nb[i] + nc[i - 1];
    const T xv = x[i];
    const T f = gate_factor(s, r[i]);
    const T ea = q * (hp[i - 1] - xv);
    const T eb = q * (hp[i] - xv);
    const T ec = q * (hp[i + 1] - xv);
    const T t = a[i] * ea + b[i] * eb + c[i] * ec;
    const T bound = r[i] < s ? t : T(0);  // t where the normalisation binds (f = r < s)
    const T fa = f * a[i];
    const T fb = f * b[i];
    const T fc = f * c[i];
    put<kAccX>(gx + i, (T(1) - fa - fb - fc) * q);
    put<kAccG>(ga + i, f * ea);
    put<kAccG>(gb + i, f * eb);
    put<kAccG>(gc + i, f * ec);
    put<kAccG>(gt + i, bound);
    gs[i] += t - bound;
    ca[i] = fa * q;
    cb[i] = fb * q;
    cc[i] = fc * q;
  }
}

template <bool kAccX, bool kAccG, bool kScaled, typename T>
void backward_span(const BackwardLine<T>& l, int64_t begin, int64_t end) {
  backward_span_loop<kAccX, kAccG, kScaled>(begin, end, l.g, l.x, l.a, l.b, l.c, l.hp, l.na, l.nb, l.nc, l.gx, l.ga,
                                            l.gb, l.gc, l.ca, l.cb, l.cc, l.scale.r, l.scale.s, l.gt, l.gs);
}

// First line: h = x, so every gate gradient is zero and nothing flows further.
template <bool kAccX, bool kAccG, bool kScaled, typename T>
void backward_first_line(const BackwardLine<T>& l, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    put<kAccX>(l.gx + i, adjoint(l, i, n));
    if constexpr (!kAccG) {
      l.ga[i] = T(0);
      l.gb[i] = T(0);
      l.gc[i] = T(0);
      if constexpr (kScaled) l.gt[i] = T(0);
    }
  }
}

// A row in place.
template <bool kAccX, bool kAccG, bool kScaled, typename T>
void backward_line(const BackwardLine<T>& l, int64_t n) {
  if (l.hp == nullptr) {
    backward_first_line<kAccX, kAccG, kScaled>(l, n);
    return;
  }
  backward_edge<kAccX, kAccG, kScaled>(l, 0, n);
  if (n == 1) return;
  backward_span<kAccX, kAccG, kScaled>(l, 1, n - 1);
  backward_edge<kAccX, kAccG, kScaled>(l, n - 1, n);
}

// A padded line. The zeroed gates a[0] and c[n-1] make every other output
// exact; the two gradients of those dropped gates are restored afterwards.
template <bool kAccX, bool kAccG, bool kScaled, typename T>
void backward_line_padded(const BackwardLine<T>& l, int64_t n, int64_t n_vec) {
  if (l.hp == nullptr) {
    // The pads hold zeros, so the adjoint needs no edge tests.
    for (int64_t i = 0; i < n_vec; ++i) {
      put<kAccX>(l.gx + i, l.g[i] + l.na[i + 1] + l.nb[i] + l.nc[i - 1]);
      if constexpr (!kAccG) {
        l.ga[i] = T(0);
        l.gb[i] = T(0);
        l.gc[i] = T(0);
        if constexpr (kScaled) l.gt[i] = T(0);
      }
    }
    return;
  }
  // The dropped gates are zero in the tile, so t leaves them out; only their
  // own gradient (written from the pads) is restored.
  const T ga_first = kAccG ? l.ga[0] : T(0);
  const T gc_last = kAccG ? l.gc[n - 1] : T(0);
  backward_span<kAccX, kAccG, kScaled>(l, 0, n_vec);
  l.ga[0] = ga_first;
  l.gc[n - 1] = gc_last;
}

// ---------------------------------------------------------------------------
// Vertical scans read rows in place; the rows `kAheadLines` steps ahead are
// prefetched because the five streams (four far-apart input planes and the
// output) are more than the hardware prefetchers keep ahead of on their own.
// With shared gates (several channels per call, gate rows in cache) the rows
// to be written are fetched too: measured faster there, not with per-channel
// gates, whose more streams already keep the prefetchers busy.

constexpr int64_t kAheadLines = 4;
constexpr int64_t kCacheLine = 64;

template <typename T>
inline void prefetch_line(const T* p, int64_t n) {
  const char* bytes = reinterpret_cast<const char*>(p);
  for (int64_t off = 0; off < n * int64_t(sizeof(T)); off += kCacheLine) {
    __builtin_prefetch(bytes + off, 0, 3);
  }
}

// The same for a row about to be written.
template <typename T>
inline void prefetch_line_for_writing(T* p, int64_t n) {
  const char* bytes = reinterpret_cast<const char*>(p);
  for (int64_t off = 0; off < n * int64_t(sizeof(T)); off += kCacheLine) {
    __builtin_prefetch(bytes + off, 1, 3);
  }
}

// ---------------------------------------------------------------------------
// Tile buffers of horizontal scans ("padded lines"): line k of a buffer at
// lines + k * stride, position i of it at + i, with kPad zeros before position
// 0 and zeros after position n-1 up to a whole vector and one more, so that the
// padded line kernels run whole, aligned vectors with no edge cases.

template <typename T>
constexpr int64_t kPad = kCacheLine / int64_t(sizeof(T));
template <typename T>
constexpr int64_t kVectorLanes = 32 / int64_t(sizeof(T));  // one AVX2 register

// n rounded up to whole vectors: the positions a padded line kernel computes.
template <typename T>
inline int64_t padded_length(int64_t n) {
  return (n + kVectorLanes<T> - 1) / kVectorLanes<T> * kVectorLanes<T>;
}

// Distance between padded lines: whole cache lines.
template <typename T>
inline int64_t padded_stride(const ScanGeometry& geo) {
  const int64_t per_line = kPad<T>;
  return (kPad<T> + padded_length<T>(geo.cross()) + 1 + per_line - 1) / per_line * per_line;
}

// Zeros the pads of `count` padded lines starting at `lines` (position 0 of the first).
template <typename T>
void zero_pads(T* lines, int64_t count, int64_t stride, int64_t n) {
  for (int64_t k = 0; k < count; ++k) {
    T* line = lines + k * stride;
    for (int64_t i = -kPad<T>; i < 0; ++i) line[i] = T(0);
    for (int64_t i = n; i < stride - kPad<T>; ++i) line[i] = T(0);
  }
}

// The gates a line drops (a at its first position, c at its last), zeroed in
// the tile buffers so the padded kernels can treat every position alike.
template <typename T>
void drop_edge_gates(T* a, T* c, int64_t count, int64_t stride, int64_t n) {
  for (int64_t k = 0; k < count; ++k) {
    a[k * stride] = T(0);
    c[k * stride + n - 1] = T(0);
  }
}

// ---------------------------------------------------------------------------
// Tile transposes for horizontal scans. A tile holds the lines (image columns)
// of steps [s0, s0 + count): position i of line k is row i of that column.

// Column of the image holding line k of the tile that starts at step s0.
inline int64_t tile_column(const ScanGeometry& geo, int64_t s0, int64_t k) {
  return geo.reverse ? geo.width - 1 - (s0 + k) : s0 + k;
}

// Where a tile move goes: into the lines, onto the plane (with kStreamToPlane
// around the caches where the ISA has it), or onto the plane keeping the
// larger of the two values (the max merge of spn_propagate).
enum class Move { kToLines, kToPlane, kStreamToPlane, kMaxToPlane };

template <typename T>
inline T larger(T a, T b) {
  return a > b ? a : b;
}

// out = the larger of out and in (ties and NaN in `in` keep out), as the
// merge of the tile scatter.
template <typename T>
void keep_larger(T* __restrict__ out, const T* __restrict__ in, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    out[i] = in[i] > out[i] ? in[i] : out[i];
  }
}

// Lines [k0, k1) of rows [i0, i1), one element at a time.
template <typename T, Move kMove>
void move_tile_scalar(T* plane, const ScanGeometry& geo, int64_t s0, int64_t k0, int64_t k1, int64_t i0,
                      int64_t i1, T* lines, int64_t stride) {
  for (int64_t i = i0; i < i1; ++i) {
    T* row = plane + i * geo.width;
    for (int64_t k = k0; k < k1; ++k) {
      T& pixel = row[tile_column(geo, s0, k)];
      if constexpr (kMove == Move::kToLines) {
        lines[k * stride + i] = pixel;
      } else if constexpr (kMove == Move::kToPlane || kMove == Move::kStreamToPlane) {
        pixel = lines[k * stride + i];
      } else {
        pixel = larger(lines[k * stride + i], pixel);
      }
    }
  }
}

#ifdef IAL_CPU_AVX2
// dst row m (m = 0..7) = column m of the 8x8 block at src (or the larger of
// the two with kMaxToPlane). Strides are in elements and may be negative
// (that reverses the order of the rows).
template <Move kMove>
inline void transpose8x8(const float* src, int64_t src_stride, float* dst, int64_t dst_stride) {
  __m256 r[8];
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm256_loadu_ps(src + i * src_stride);
  }
  ial::simd::transpose8x8(r);
  for (int i = 0; i < 8; ++i) {
    if constexpr (kMove == Move::kMaxToPlane) {
      // max_ps(a, b) = a > b ? a : b, as larger().
      r[i] = _mm256_max_ps(r[i], _mm256_loadu_ps(dst + i * dst_stride));
    }
    _mm256_storeu_ps(dst + i * dst_stride, r[i]);
  }
}

// Whole 8 x 8 blocks (8 rows of 8 lines), row blocks outermost so that the
// image is read or written in runs along its rows.
constexpr int64_t kAheadBlocks = 2;

// kStreamToPlane: each block row of 8 image rows goes to a staging buffer,
// from which every row's run of the tile is streamed (common/avx2_stream.h).
void stream_tile_blocks(float* plane, const ScanGeometry& geo, int64_t s0, int64_t lines8, int64_t rows8,
                        const float* lines, int64_t stride) {
  const int64_t w = geo.width;
  const int64_t line_step = geo.reverse ? -stride : stride;
  const int64_t lo_col = geo.reverse ? tile_column(geo, s0, lines8 - 1) : tile_column(geo, s0, 0);
  alignas(32) float stage[8][kMaxTile];
  for (int64_t i = 0; i < rows8; i += 8) {
    for (int64_t j = 0; j < lines8; j += 8) {
      const int64_t k = geo.reverse ? lines8 - 8 - j : j;
      const int64_t first_line = geo.reverse ? k + 7 : k;
      transpose8x8<Move::kToPlane>(lines + first_line * stride + i, line_step, stage[0] + j, kMaxTile);
    }
    for (int m = 0; m < 8; ++m) {
      ial::simd::stream_floats(plane + (i + m) * w + lo_col, stage[m], lines8);
    }
  }
  _mm_sfence();
}

template <Move kMove>
void move_tile_blocks(float* plane, const ScanGeometry& geo, int64_t s0, int64_t lines8, int64_t rows8,
                      float* lines, int64_t stride) {
  if constexpr (kMove == Move::kStreamToPlane) {
    stream_tile_blocks(plane, geo, s0, lines8, rows8, lines, stride);
    return;
  }
  const int64_t w = geo.width;
  const int64_t line_step = geo.reverse ? -stride : stride;
  constexpr int kWrite = kMove == Move::kToLines ? 0 : 1;
  // The hardware prefetchers do not run far enough ahead along the tile's
  // short row segments: fetch the rows kAheadBlocks row blocks ahead.
  const int64_t lo_col = geo.reverse ? tile_column(geo, s0, lines8 - 1) : tile_column(geo, s0, 0);
  for (int64_t i = 0; i < rows8; i += 8) {
    if (lines8 > 0 && i + 8 * (kAheadBlocks + 1) <= geo.height) {
      for (int64_t r = i + 8 * kAheadBlocks; r < i + 8 * (kAheadBlocks + 1); ++r) {
        const char* first = reinterpret_cast<const char*>(plane + r * w + lo_col);
        const char* last = reinterpret_cast<const char*>(plane + r * w + lo_col + lines8 - 1);
        for (const char* q = first; q < last; q += kCacheLine) __builtin_prefetch(q, kWrite, 3);
        __builtin_prefetch(last, kWrite, 3);
      }
    }
    for (int64_t j = 0; j < lines8; j += 8) {
      // Lines k..k+7 are 8 adjacent columns, the last of them first when
      // reversed; the blocks go left to right either way.
      const int64_t k = geo.reverse ? lines8 - 8 - j : j;
      const int64_t first_line = geo.reverse ? k + 7 : k;
      float* block = plane + i * w + tile_column(geo, s0, first_line);
      float* line = lines + first_line * stride + i;
      if constexpr (kMove == Move::kToLines) {
        transpose8x8<kMove>(block, w, line, line_step);
      } else {
        transpose8x8<kMove>(line, line_step, block, w);
      }
    }
  }
}
#endif

// Moves the tile of steps [s0, s0 + count) between a plane and its lines.
template <typename T, Move kMove>
void move_tile(T* plane, const ScanGeometry& geo, int64_t s0, int64_t count, T* lines, int64_t stride) {
  int64_t lines8 = 0;
  int64_t rows8 = 0;
#ifdef IAL_CPU_AVX2
  if constexpr (sizeof(T) == sizeof(float)) {
    lines8 = count / 8 * 8;
    rows8 = geo.height / 8 * 8;
    move_tile_blocks<kMove>(reinterpret_cast<float*>(plane), geo, s0, lines8, rows8,
                            reinterpret_cast<float*>(lines), stride);
  }
#endif
  move_tile_scalar<T, kMove>(plane, geo, s0, 0, lines8, rows8, geo.height, lines, stride);
  move_tile_scalar<T, kMove>(plane, geo, s0, lines8, count, 0, geo.height, lines, stride);
}

template <typename T>
void gather_tile(const T* plane, const ScanGeometry& geo, int64_t s0, int64_t count, T* lines, int64_t stride) {
  move_tile<T, Move::kToLines>(const_cast<T*>(plane), geo, s0, count, lines, stride);
}

// Writes the tile's lines onto the plane, or with `merge_max` keeps the larger
// value; `stream`: around the caches.
template <typename T>
void scatter_tile(const T* lines, const ScanGeometry& geo, int64_t s0, int64_t count, T* plane, int64_t stride,
                  bool merge_max = false, bool stream = false) {
  if (merge_max) {
    move_tile<T, Move::kMaxToPlane>(plane, geo, s0, count, const_cast<T*>(lines), stride);
  } else if (stream) {
    move_tile<T, Move::kStreamToPlane>(plane, geo, s0, count, const_cast<T*>(lines), stride);
  } else {
    move_tile<T, Move::kToPlane>(plane, geo, s0, count, const_cast<T*>(lines), stride);
  }
}

// Fetches, for every row, the cache lines holding the tile of `tile` steps
// that starts at s0 (the one the scan visits next): rows lie a whole row apart
// and the hardware prefetchers do not follow that pattern. Only for narrow
// tiles; a wide tile is read in runs along its rows, which they do follow.
template <typename T>
void prefetch_tile(const T* plane, const ScanGeometry& geo, int64_t tile, int64_t s0) {
  if (s0 < 0 || s0 >= geo.steps() || tile * int64_t(sizeof(T)) > 2 * kCacheLine) return;
  const int64_t last = s0 + tile - 1 < geo.steps() ? s0 + tile - 1 : geo.steps() - 1;
  const int64_t c0 = tile_column(geo, s0, 0);
  const int64_t c1 = tile_column(geo, s0, last - s0);
  const int64_t lo = c0 < c1 ? c0 : c1;
  const int64_t hi = c0 < c1 ? c1 : c0;
  const int64_t per_line = kCacheLine / int64_t(sizeof(T));
  for (int64_t i = 0; i < geo.height; ++i) {
    const T* row = plane + i * geo.width;
    for (int64_t col = lo; col <= hi; col += per_line) {
      __builtin_prefetch(row + col, 0, 2);
    }
    __builtin_prefetch(row + hi, 0, 2);
  }
}

// ---------------------------------------------------------------------------
// A kernel call scans `channels` planes of x against one gate set: one plane
// with its own gates (per-channel layout), or channels of one batch item with
// shared gates. The channels run inside the loop over tiles (horizontal) or
// row blocks (vertical), so the shared gates are transposed, or read from
// memory, once per call rather than once per channel.

template <bool V>
struct Flag {
  static constexpr bool value = V;
};

// Calls f(Flag<x>, Flag<g>) for the four combinations of two runtime flags.
template <typename F>
inline void with_flags(bool x, bool g, F&& f) {
  if (x) {
    if (g) f(Flag<true>{}, Flag<true>{});
    else f(Flag<true>{}, Flag<false>{});
  } else if (g) {
    f(Flag<false>{}, Flag<true>{});
  } else {
    f(Flag<false>{}, Flag<false>{});
  }
}

// Steps [s0, s1) of the vertical block visited `ahead` lines after step s of
// channel ch (forward order), as (channel, step); step -1 when past the end.
// Used only to aim prefetches.
struct Ahead {
  int64_t channel;
  int64_t step;
};

inline Ahead ahead_forward(int64_t ch, int64_t s, int64_t s0, int64_t s1, int64_t channels, int64_t steps) {
  const int64_t t = s + kAheadLines;
  if (t < s1) return {ch, t};
  if (ch + 1 < channels) return {ch + 1, s0 + t - s1 < s1 ? s0 + t - s1 : -1};
  return {0, t < steps ? t : -1};
}

inline Ahead ahead_backward(int64_t ch, int64_t s, int64_t s0, int64_t s1, int64_t channels) {
  const int64_t t = s - kAheadLines;
  if (t >= s0) return {ch, t};
  if (ch + 1 < channels) return {ch + 1, s1 - (s0 - t) >= s0 ? s1 - (s0 - t) : -1};
  return {0, t};  // the next block's, or -1 .. -kAheadLines: none
}

// ---------------------------------------------------------------------------
// Forward.

// Horizontal scans of several channels step through the lines of two channels
// at once, so each gate line read from the tile buffers (whole rows, beyond the
// L2) serves both while it is in L1; more than two measured no faster.
constexpr int64_t kChannelGroup = 2;

inline int64_t channel_group(int64_t channels) { return channels < kChannelGroup ? channels : kChannelGroup; }

// Tiles of a horizontal forward: the gates (a, b, c), the channel group's x
// (then h) and, scaled, the gate scale's r.
inline int64_t forward_tiles(int64_t channels, bool scaled) { return 3 + channel_group(channels) + (scaled ? 1 : 0); }

template <typename T>
int64_t forward_scratch(const ScanGeometry& geo, const Tiling& tiling, int64_t channels, bool scaled) {
  // Horizontal: gate (and gate scale) tiles, the x tiles the scan turns into
  // h (channel_group), and each channel's last line of the previous tile.
  // Vertical: two rows of h per channel for merge_max.
  const int64_t lines = geo.horizontal ? forward_tiles(channels, scaled) * tiling.tile + channels : 2 * channels;
  return lines * padded_stride<T>(geo) + kPad<T>;
}

template <bool kScaled, typename T>
void forward_vertical(const ScanInputs<T>& in, T* h, const ScanGeometry& geo, const Tiling& tiling, T* scratch) {
  const int64_t steps = geo.steps();
  const int64_t n = geo.cross();
  const int64_t w = geo.width;
  const int64_t hw = geo.plane_size();
  const int64_t channels = in.channels;
  // Every channel runs a block of rows while its gate rows are in cache.
  const int64_t block = channels > 1 ? tiling.rows : steps;
  // merge_max: the scan's rows go to two rows per channel, the output keeps the maximum.
  const int64_t ls = padded_stride<T>(geo);
  auto ring = [&](int64_t ch, int64_t s) { return scratch + kPad<T> + (2 * ch + (s & 1)) * ls; };
  for (int64_t s0 = 0; s0 < steps; s0 += block) {
    const int64_t s1 = s0 + block < steps ? s0 + block : steps;
    for (int64_t ch = 0; ch < channels; ++ch) {
      const T* x = in.x + ch * hw;
      T* hc = h + ch * hw;
      for (int64_t s = s0; s < s1; ++s) {
        const Ahead next = ahead_forward(ch, s, s0, s1, channels, steps);
        if (next.step >= 0) {
          const int64_t row = geo.position(next.step) * w;
          prefetch_line(in.x + next.channel * hw + row, n);
          if (channels > 1) prefetch_line_for_writing(h + next.channel * hw + row, n);
          if (next.channel == 0) {
            prefetch_line(in.a + row, n);
            prefetch_line(in.b + row, n);
            prefetch_line(in.c + row, n);
            if constexpr (kScaled) prefetch_line(in.r + row, n);
          }
        }
        const int64_t off = geo.position(s) * w;
        GateScale<T> scale;
        if constexpr (kScaled) scale = {in.r + off, in.strength[ch]};
        if (in.merge_max) {
          T* row = ring(ch, s);
          forward_line<kScaled>(x + off, in.a + off, in.b + off, in.c + off, s == 0 ? nullptr : ring(ch, s - 1), row,
                                n, scale);
          keep_larger(hc + off, row, n);
          continue;
        }
        const T* hp = s == 0 ? nullptr : hc + geo.position(s - 1) * w;
        forward_line<kScaled>(x + off, in.a + off, in.b + off, in.c + off, hp, hc + off, n, scale);
      }
    }
  }
}

// With whole-row tiles a channel's gathers read its planes from memory while
// the scan between gathers reads only the tile buffers: the scan of one
// channel (group) fetches the next one's planes into the cache, a part per
// line step, so their reads overlap the arithmetic instead of following it.
struct NextPlanes {
  static constexpr int kMaxSpans = 3;
  const char* begin[kMaxSpans] = {};
  int64_t bytes = 0;  // of each span
  int spans = 0;

  template <typename T>
  void add(const T* p, int64_t elements) {
    begin[spans++] = reinterpret_cast<const char*>(p);
    bytes = elements * int64_t(sizeof(T));
  }

  // Part k of `parts`.
  void prefetch_part(int64_t k, int64_t parts) const {
    const int64_t lo = bytes * k / parts / kCacheLine * kCacheLine;
    const int64_t hi = bytes * (k + 1) / parts;
    for (int i = 0; i < spans; ++i) {
      for (int64_t off = lo; off < hi; off += kCacheLine) __builtin_prefetch(begin[i] + off, 0, 2);
    }
  }
};

// Whether a tile of `count` steps is the whole plane, where NextPlanes pays.
inline bool whole_plane_tile(const ScanGeometry& geo, int64_t count) { return count == geo.steps(); }

// kLineKernels = false leaves the tile's lines as gathered, so x comes back out unchanged: the
// scan's memory traffic without its arithmetic (benchmarks/scan_access_pattern.cpp).
template <bool kScaled, typename T, bool kLineKernels = true>
void forward_horizontal(const ScanInputs<T>& in, T* h, const ScanGeometry& geo, const Tiling& tiling,
                        T* scratch) {
  const int64_t steps = geo.steps();
  const int64_t n = geo.cross();
  const int64_t n_vec = padded_length<T>(n);
  const int64_t hw = geo.plane_size();
  const int64_t channels = in.channels;
  const int64_t tw = tiling.tile;
  const int64_t ls = padded_stride<T>(geo);
  const int64_t tile = tw * ls;
  const int64_t group = channel_group(channels);
  T* la = scratch + kPad<T>;
  T* lb = la + tile;
  T* lc = lb + tile;
  T* lx = lc + tile;  // the x tiles of a group of channels, then their h tiles
  T* lr = lx + group * tile;  // the gate scale's r, when scaled
  T* carry = kScaled ? lr + tile : lr;  // channel k: h of the last line of its previous tile, at k * ls
  zero_pads(la, forward_tiles(channels, kScaled) * tw + channels, ls, n);
  for (int64_t s0 = 0; s0 < steps; s0 += tw) {
    const int64_t count = steps - s0 < tw ? steps - s0 : tw;
    gather_tile(in.a, geo, s0, count, la, ls);
    gather_tile(in.b, geo, s0, count, lb, ls);
    gather_tile(in.c, geo, s0, count, lc, ls);
    if constexpr (kScaled) gather_tile(in.r, geo, s0, count, lr, ls);
    drop_edge_gates(la, lc, count, ls, n);
    for (int64_t c0 = 0; c0 < channels; c0 += group) {
      const int64_t g = channels - c0 < group ? channels - c0 : group;
      for (int64_t j = 0; j < g; ++j) gather_tile(in.x + (c0 + j) * hw, geo, s0, count, lx + j * tile, ls);
      if (c0 + g < channels) {
        prefetch_tile(in.x + (c0 + g) * hw, geo, tw, s0);
      } else {
        prefetch_tile(in.x, geo, tw, s0 + tw);
        prefetch_tile(in.a, geo, tw, s0 + tw);
        prefetch_tile(in.b, geo, tw, s0 + tw);
        prefetch_tile(in.c, geo, tw, s0 + tw);
        if constexpr (kScaled) prefetch_tile(in.r, geo, tw, s0 + tw);
      }
      NextPlanes next;
      if (c0 + g < channels && whole_plane_tile(geo, count)) {
        next.add(in.x + (c0 + g) * hw, (channels - c0 - g < group ? channels - c0 - g : group) * hw);
      }
      for (int64_t k = 0; kLineKernels && k < count; ++k) {
        const int64_t off = k * ls;
        next.prefetch_part(k, count);
        for (int64_t j = 0; j < g; ++j) {
          T* lj = lx + j * tile;
          const T* hp = k > 0 ? lj + off - ls : (s0 > 0 ? carry + (c0 + j) * ls : nullptr);
          GateScale<T> scale;
          if constexpr (kScaled) scale = {lr + off, in.strength[c0 + j]};
          forward_line_padded<kScaled>(lj + off, la + off, lb + off, lc + off, hp, n_vec, scale);
        }
      }
      for (int64_t j = 0; j < g; ++j) {
        scatter_tile(lx + j * tile, geo, s0, count, h + (c0 + j) * hw, ls, in.merge_max, in.stream);
        std::memcpy(carry + (c0 + j) * ls, lx + j * tile + (count - 1) * ls, n * sizeof(T));
      }
    }
  }
}

template <typename T>
void forward(const ScanInputs<T>& in, T* h, const ScanGeometry& geo, const Tiling& tiling, T* scratch) {
  const bool scaled = in.r != nullptr;
  if (geo.horizontal) {
    scaled ? forward_horizontal<true>(in, h, geo, tiling, scratch) : forward_horizontal<false>(in, h, geo, tiling, scratch);
  } else {
    scaled ? forward_vertical<true>(in, h, geo, tiling, scratch) : forward_vertical<false>(in, h, geo, tiling, scratch);
  }
}

// ---------------------------------------------------------------------------
// Backward: one reverse scan reading g, x, the gates and h once and writing
// (or adding to) grad_x and the gate gradients (summed over the channels) once.

// What every channel's line s+1 sends back to line s through its gates: two
// sets of (a, b, c) padded lines per channel, the one being read and the one
// being written. Every channel visits the same steps, so one index says which is which.
template <typename T>
struct SendLines {
  T* base;  // position 0 of the first line
  int64_t ls;

  T* operator()(int64_t channel, int set, int gate) const { return base + ((channel * 2 + set) * 3 + gate) * ls; }
};

// Send lines (6 per channel), the strength's share per channel (1 line each,
// scaled gates only), a line that takes x's gradient when it is not wanted and,
// horizontally, the tiles.
template <typename T>
int64_t backward_scratch(const ScanGeometry& geo, const Tiling& tiling, int64_t channels, bool scaled) {
  const int64_t lines =
      (scaled ? 7 : 6) * channels + 1 + (geo.horizontal ? (scaled ? 12 : 10) * tiling.tile : 0);
  return lines * padded_stride<T>(geo) + kPad<T>;
}

// The strength's share of channel ch: the sum of its line (n positions), in order.
template <typename T>
T line_sum(const T* line, int64_t n) {
  T total = T(0);
  for (int64_t i = 0; i < n; ++i) total += line[i];
  return total;
}

// Runs lines [first, last] backwards of one channel; line k's operands come
// from at(k). `cur` selects the send set being written and flips per line.
template <bool kAccX, bool kAccG, bool kPadded, bool kScaled, typename T, typename At>
void backward_lines(const SendLines<T>& send, int64_t ch, int& cur, int64_t last, int64_t first, int64_t n,
                    At&& at) {
  const int64_t n_vec = padded_length<T>(n);
  for (int64_t k = last; k >= first; --k) {
    BackwardLine<T> line = at(k);
    line.na = send(ch, 1 - cur, 0);
    line.nb = send(ch, 1 - cur, 1);
    line.nc = send(ch, 1 - cur, 2);
    line.ca = send(ch, cur, 0);
    line.cb = send(ch, cur, 1);
    line.cc = send(ch, cur, 2);
    if constexpr (kPadded) {
      backward_line_padded<kAccX, kAccG, kScaled>(line, n, n_vec);
    } else {
      backward_line<kAccX, kAccG, kScaled>(line, n);
    }
    cur = 1 - cur;
  }
}

template <bool kScaled, typename T>
void backward_vertical(const BackwardInputs<T>& p, const ScanGeometry& geo, const Tiling& tiling,
                       const SendLines<T>& send, T* shares, T* x_sink) {
  const bool want_x = p.gx != nullptr;
  const int64_t steps = geo.steps();
  const int64_t n = geo.cross();
  const int64_t w = geo.width;
  const int64_t hw = geo.plane_size();
  const int64_t channels = p.channels;
  const int64_t block = channels > 1 ? tiling.rows : steps;
  int block_cur = 0;
  for (int64_t s1 = steps; s1 > 0; s1 -= block) {
    const int64_t s0 = s1 - block > 0 ? s1 - block : 0;
    for (int64_t ch = 0; ch < channels; ++ch) {
      const int64_t po = ch * hw;
      int cur = block_cur;
      // The gate rows of this block are written by the first channel (unless
      // the call adds to them) and added to by the others.
      with_flags(p.accumulate_x && want_x, p.accumulate_gates || ch > 0, [&](auto acc_x, auto acc_g) {
        backward_lines<decltype(acc_x)::value, decltype(acc_g)::value, false, kScaled>(
            send, ch, cur, s1 - 1, s0, n, [&](int64_t s) {
              const Ahead next = ahead_backward(ch, s, s0, s1, channels);
              if (next.step >= 0) {
                const int64_t row = geo.position(next.step) * w;
                const int64_t pn = next.channel * hw + row;
                prefetch_line(p.g + pn, n);
                prefetch_line(p.x + pn, n);
                prefetch_line(p.h + pn, n);
                if (channels > 1 && want_x) prefetch_line_for_writing(p.gx + pn, n);
                if (next.channel == 0) {
                  prefetch_line(p.a + row, n);
                  prefetch_line(p.b + row, n);
                  prefetch_line(p.c + row, n);
                  if constexpr (kScaled) {
                    prefetch_line(p.r + row, n);
                    prefetch_line(p.gt + row, n);
                  }
                }
              }
              const int64_t off = geo.position(s) * w;
              const T* hp = s == 0 ? nullptr : p.h + po + geo.position(s - 1) * w;
              BackwardLine<T> line{
                  p.g + po + off, p.x + po + off, p.a + off, p.b + off, p.c + off, hp, nullptr, nullptr,
                  nullptr, want_x ? p.gx + po + off : x_sink, p.ga + off, p.gb + off, p.gc + off, nullptr,
                  nullptr, nullptr};
              if constexpr (kScaled) {
                line.scale = {p.r + off, p.strength[ch]};
                line.gt = p.gt + off;
                line.gs = shares + ch * send.ls;
              }
              return line;
            });
      });
    }
    if ((s1 - s0) % 2 == 1) block_cur = 1 - block_cur;
  }
  if constexpr (kScaled) {
    for (int64_t ch = 0; ch < channels; ++ch) p.strength_share[ch] = line_sum(shares + ch * send.ls, n);
  }
}

template <bool kScaled, typename T>
void backward_horizontal(const BackwardInputs<T>& p, const ScanGeometry& geo, const Tiling& tiling,
                         const SendLines<T>& send, T* shares, T* tiles) {
  const int64_t steps = geo.steps();
  const int64_t n = geo.cross();
  const int64_t hw = geo.plane_size();
  const int64_t channels = p.channels;
  const bool want_x = p.gx != nullptr;  // otherwise lgx takes x's gradient and stays
  const int64_t ls = send.ls;
  const int64_t tw = tiling.tile;
  const int64_t tile = tw * ls;
  T* la = tiles;
  T* lb = la + tile;
  T* lc = lb + tile;
  T* lga = lc + tile;  // the gate gradients of the tile, summed over the channels
  T* lgb = lga + tile;
  T* lgc = lgb + tile;
  T* lg = lgc + tile;
  T* lx = lg + tile;
  T* lh = lx + tile;  // line k: h of step s0 - 1 + k, the previous line of step s0 + k
  T* lgx = lh + tile;
  T* lr = lgx + tile;   // scaled gates: r, and the sum of t where the normalisation binds
  T* lgt = lr + tile;
  zero_pads(la, (kScaled ? 12 : 10) * tw, ls, n);
  // The h lines a tile needs start one step before it.
  auto gather_previous_h = [&](const T* h, int64_t s0, int64_t count) {
    if (s0 > 0) {
      gather_tile(h, geo, s0 - 1, count, lh, ls);
    } else if (count > 1) {
      gather_tile(h, geo, 0, count - 1, lh + ls, ls);
    }
  };
  auto prefetch_channel = [&](int64_t ch, int64_t s0) {
    prefetch_tile(p.g + ch * hw, geo, tw, s0);
    prefetch_tile(p.x + ch * hw, geo, tw, s0);
    prefetch_tile(p.h + ch * hw, geo, tw, s0 - 1);
  };
  const int64_t last_tile = ((steps - 1) / tw) * tw;
  int tile_cur = 0;
  for (int64_t s0 = last_tile; s0 >= 0; s0 -= tw) {
    const int64_t count = steps - s0 < tw ? steps - s0 : tw;
    gather_tile(p.a, geo, s0, count, la, ls);
    gather_tile(p.b, geo, s0, count, lb, ls);
    gather_tile(p.c, geo, s0, count, lc, ls);
    drop_edge_gates(la, lc, count, ls, n);
    if constexpr (kScaled) gather_tile(p.r, geo, s0, count, lr, ls);
    if (p.accumulate_gates) {
      gather_tile(p.ga, geo, s0, count, lga, ls);
      gather_tile(p.gb, geo, s0, count, lgb, ls);
      gather_tile(p.gc, geo, s0, count, lgc, ls);
      if constexpr (kScaled) gather_tile(p.gt, geo, s0, count, lgt, ls);
    }
    for (int64_t ch = 0; ch < channels; ++ch) {
      const int64_t po = ch * hw;
      gather_tile(p.g + po, geo, s0, count, lg, ls);
      gather_tile(p.x + po, geo, s0, count, lx, ls);
      gather_previous_h(p.h + po, s0, count);
      if (p.accumulate_x && want_x) gather_tile(p.gx + po, geo, s0, count, lgx, ls);
      if (ch + 1 < channels) {
        prefetch_channel(ch + 1, s0);
      } else if (s0 > 0) {
        prefetch_channel(0, s0 - tw);
        prefetch_tile(p.a, geo, tw, s0 - tw);
        prefetch_tile(p.b, geo, tw, s0 - tw);
        prefetch_tile(p.c, geo, tw, s0 - tw);
      }
      NextPlanes next;
      if (ch + 1 < channels && whole_plane_tile(geo, count)) {
        next.add(p.g + po + hw, hw);
        next.add(p.x + po + hw, hw);
        next.add(p.h + po + hw, hw);
      }
      int cur = tile_cur;
      with_flags(p.accumulate_x && want_x, p.accumulate_gates || ch > 0, [&](auto acc_x, auto acc_g) {
        backward_lines<decltype(acc_x)::value, decltype(acc_g)::value, true, kScaled>(
            send, ch, cur, count - 1, 0, n, [&](int64_t k) {
              next.prefetch_part(count - 1 - k, count);
              const int64_t off = k * ls;
              const T* hp = s0 + k == 0 ? nullptr : lh + off;
              BackwardLine<T> line{
                  lg + off, lx + off, la + off, lb + off, lc + off, hp, nullptr, nullptr, nullptr,
                  lgx + off, lga + off, lgb + off, lgc + off, nullptr, nullptr, nullptr};
              if constexpr (kScaled) {
                line.scale = {lr + off, p.strength[ch]};
                line.gt = lgt + off;
                line.gs = shares + ch * ls;
              }
              return line;
            });
      });
      if (want_x) scatter_tile(lgx, geo, s0, count, p.gx + po, ls, false, p.stream_x);
    }
    scatter_tile(lga, geo, s0, count, p.ga, ls, false, p.stream_gates);
    scatter_tile(lgb, geo, s0, count, p.gb, ls, false, p.stream_gates);
    scatter_tile(lgc, geo, s0, count, p.gc, ls, false, p.stream_gates);
    if constexpr (kScaled) scatter_tile(lgt, geo, s0, count, p.gt, ls, false, p.stream_gates);
    if (count % 2 == 1) tile_cur = 1 - tile_cur;
  }
  if constexpr (kScaled) {
    for (int64_t ch = 0; ch < channels; ++ch) p.strength_share[ch] = line_sum(shares + ch * ls, n);
  }
}

template <typename T>
void backward(const BackwardInputs<T>& p, const ScanGeometry& geo, const Tiling& tiling, T* scratch) {
  const int64_t ls = padded_stride<T>(geo);
  const SendLines<T> send{scratch + kPad<T>, ls};
  // Nothing comes back to the last line, and the pads stay zero: start from
  // zeros (so do the strength's shares).
  const bool scaled = p.r != nullptr;
  const int64_t send_size = (scaled ? 7 : 6) * p.channels * ls;
  for (int64_t i = 0; i < send_size; ++i) scratch[i] = T(0);
  T* shares = send.base + 6 * p.channels * ls;
  T* x_sink = send.base + send_size;
  T* tiles = x_sink + ls;
  if (scaled) {
    geo.horizontal ? backward_horizontal<true>(p, geo, tiling, send, shares, tiles)
                   : backward_vertical<true>(p, geo, tiling, send, shares, x_sink);
  } else {
    geo.horizontal ? backward_horizontal<false>(p, geo, tiling, send, shares, tiles)
                   : backward_vertical<false>(p, geo, tiling, send, shares, x_sink);
  }
}

// ---------------------------------------------------------------------------
// Element-wise pieces of the fused propagation.

template <typename T>
inline T magnitude(T v) {
  return v < T(0) ? -v : v;
}

// The loops below leave the first `done` positions to AVX2 code for float
// (GCC keeps a branch in them, and random signs mispredict every other one).

template <typename T>
void normalize(
    const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ c,
    T* __restrict__ na, T* __restrict__ nb, T* __restrict__ nc, int64_t n) {
  int64_t done = 0;
#ifdef IAL_CPU_AVX2
  if constexpr (sizeof(T) == sizeof(float)) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (; done + 8 <= n; done += 8) {
      const __m256 av = _mm256_loadu_ps(reinterpret_cast<const float*>(a) + done);
      const __m256 bv = _mm256_loadu_ps(reinterpret_cast<const float*>(b) + done);
      const __m256 cv = _mm256_loadu_ps(reinterpret_cast<const float*>(c) + done);
      const __m256 sum = _mm256_add_ps(_mm256_add_ps(_mm256_and_ps(av, abs_mask), _mm256_and_ps(bv, abs_mask)),
                                       _mm256_and_ps(cv, abs_mask));
      const __m256 m = _mm256_max_ps(sum, one);  // sum > 1 ? sum : 1
      _mm256_storeu_ps(reinterpret_cast<float*>(na) + done, _mm256_div_ps(av, m));
      _mm256_storeu_ps(reinterpret_cast<float*>(nb) + done, _mm256_div_ps(bv, m));
      _mm256_storeu_ps(reinterpret_cast<float*>(nc) + done, _mm256_div_ps(cv, m));
    }
  }
#endif
  for (int64_t i = done; i < n; ++i) {
    const T s = magnitude(a[i]) + magnitude(b[i]) + magnitude(c[i]);
    const T m = s > T(1) ? s : T(1);
    na[i] = a[i] / m;
    nb[i] = b[i] / m;
    nc[i] = c[i] / m;
  }
}

// -1, 0 or 1, as torch's sign (the derivative of abs).
template <typename T>
inline T sign(T v) {
  return v > T(0) ? T(1) : (v < T(0) ? T(-1) : T(0));
}

#ifdef IAL_CPU_AVX2
inline __m256 sign8(__m256 v) {
  const __m256 zero = _mm256_setzero_ps();
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_sub_ps(_mm256_and_ps(_mm256_cmp_ps(v, zero, _CMP_GT_OQ), one),
                       _mm256_and_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ), one));
}
#endif

// d(v / m)/dv with m = max(1, s), s = |a| + |b| + |c|: where s >= 1 (the
// branch torch's clamp_min differentiates at s = 1), g_j / s - sign(v_j) *
// sum_k g_k v_k / s^2; elsewhere the identity.
template <typename T>
void normalize_backward(
    const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ c,
    T* __restrict__ ga, T* __restrict__ gb, T* __restrict__ gc, int64_t n) {
  int64_t done = 0;
#ifdef IAL_CPU_AVX2
  if constexpr (sizeof(T) == sizeof(float)) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    auto at = [](T* p, int64_t i) { return reinterpret_cast<float*>(p) + i; };
    auto in = [](const T* p, int64_t i) { return reinterpret_cast<const float*>(p) + i; };
    for (; done + 8 <= n; done += 8) {
      const __m256 av = _mm256_loadu_ps(in(a, done));
      const __m256 bv = _mm256_loadu_ps(in(b, done));
      const __m256 cv = _mm256_loadu_ps(in(c, done));
      const __m256 gav = _mm256_loadu_ps(at(ga, done));
      const __m256 gbv = _mm256_loadu_ps(at(gb, done));
      const __m256 gcv = _mm256_loadu_ps(at(gc, done));
      const __m256 sum = _mm256_add_ps(_mm256_add_ps(_mm256_and_ps(av, abs_mask), _mm256_and_ps(bv, abs_mask)),
                                       _mm256_and_ps(cv, abs_mask));
      const __m256 scaled = _mm256_cmp_ps(sum, one, _CMP_GE_OQ);
      const __m256 inv = _mm256_div_ps(one, _mm256_blendv_ps(one, sum, scaled));
      const __m256 dot = _mm256_and_ps(
          _mm256_mul_ps(_mm256_fmadd_ps(gav, av, _mm256_fmadd_ps(gbv, bv, _mm256_mul_ps(gcv, cv))),
                        _mm256_mul_ps(inv, inv)),
          scaled);
      _mm256_storeu_ps(at(ga, done), _mm256_fnmadd_ps(sign8(av), dot, _mm256_mul_ps(gav, inv)));
      _mm256_storeu_ps(at(gb, done), _mm256_fnmadd_ps(sign8(bv), dot, _mm256_mul_ps(gbv, inv)));
      _mm256_storeu_ps(at(gc, done), _mm256_fnmadd_ps(sign8(cv), dot, _mm256_mul_ps(gcv, inv)));
    }
  }
#endif
  for (int64_t i = done; i < n; ++i) {
    const T av = a[i];
    const T bv = b[i];
    const T cv = c[i];
    const T s = magnitude(av) + magnitude(bv) + magnitude(cv);
    const bool scaled = s >= T(1);
    const T inv = scaled ? T(1) / s : T(1);
    const T dot = scaled ? (ga[i] * av + gb[i] * bv + gc[i] * cv) * inv * inv : T(0);
    ga[i] = ga[i] * inv - sign(av) * dot;
    gb[i] = gb[i] * inv - sign(bv) * dot;
    gc[i] = gc[i] * inv - sign(cv) * dot;
  }
}

// r = 1 / (|a| + |b| + |c|), the bound of scaled gates (see GateScale);
// infinite where all three are zero, so every strength passes there.
template <typename T>
void inverse_magnitude(
    const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ c, T* __restrict__ r, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    r[i] = T(1) / (magnitude(a[i]) + magnitude(b[i]) + magnitude(c[i]));
  }
}

// Where the normalisation of scaled gates binds they are g / |g|, whose
// gradient adds -sign(g_j) sum_k g_k e_k / |g|^2 to every gate j: `bound`
// holds that sum (over the channels, gt of the backward), (ga, gb, gc) the rest
// of the raw gates' gradient, completed in place.
template <typename T>
void binding_backward(
    const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ c, const T* __restrict__ bound,
    T* __restrict__ ga, T* __restrict__ gb, T* __restrict__ gc, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T m = magnitude(a[i]) + magnitude(b[i]) + magnitude(c[i]);
    const T k = m > T(0) ? bound[i] / (m * m) : T(0);
    ga[i] -= sign(a[i]) * k;
    gb[i] -= sign(b[i]) * k;
    gc[i] -= sign(c[i]) * k;
  }
}

// Which of the four scans is the first to reach their maximum (torch.max(dim)
// routes the gradient to the first index of a tie), as 0..3. The running
// argmax is kept in T so that the loop vectorises.
template <typename T>
void first_max(const T* const* h, uint8_t* __restrict__ which, int64_t n) {
  const T* __restrict__ h0 = h[0];
  const T* __restrict__ h1 = h[1];
  const T* __restrict__ h2 = h[2];
  const T* __restrict__ h3 = h[3];
  for (int64_t i = 0; i < n; ++i) {
    T best = h0[i];
    T index = T(0);
    const bool over1 = h1[i] > best;
    best = over1 ? h1[i] : best;
    index = over1 ? T(1) : index;
    const bool over2 = h2[i] > best;
    best = over2 ? h2[i] : best;
    index = over2 ? T(2) : index;
    index = h3[i] > best ? T(3) : index;
    which[i] = static_cast<uint8_t>(index);
  }
}

// out = grad where `direction` is the first maximum, else 0.
template <typename T>
void route(const T* __restrict__ grad, const uint8_t* __restrict__ which, int direction, T* __restrict__ out,
           int64_t n) {
  const uint8_t wanted = static_cast<uint8_t>(direction);
  for (int64_t i = 0; i < n; ++i) {
    out[i] = which[i] == wanted ? grad[i] : T(0);
  }
}

template <typename T>
void add(T* __restrict__ out, const T* __restrict__ in, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    out[i] += in[i];
  }
}

template <typename T>
Kernels<T> make_kernels() {
  Kernels<T> k;
  k.forward_scratch = &forward_scratch<T>;
  k.forward = &forward<T>;
  k.backward_scratch = &backward_scratch<T>;
  k.backward = &backward<T>;
  k.normalize = &normalize<T>;
  k.normalize_backward = &normalize_backward<T>;
  k.inverse_magnitude = &inverse_magnitude<T>;
  k.binding_backward = &binding_backward<T>;
  k.first_max = &first_max<T>;
  k.route = &route<T>;
  k.add = &add<T>;
  return k;
}

template <typename T>
Kernels<T> kernels() {
  return make_kernels<T>();
}

template Kernels<float> kernels<float>();
template Kernels<double> kernels<double>();

} // namespace IAL_CPU_ISA
} // namespace cpu
} // namespace spn
} // namespace ial
