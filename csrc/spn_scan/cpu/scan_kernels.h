// Per-plane SPN scan kernels, compiled once per instruction set.
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
#pragma once

#include "../spn_scan.h"
#include "scan_kernels_api.h"

#include <cstdint>
#include <cstring>

#ifdef IAL_CPU_AVX2
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
// Line kernels (one scan step over `n` contiguous positions).

// h = (1 - a' - b - c') x + a' hp[i-1] + b hp[i] + c' hp[i+1], where a' (c') is
// a with the first (c with the last) position dropped. hp == nullptr marks the
// first line, where every gate is dropped.
template <typename T>
void forward_line(
    const T* __restrict__ x,
    const T* __restrict__ a,
    const T* __restrict__ b,
    const T* __restrict__ c,
    const T* __restrict__ hp,
    T* __restrict__ h,
    int64_t n) {
  if (hp == nullptr) {
    std::memcpy(h, x, n * sizeof(T));
    return;
  }
  if (n == 1) {
    h[0] = (T(1) - b[0]) * x[0] + b[0] * hp[0];
    return;
  }
  h[0] = (T(1) - b[0] - c[0]) * x[0] + b[0] * hp[0] + c[0] * hp[1];
  for (int64_t i = 1; i < n - 1; ++i) {
    h[i] = (T(1) - a[i] - b[i] - c[i]) * x[i] + a[i] * hp[i - 1] +
        b[i] * hp[i] + c[i] * hp[i + 1];
  }
  const int64_t l = n - 1;
  h[l] = (T(1) - a[l] - b[l]) * x[l] + a[l] * hp[l - 1] + b[l] * hp[l];
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
};

template <typename T>
inline T adjoint(const BackwardLine<T>& l, int64_t i, int64_t n) {
  T q = l.g[i] + l.nb[i];
  if (i + 1 < n) q += l.na[i + 1];
  if (i > 0) q += l.nc[i - 1];
  return q;
}

// Edge positions (first and last), where a or c is dropped.
template <bool kAccX, bool kAccG, typename T>
inline void backward_edge(const BackwardLine<T>& l, int64_t i, int64_t n) {
  const T q = adjoint(l, i, n);
  const T xv = l.x[i];
  const bool has_a = i > 0;
  const bool has_c = i + 1 < n;
  const T a = has_a ? l.a[i] : T(0);
  const T c = has_c ? l.c[i] : T(0);
  const T b = l.b[i];
  put<kAccX>(l.gx + i, (T(1) - a - b - c) * q);
  put<kAccG>(l.ga + i, has_a ? q * (l.hp[i - 1] - xv) : T(0));
  put<kAccG>(l.gb + i, q * (l.hp[i] - xv));
  put<kAccG>(l.gc + i, has_c ? q * (l.hp[i + 1] - xv) : T(0));
  l.ca[i] = a * q;
  l.cb[i] = b * q;
  l.cc[i] = c * q;
}

// Interior positions 1..n-2: every gate present. Parameters (not struct
// members) carry __restrict__ so the compiler vectorises the loop.
template <bool kAccX, bool kAccG, typename T>
void backward_interior(
    int64_t n,
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
    T* __restrict__ cc) {
  for (int64_t i = 1; i < n - 1; ++i) {
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
}

template <bool kAccX, bool kAccG, typename T>
void backward_line(const BackwardLine<T>& l, int64_t n) {
  if (l.hp == nullptr) {
    // First line: h = x, so every gate gradient is zero and nothing flows further.
    for (int64_t i = 0; i < n; ++i) {
      put<kAccX>(l.gx + i, adjoint(l, i, n));
      if constexpr (!kAccG) {
        l.ga[i] = T(0);
        l.gb[i] = T(0);
        l.gc[i] = T(0);
      }
    }
    return;
  }
  backward_edge<kAccX, kAccG>(l, 0, n);
  if (n == 1) return;
  backward_interior<kAccX, kAccG>(
      n, l.g, l.x, l.a, l.b, l.c, l.hp, l.na, l.nb, l.nc, l.gx, l.ga, l.gb, l.gc, l.ca, l.cb, l.cc);
  backward_edge<kAccX, kAccG>(l, n - 1, n);
}

// ---------------------------------------------------------------------------
// Vertical scans read rows in place; the rows `kAheadLines` steps ahead are
// prefetched because the five streams (four far-apart input planes and the
// output) are more than the hardware prefetchers keep ahead of on their own.

constexpr int64_t kAheadLines = 4;
constexpr int64_t kCacheLine = 64;

template <typename T>
inline void prefetch_line(const T* p, int64_t n) {
  const char* bytes = reinterpret_cast<const char*>(p);
  for (int64_t off = 0; off < n * int64_t(sizeof(T)); off += kCacheLine) {
    __builtin_prefetch(bytes + off, 0, 3);
  }
}

// ---------------------------------------------------------------------------
// Tile transposes for horizontal scans. A tile holds the lines (image columns)
// of steps [s0, s0 + count); line k of a tile lies at lines + k * stride.

// Column of the image holding line k of the tile that starts at step s0.
inline int64_t tile_column(const ScanGeometry& geo, int64_t s0, int64_t k) {
  return geo.reverse ? geo.width - 1 - (s0 + k) : s0 + k;
}

#ifdef IAL_CPU_AVX2
// dst row m (m = 0..7) = column m of the 8x8 block at src. Strides are in
// elements and may be negative (that reverses the order of the rows).
inline void transpose8x8(const float* src, int64_t src_stride, float* dst, int64_t dst_stride) {
  __m256 r[8];
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm256_loadu_ps(src + i * src_stride);
  }
  ial::simd::transpose8x8(r);
  for (int i = 0; i < 8; ++i) {
    _mm256_storeu_ps(dst + i * dst_stride, r[i]);
  }
}

// A full float tile, 8 rows at a time: tile / 8 blocks of 8x8 per row block.
// The tile's columns are [lo, lo + tile); line k is column lo + k, or
// lo + tile - 1 - k when the scan runs right to left.
template <bool kToLines>
inline int64_t move_full_tile_simd(
    float* plane, const ScanGeometry& geo, int64_t tile, int64_t s0, float* lines, int64_t stride) {
  const int64_t w = geo.width;
  const int64_t lo = geo.reverse ? tile_column(geo, s0, tile - 1) : tile_column(geo, s0, 0);
  const int64_t line_step = geo.reverse ? -stride : stride;
  int64_t i = 0;
  for (; i + 8 <= geo.height; i += 8) {
    for (int64_t part = 0; part < tile; part += 8) {
      float* block = plane + i * w + lo + part;
      // Tile line holding column lo + part.
      const int64_t first_line = geo.reverse ? tile - 1 - part : part;
      float* line = lines + first_line * stride + i;
      if (kToLines) {
        transpose8x8(block, w, line, line_step);
      } else {
        transpose8x8(line, line_step, block, w);
      }
    }
  }
  return i;
}
#endif

// Moves the tile of steps [s0, s0 + count) between a plane and its lines,
// starting at row `first_row` (rows before it were moved by the SIMD path).
template <typename T, bool kToLines>
void move_tile_scalar(
    T* plane, const ScanGeometry& geo, int64_t s0, int64_t count, T* lines, int64_t stride,
    int64_t first_row) {
  const int64_t w = geo.width;
  for (int64_t i = first_row; i < geo.height; ++i) {
    T* row = plane + i * w;
    for (int64_t k = 0; k < count; ++k) {
      T& pixel = row[tile_column(geo, s0, k)];
      if (kToLines) lines[k * stride + i] = pixel;
      else pixel = lines[k * stride + i];
    }
  }
}

template <typename T, bool kToLines>
void move_tile(
    T* plane, const ScanGeometry& geo, int64_t tile, int64_t s0, int64_t count, T* lines, int64_t stride) {
  int64_t done = 0;
#ifdef IAL_CPU_AVX2
  if constexpr (sizeof(T) == sizeof(float)) {
    if (count == tile && tile % 8 == 0) {
      done = move_full_tile_simd<kToLines>(
          reinterpret_cast<float*>(plane), geo, tile, s0, reinterpret_cast<float*>(lines), stride);
    }
  }
#else
  (void)tile;
#endif
  move_tile_scalar<T, kToLines>(plane, geo, s0, count, lines, stride, done);
}

template <typename T>
void gather_tile(
    const T* plane, const ScanGeometry& geo, int64_t tile, int64_t s0, int64_t count, T* lines, int64_t stride) {
  move_tile<T, true>(const_cast<T*>(plane), geo, tile, s0, count, lines, stride);
}

template <typename T>
void scatter_tile(
    const T* lines, const ScanGeometry& geo, int64_t tile, int64_t s0, int64_t count, T* plane, int64_t stride) {
  move_tile<T, false>(plane, geo, tile, s0, count, const_cast<T*>(lines), stride);
}

// Fetches, for every row, the cache lines holding the tile that starts at
// step s0 (the one the scan visits next): rows lie a whole row apart and the
// hardware prefetchers do not follow that pattern.
template <typename T>
void prefetch_tile(const T* plane, const ScanGeometry& geo, int64_t tile, int64_t s0) {
  if (s0 < 0 || s0 >= geo.steps()) return;
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

// Distance between tile lines in the scratch buffer: whole cache lines.
inline int64_t line_stride(const ScanGeometry& geo, int64_t element_size) {
  const int64_t per_line = kCacheLine / element_size;
  return (geo.cross() + per_line - 1) / per_line * per_line;
}

// ---------------------------------------------------------------------------
// Forward.

template <typename T>
int64_t forward_scratch(const ScanGeometry& geo, const Tiling& tiling) {
  return geo.horizontal ? (5 * tiling.tile + 1) * line_stride(geo, sizeof(T)) : 0;
}

template <typename T>
void forward_plane(const PlaneInputs<T>& in, T* h, const ScanGeometry& geo, const Tiling& tiling, T* scratch) {
  const int64_t steps = geo.steps();
  const int64_t n = geo.cross();
  if (!geo.horizontal) {
    const int64_t w = geo.width;
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t off = geo.position(s) * w;
      if (s + kAheadLines < steps) {
        const int64_t ahead = geo.position(s + kAheadLines) * w;
        prefetch_line(in.x + ahead, n);
        prefetch_line(in.a + ahead, n);
        prefetch_line(in.b + ahead, n);
        prefetch_line(in.c + ahead, n);
      }
      const T* hp = s == 0 ? nullptr : h + geo.position(s - 1) * w;
      forward_line(in.x + off, in.a + off, in.b + off, in.c + off, hp, h + off, n);
    }
    return;
  }
  const int64_t tw = tiling.tile;
  const int64_t ls = line_stride(geo, sizeof(T));
  const int64_t tile = tw * ls;
  T* lx = scratch;
  T* la = lx + tile;
  T* lb = la + tile;
  T* lc = lb + tile;
  T* lh = lc + tile;
  T* carry = lh + tile;  // h of the last line of the previous tile
  for (int64_t s0 = 0; s0 < steps; s0 += tw) {
    const int64_t count = steps - s0 < tw ? steps - s0 : tw;
    gather_tile(in.x, geo, tw, s0, count, lx, ls);
    gather_tile(in.a, geo, tw, s0, count, la, ls);
    gather_tile(in.b, geo, tw, s0, count, lb, ls);
    gather_tile(in.c, geo, tw, s0, count, lc, ls);
    prefetch_tile(in.x, geo, tw, s0 + tw);
    prefetch_tile(in.a, geo, tw, s0 + tw);
    prefetch_tile(in.b, geo, tw, s0 + tw);
    prefetch_tile(in.c, geo, tw, s0 + tw);
    for (int64_t k = 0; k < count; ++k) {
      const T* hp = k > 0 ? lh + (k - 1) * ls : (s0 > 0 ? carry : nullptr);
      const int64_t off = k * ls;
      forward_line(lx + off, la + off, lb + off, lc + off, hp, lh + off, n);
    }
    scatter_tile(lh, geo, tw, s0, count, h, ls);
    std::memcpy(carry, lh + (count - 1) * ls, n * sizeof(T));
  }
}

// ---------------------------------------------------------------------------
// Backward: one reverse scan reading g, x, the gates and h once and writing
// (or adding to) grad_x and the three gate gradients once.

template <typename T>
int64_t backward_scratch(const ScanGeometry& geo, const Tiling& tiling) {
  const int64_t ls = line_stride(geo, sizeof(T));
  return 6 * ls + (geo.horizontal ? 10 * tiling.tile * ls : 0);
}

template <bool kAccX, bool kAccG, typename T>
void backward_plane_impl(const BackwardPlane<T>& p, const ScanGeometry& geo, const Tiling& tiling, T* scratch) {
  const int64_t steps = geo.steps();
  const int64_t n = geo.cross();
  const int64_t ls = line_stride(geo, sizeof(T));
  // Two sets of (a, b, c) contribution lines: the one being read (from line
  // s+1) and the one being written (for line s-1).
  T* send[2][3];
  for (int buf = 0; buf < 2; ++buf) {
    for (int j = 0; j < 3; ++j) {
      send[buf][j] = scratch + (buf * 3 + j) * ls;
    }
  }
  // Nothing comes back to the last line.
  for (int j = 0; j < 3; ++j) {
    for (int64_t i = 0; i < n; ++i) send[1][j][i] = T(0);
  }
  int cur = 0;
  auto step = [&](const T* lg, const T* lx, const T* la, const T* lb, const T* lc,
                  const T* hp, T* lgx, T* lga, T* lgb, T* lgc) {
    BackwardLine<T> line{
        lg, lx, la, lb, lc, hp, send[1 - cur][0], send[1 - cur][1], send[1 - cur][2],
        lgx, lga, lgb, lgc, send[cur][0], send[cur][1], send[cur][2]};
    backward_line<kAccX, kAccG>(line, n);
    cur = 1 - cur;
  };

  if (!geo.horizontal) {
    const int64_t w = geo.width;
    for (int64_t s = steps - 1; s >= 0; --s) {
      const int64_t off = geo.position(s) * w;
      if (s - kAheadLines >= 0) {
        const int64_t ahead = geo.position(s - kAheadLines) * w;
        prefetch_line(p.g + ahead, n);
        prefetch_line(p.x + ahead, n);
        prefetch_line(p.a + ahead, n);
        prefetch_line(p.b + ahead, n);
        prefetch_line(p.c + ahead, n);
        prefetch_line(p.h + ahead, n);
      }
      const T* hp = s == 0 ? nullptr : p.h + geo.position(s - 1) * w;
      step(p.g + off, p.x + off, p.a + off, p.b + off, p.c + off, hp,
           p.gx + off, p.ga + off, p.gb + off, p.gc + off);
    }
    return;
  }

  const int64_t tw = tiling.tile;
  const int64_t tile = tw * ls;
  T* lg = scratch + 6 * ls;
  T* lx = lg + tile;
  T* la = lx + tile;
  T* lb = la + tile;
  T* lc = lb + tile;
  T* lh = lc + tile;  // line k: h of step s0 - 1 + k, the previous line of step s0 + k
  T* lgx = lh + tile;
  T* lga = lgx + tile;
  T* lgb = lga + tile;
  T* lgc = lgb + tile;
  const int64_t last_tile = ((steps - 1) / tw) * tw;
  for (int64_t s0 = last_tile; s0 >= 0; s0 -= tw) {
    const int64_t count = steps - s0 < tw ? steps - s0 : tw;
    gather_tile(p.g, geo, tw, s0, count, lg, ls);
    gather_tile(p.x, geo, tw, s0, count, lx, ls);
    gather_tile(p.a, geo, tw, s0, count, la, ls);
    gather_tile(p.b, geo, tw, s0, count, lb, ls);
    gather_tile(p.c, geo, tw, s0, count, lc, ls);
    if (s0 > 0) {
      gather_tile(p.h, geo, tw, s0 - 1, count, lh, ls);
    } else if (count > 1) {
      gather_tile(p.h, geo, tw, 0, count - 1, lh + ls, ls);
    }
    if constexpr (kAccX) gather_tile(p.gx, geo, tw, s0, count, lgx, ls);
    if constexpr (kAccG) {
      gather_tile(p.ga, geo, tw, s0, count, lga, ls);
      gather_tile(p.gb, geo, tw, s0, count, lgb, ls);
      gather_tile(p.gc, geo, tw, s0, count, lgc, ls);
    }
    const int64_t coming = s0 - tw;
    prefetch_tile(p.g, geo, tw, coming);
    prefetch_tile(p.x, geo, tw, coming);
    prefetch_tile(p.a, geo, tw, coming);
    prefetch_tile(p.b, geo, tw, coming);
    prefetch_tile(p.c, geo, tw, coming);
    prefetch_tile(p.h, geo, tw, coming - 1);
    for (int64_t k = count - 1; k >= 0; --k) {
      const int64_t s = s0 + k;
      const int64_t off = k * ls;
      const T* hp = s == 0 ? nullptr : lh + off;
      step(lg + off, lx + off, la + off, lb + off, lc + off, hp,
           lgx + off, lga + off, lgb + off, lgc + off);
    }
    scatter_tile(lgx, geo, tw, s0, count, p.gx, ls);
    scatter_tile(lga, geo, tw, s0, count, p.ga, ls);
    scatter_tile(lgb, geo, tw, s0, count, p.gb, ls);
    scatter_tile(lgc, geo, tw, s0, count, p.gc, ls);
  }
}

template <typename T>
void backward_plane(const BackwardPlane<T>& p, const ScanGeometry& geo, const Tiling& tiling, T* scratch) {
  if (p.accumulate_x) {
    if (p.accumulate_gates) {
      backward_plane_impl<true, true>(p, geo, tiling, scratch);
    } else {
      backward_plane_impl<true, false>(p, geo, tiling, scratch);
    }
  } else if (p.accumulate_gates) {
    backward_plane_impl<false, true>(p, geo, tiling, scratch);
  } else {
    backward_plane_impl<false, false>(p, geo, tiling, scratch);
  }
}

// ---------------------------------------------------------------------------
// Element-wise pieces of the fused propagation.

template <typename T>
inline T magnitude(T v) {
  return v < T(0) ? -v : v;
}

template <typename T>
void normalize(
    const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ c,
    T* __restrict__ na, T* __restrict__ nb, T* __restrict__ nc, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T s = magnitude(a[i]) + magnitude(b[i]) + magnitude(c[i]);
    const T m = s > T(1) ? s : T(1);
    na[i] = a[i] / m;
    nb[i] = b[i] / m;
    nc[i] = c[i] / m;
  }
}

// d(v / m)/dv with m = max(1, s), s = |a| + |b| + |c|: where s >= 1 (the
// branch torch's clamp_min differentiates at s = 1), g_j / s - sign(v_j) *
// sum_k g_k v_k / s^2; elsewhere the identity. sign(0) = 0, as torch's abs.
template <typename T>
void normalize_backward(
    const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ c,
    T* __restrict__ ga, T* __restrict__ gb, T* __restrict__ gc, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T av = a[i];
    const T bv = b[i];
    const T cv = c[i];
    const T s = magnitude(av) + magnitude(bv) + magnitude(cv);
    const bool scaled = s >= T(1);
    const T inv = scaled ? T(1) / s : T(1);
    const T dot = scaled ? (ga[i] * av + gb[i] * bv + gc[i] * cv) * inv * inv : T(0);
    const T sa = av > T(0) ? T(1) : (av < T(0) ? T(-1) : T(0));
    const T sb = bv > T(0) ? T(1) : (bv < T(0) ? T(-1) : T(0));
    const T sc = cv > T(0) ? T(1) : (cv < T(0) ? T(-1) : T(0));
    ga[i] = ga[i] * inv - sa * dot;
    gb[i] = gb[i] * inv - sb * dot;
    gc[i] = gc[i] * inv - sc * dot;
  }
}

template <typename T>
void maximum(T* __restrict__ out, const T* __restrict__ h, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    out[i] = h[i] > out[i] ? h[i] : out[i];
  }
}

// The first direction to reach the maximum takes the whole gradient, as
// torch.max(dim) routes it to the first index of a tie.
template <typename T>
void route(const T* __restrict__ grad, const T* const* h, int direction, T* __restrict__ out, int64_t n) {
  const T* __restrict__ h0 = h[0];
  const T* __restrict__ h1 = h[1];
  const T* __restrict__ h2 = h[2];
  const T* __restrict__ h3 = h[3];
  for (int64_t i = 0; i < n; ++i) {
    T best = h0[i];
    int which = 0;
    if (h1[i] > best) { best = h1[i]; which = 1; }
    if (h2[i] > best) { best = h2[i]; which = 2; }
    if (h3[i] > best) { which = 3; }
    out[i] = which == direction ? grad[i] : T(0);
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
  k.forward_plane = &forward_plane<T>;
  k.backward_scratch = &backward_scratch<T>;
  k.backward_plane = &backward_plane<T>;
  k.normalize = &normalize<T>;
  k.normalize_backward = &normalize_backward<T>;
  k.maximum = &maximum<T>;
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
