// Entry points of the per-plane SPN scan kernels, compiled once per instruction
// set (scan_kernels_default.cpp, scan_kernels_avx2.cpp);
// scan_kernels<T>() returns the table of the ISA that common/cpu_features.h picks.
// The fused propagation (csrc/spn_propagate) runs the same plane kernels.
#pragma once

#include "../spn_scan.h"

#include <cstdint>

namespace ial {
namespace spn {
namespace cpu {

// Horizontal scans move `tile` image columns at a time into line buffers, as
// many as the core's L2 holds (see choose_tiling).
struct Tiling {
  int64_t tile = 16;
};

// The tiling for a scan whose plane kernels keep `arrays` tile buffers of
// `element_size`-byte values live (5 forward, 10 backward), from the L2 size.
Tiling choose_tiling(const ScanGeometry& geo, int64_t element_size, int64_t arrays);

// One plane of x and its three gate planes.
template <typename T>
struct PlaneInputs {
  const T* x;
  const T* a;
  const T* b;
  const T* c;
};

// One plane of every backward operand. With accumulate_x (accumulate_gates)
// the plane adds its gradient to gx (ga, gb, gc) instead of writing it.
template <typename T>
struct BackwardPlane {
  const T* g;  // incoming gradient of h
  const T* x;
  const T* a;
  const T* b;
  const T* c;
  const T* h;
  T* gx;
  T* ga;
  T* gb;
  T* gc;
  bool accumulate_x = false;
  bool accumulate_gates = false;
};

template <typename T>
struct Kernels {
  // Elements of per-thread scratch each plane kernel needs.
  int64_t (*forward_scratch)(const ScanGeometry&, const Tiling&);
  void (*forward_plane)(const PlaneInputs<T>& in, T* h, const ScanGeometry&, const Tiling&, T* scratch);
  int64_t (*backward_scratch)(const ScanGeometry&, const Tiling&);
  void (*backward_plane)(const BackwardPlane<T>& in, const ScanGeometry&, const Tiling&, T* scratch);

  // Element-wise pieces of the fused propagation, over n positions.
  // (na, nb, nc) = (a, b, c) / max(1, |a| + |b| + |c|).
  void (*normalize)(const T* a, const T* b, const T* c, T* na, T* nb, T* nc, int64_t n);
  // In place: the gradient (ga, gb, gc) of the normalised gates becomes that of the raw ones.
  void (*normalize_backward)(const T* a, const T* b, const T* c, T* ga, T* gb, T* gc, int64_t n);
  // out = max(out, h).
  void (*maximum)(T* out, const T* h, int64_t n);
  // out = grad where `direction` is the first of h[0..3] to reach the maximum, else 0.
  void (*route)(const T* grad, const T* const* h, int direction, T* out, int64_t n);
  // out += in.
  void (*add)(T* out, const T* in, int64_t n);
};

namespace portable {
template <typename T>
Kernels<T> kernels();
} // namespace portable
namespace avx2 {
template <typename T>
Kernels<T> kernels();
} // namespace avx2

// The kernels of the active ISA (float and double).
template <typename T>
const Kernels<T>& scan_kernels();

} // namespace cpu
} // namespace spn
} // namespace ial
