// SPN scan on the CPU.
//
// Planes (one per batch item and channel) are independent and split across
// threads. Within a plane the recurrence runs line by line over contiguous
// arrays so the inner loop vectorises: vertical scans read image rows in
// place; horizontal scans first transpose a tile of kTile columns into
// per-thread line buffers, so every element still crosses memory once.
#include "../spn_scan.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace ial {
namespace spn {
namespace {

// Columns staged per transpose in horizontal scans: one 64-byte cache line of float.
constexpr int64_t kTile = 16;

// One forward step: h = (1 - a' - b - c') x + a' hp[i-1] + b hp[i] + c' hp[i+1],
// where a' (c') is a with the first (c with the last) position dropped.
// hp == nullptr marks the first line, where every gate is dropped.
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

// Inputs of one backward step. `na/nb/nc` hold what line s+1 sends back
// through its gates (na[i] = a'[s+1, i] q[s+1, i], ...; zeros on the last
// line). The adjoint of h at line s is
//   q[i] = g[i] + na[i+1] + nb[i] + nc[i-1].
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
  T* ca;  // what this line sends to line s-1
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
template <typename T>
inline void backward_edge(const BackwardLine<T>& l, int64_t i, int64_t n) {
  const T q = adjoint(l, i, n);
  const T xv = l.x[i];
  const bool has_a = i > 0;
  const bool has_c = i + 1 < n;
  const T a = has_a ? l.a[i] : T(0);
  const T c = has_c ? l.c[i] : T(0);
  const T b = l.b[i];
  l.gx[i] = (T(1) - a - b - c) * q;
  l.ga[i] = has_a ? q * (l.hp[i - 1] - xv) : T(0);
  l.gb[i] = q * (l.hp[i] - xv);
  l.gc[i] = has_c ? q * (l.hp[i + 1] - xv) : T(0);
  l.ca[i] = a * q;
  l.cb[i] = b * q;
  l.cc[i] = c * q;
}

// Interior positions 1..n-2: every gate present. Parameters (not locals) carry
// __restrict__ so the compiler vectorises the loop.
template <typename T>
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
    gx[i] = (T(1) - a[i] - b[i] - c[i]) * q;
    ga[i] = q * (hp[i - 1] - xv);
    gb[i] = q * (hp[i] - xv);
    gc[i] = q * (hp[i + 1] - xv);
    ca[i] = a[i] * q;
    cb[i] = b[i] * q;
    cc[i] = c[i] * q;
  }
}

template <typename T>
void backward_line(const BackwardLine<T>& l, int64_t n) {
  if (l.hp == nullptr) {
    // First line: h = x, so every gate gradient is zero and nothing flows further.
    for (int64_t i = 0; i < n; ++i) {
      l.gx[i] = adjoint(l, i, n);
    }
    std::fill(l.ga, l.ga + n, T(0));
    std::fill(l.gb, l.gb + n, T(0));
    std::fill(l.gc, l.gc + n, T(0));
    return;
  }
  backward_edge(l, 0, n);
  if (n == 1) return;
  backward_interior(
      n, l.g, l.x, l.a, l.b, l.c, l.hp, l.na, l.nb, l.nc, l.gx, l.ga, l.gb, l.gc, l.ca, l.cb, l.cc);
  backward_edge(l, n - 1, n);
}

// Moves the lines of steps [s0, s0 + count) of a horizontal scan (image
// columns) between a plane and `lines` (line k at lines + k * height).
// Full tiles take the unrolled path; the scan's last tile may be partial.
template <typename T, bool kToLines, int64_t kCount, int64_t kStep>
void transpose_columns_fixed(T* plane, const ScanGeometry& geo, int64_t first, T* lines) {
  const int64_t w = geo.width;
  const int64_t h = geo.height;
  // The next tile's piece of each row is fetched ahead of use: rows are far
  // apart and the hardware prefetchers do not follow this pattern.
  const int64_t ahead = kStep * kCount;
  const bool prefetch = kToLines && first + 2 * ahead >= 0 && first + 2 * ahead < w;
  // Blocks of 4 rows keep the line-side accesses 4 elements wide.
  constexpr int64_t kRows = 4;
  int64_t i = 0;
  for (; i + kRows <= h; i += kRows) {
    T* col = plane + i * w + first;
    if (prefetch) {
      for (int64_t r = 0; r < kRows; ++r) {
        __builtin_prefetch(col + r * w + ahead, 0, 2);
        __builtin_prefetch(col + r * w + 2 * ahead - kStep, 0, 2);
      }
    }
    for (int64_t k = 0; k < kCount; ++k) {
      T* line = lines + k * h + i;
      for (int64_t r = 0; r < kRows; ++r) {
        if (kToLines) line[r] = col[r * w + kStep * k];
        else col[r * w + kStep * k] = line[r];
      }
    }
  }
  for (; i < h; ++i) {
    T* col = plane + i * w + first;
    for (int64_t k = 0; k < kCount; ++k) {
      if (kToLines) lines[k * h + i] = col[kStep * k];
      else col[kStep * k] = lines[k * h + i];
    }
  }
}

template <typename T, bool kToLines>
void transpose_columns(T* plane, const ScanGeometry& geo, int64_t s0, int64_t count, T* lines) {
  if (count == kTile) {
    if (geo.reverse) {
      transpose_columns_fixed<T, kToLines, kTile, -1>(plane, geo, geo.position(s0), lines);
    } else {
      transpose_columns_fixed<T, kToLines, kTile, 1>(plane, geo, geo.position(s0), lines);
    }
    return;
  }
  const int64_t w = geo.width;
  const int64_t h = geo.height;
  for (int64_t i = 0; i < h; ++i) {
    T* row = plane + i * w;
    for (int64_t k = 0; k < count; ++k) {
      T& pixel = row[geo.position(s0 + k)];
      if (kToLines) lines[k * h + i] = pixel;
      else pixel = lines[k * h + i];
    }
  }
}

template <typename T>
void gather_columns(const T* plane, const ScanGeometry& geo, int64_t s0, int64_t count, T* lines) {
  transpose_columns<T, true>(const_cast<T*>(plane), geo, s0, count, lines);
}

template <typename T>
void scatter_columns(const T* lines, const ScanGeometry& geo, int64_t s0, int64_t count, T* plane) {
  transpose_columns<T, false>(plane, geo, s0, count, const_cast<T*>(lines));
}

// Pointers to one plane of x and its three gate planes.
template <typename T>
struct PlaneInputs {
  const T* x;
  const T* a;
  const T* b;
  const T* c;
};

template <typename T>
PlaneInputs<T> plane_inputs(const T* x, const T* gates, const ScanGeometry& geo, int64_t p) {
  const int64_t hw = geo.plane_size();
  const int64_t n = p / geo.channels;
  const int64_t ch = p % geo.channels;
  const T* a = gates + (n * 3 * geo.channels + ch) * hw;
  return {x + p * hw, a, a + geo.channels * hw, a + 2 * geo.channels * hw};
}

template <typename T>
void forward_plane(const PlaneInputs<T>& in, T* h, const ScanGeometry& geo, std::vector<T>& scratch) {
  const int64_t steps = geo.steps();
  const int64_t n = geo.cross();
  if (!geo.horizontal) {
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t off = geo.position(s) * geo.width;
      const T* hp = s == 0 ? nullptr : h + geo.position(s - 1) * geo.width;
      forward_line(in.x + off, in.a + off, in.b + off, in.c + off, hp, h + off, n);
    }
    return;
  }
  const int64_t tile = kTile * n;
  scratch.resize(5 * tile + n);
  T* lx = scratch.data();
  T* la = lx + tile;
  T* lb = la + tile;
  T* lc = lb + tile;
  T* lh = lc + tile;
  T* carry = lh + tile;  // h of the last line of the previous tile
  for (int64_t s0 = 0; s0 < steps; s0 += kTile) {
    const int64_t count = std::min(kTile, steps - s0);
    gather_columns(in.x, geo, s0, count, lx);
    gather_columns(in.a, geo, s0, count, la);
    gather_columns(in.b, geo, s0, count, lb);
    gather_columns(in.c, geo, s0, count, lc);
    for (int64_t k = 0; k < count; ++k) {
      const T* hp = k > 0 ? lh + (k - 1) * n : (s0 > 0 ? carry : nullptr);
      const int64_t off = k * n;
      forward_line(lx + off, la + off, lb + off, lc + off, hp, lh + off, n);
    }
    scatter_columns(lh, geo, s0, count, h);
    std::memcpy(carry, lh + (count - 1) * n, n * sizeof(T));
  }
}

template <typename T>
at::Tensor forward_kernel(const at::Tensor& x, const at::Tensor& gates, const ScanGeometry& geo) {
  at::Tensor h = at::empty(x.sizes(), x.options());
  const T* xd = x.const_data_ptr<T>();
  const T* gd = gates.const_data_ptr<T>();
  T* hd = h.mutable_data_ptr<T>();
  at::parallel_for(0, geo.planes(), 1, [&](int64_t begin, int64_t end) {
    std::vector<T> scratch;
    for (int64_t p = begin; p < end; ++p) {
      forward_plane(plane_inputs(xd, gd, geo, p), hd + p * geo.plane_size(), geo, scratch);
    }
  });
  return h;
}

template <typename T>
void backward_plane(
    const T* g,
    const PlaneInputs<T>& in,
    const T* h,
    T* gx,
    T* gates_grad[3],
    const ScanGeometry& geo,
    std::vector<T>& scratch) {
  const int64_t steps = geo.steps();
  const int64_t n = geo.cross();
  // Two sets of (a, b, c) contribution lines: the one being read (from line
  // s+1) and the one being written (for line s-1).
  const int64_t staged = geo.horizontal ? (10 * kTile + 1) * n : 0;
  scratch.resize(6 * n + staged);
  T* send[2][3];
  for (int buf = 0; buf < 2; ++buf) {
    for (int j = 0; j < 3; ++j) {
      send[buf][j] = scratch.data() + (buf * 3 + j) * n;
    }
  }
  // Nothing comes back to the last line.
  std::fill(send[1][0], send[1][0] + 3 * n, T(0));
  int cur = 0;
  auto step = [&](const T* lg, const T* lx, const T* la, const T* lb, const T* lc,
                  const T* hp, T* lgx, T* lga, T* lgb, T* lgc) {
    BackwardLine<T> line{
        lg, lx, la, lb, lc, hp, send[1 - cur][0], send[1 - cur][1], send[1 - cur][2],
        lgx, lga, lgb, lgc, send[cur][0], send[cur][1], send[cur][2]};
    backward_line(line, n);
    cur = 1 - cur;
  };

  if (!geo.horizontal) {
    for (int64_t s = steps - 1; s >= 0; --s) {
      const int64_t off = geo.position(s) * geo.width;
      const T* hp = s == 0 ? nullptr : h + geo.position(s - 1) * geo.width;
      step(g + off, in.x + off, in.a + off, in.b + off, in.c + off, hp,
           gx + off, gates_grad[0] + off, gates_grad[1] + off, gates_grad[2] + off);
    }
    return;
  }

  const int64_t tile = kTile * n;
  T* lg = scratch.data() + 6 * n;
  T* lx = lg + tile;
  T* la = lx + tile;
  T* lb = la + tile;
  T* lc = lb + tile;
  T* lgx = lc + tile;
  T* lga = lgx + tile;
  T* lgb = lga + tile;
  T* lgc = lgb + tile;
  T* lh = lgc + tile;  // kTile + 1 lines: line 0 holds h of the step before the tile
  const int64_t last_tile = ((steps - 1) / kTile) * kTile;
  for (int64_t s0 = last_tile; s0 >= 0; s0 -= kTile) {
    const int64_t count = std::min(kTile, steps - s0);
    gather_columns(g, geo, s0, count, lg);
    gather_columns(in.x, geo, s0, count, lx);
    gather_columns(in.a, geo, s0, count, la);
    gather_columns(in.b, geo, s0, count, lb);
    gather_columns(in.c, geo, s0, count, lc);
    if (s0 > 0) {
      gather_columns(h, geo, s0 - 1, 1, lh);
    }
    gather_columns(h, geo, s0, count, lh + n);
    for (int64_t k = count - 1; k >= 0; --k) {
      const int64_t s = s0 + k;
      const int64_t off = k * n;
      const T* hp = s == 0 ? nullptr : lh + off;
      step(lg + off, lx + off, la + off, lb + off, lc + off, hp,
           lgx + off, lga + off, lgb + off, lgc + off);
    }
    scatter_columns(lgx, geo, s0, count, gx);
    scatter_columns(lga, geo, s0, count, gates_grad[0]);
    scatter_columns(lgb, geo, s0, count, gates_grad[1]);
    scatter_columns(lgc, geo, s0, count, gates_grad[2]);
  }
}

template <typename T>
std::tuple<at::Tensor, at::Tensor> backward_kernel(
    const at::Tensor& grad_h,
    const at::Tensor& x,
    const at::Tensor& gates,
    const at::Tensor& h,
    const ScanGeometry& geo) {
  at::Tensor grad_x = at::empty(x.sizes(), x.options());
  at::Tensor grad_gates = at::empty(gates.sizes(), gates.options());
  const T* gd = grad_h.const_data_ptr<T>();
  const T* xd = x.const_data_ptr<T>();
  const T* gatesd = gates.const_data_ptr<T>();
  const T* hd = h.const_data_ptr<T>();
  T* gxd = grad_x.mutable_data_ptr<T>();
  T* ggd = grad_gates.mutable_data_ptr<T>();
  const int64_t hw = geo.plane_size();
  at::parallel_for(0, geo.planes(), 1, [&](int64_t begin, int64_t end) {
    std::vector<T> scratch;
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = p / geo.channels;
      const int64_t ch = p % geo.channels;
      T* ga = ggd + (n * 3 * geo.channels + ch) * hw;
      T* gates_grad[3] = {ga, ga + geo.channels * hw, ga + 2 * geo.channels * hw};
      backward_plane(gd + p * hw, plane_inputs(xd, gatesd, geo, p), hd + p * hw,
                     gxd + p * hw, gates_grad, geo, scratch);
    }
  });
  return {grad_x, grad_gates};
}

at::Tensor spn_scan_cpu(const at::Tensor& x, const at::Tensor& gates, int64_t direction) {
  const auto geo = check_forward_args(x, gates, direction, /*allow_reduced_precision=*/false);
  TORCH_CHECK(x.device().is_cpu(), "spn_scan: the CPU kernel got a tensor on ", x.device());
  const at::Tensor xc = x.contiguous();
  const at::Tensor gc = gates.contiguous();
  if (xc.numel() == 0) {
    return at::empty(x.sizes(), x.options());
  }
  at::Tensor h;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spn_scan_cpu", [&] {
    h = forward_kernel<scalar_t>(xc, gc, geo);
  });
  return h;
}

std::tuple<at::Tensor, at::Tensor> spn_scan_backward_cpu(
    const at::Tensor& grad_h,
    const at::Tensor& x,
    const at::Tensor& gates,
    const at::Tensor& h,
    int64_t direction) {
  const auto geo = check_backward_args(grad_h, x, gates, h, direction, /*allow_reduced_precision=*/false);
  TORCH_CHECK(x.device().is_cpu(), "spn_scan_backward: the CPU kernel got a tensor on ", x.device());
  if (x.numel() == 0) {
    return {at::empty(x.sizes(), x.options()), at::empty(gates.sizes(), gates.options())};
  }
  // grad_h may be an expanded (stride-0) tensor: read it through a contiguous
  // copy and never write to it.
  const at::Tensor gc = grad_h.contiguous();
  const at::Tensor xc = x.contiguous();
  const at::Tensor gatesc = gates.contiguous();
  const at::Tensor hc = h.contiguous();
  std::tuple<at::Tensor, at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spn_scan_backward_cpu", [&] {
    out = backward_kernel<scalar_t>(gc, xc, gatesc, hc, geo);
  });
  return out;
}

} // namespace

TORCH_LIBRARY_IMPL(ial, CPU, m) {
  m.impl("spn_scan", &spn_scan_cpu);
  m.impl("spn_scan_backward", &spn_scan_backward_cpu);
}

} // namespace spn
} // namespace ial
