// Entry points of the SPN scan kernels, compiled once per instruction set
// (scan_kernels_default.cpp, scan_kernels_avx2.cpp); scan_kernels<T>() returns
// the table of the ISA that common/cpu_features.h picks. The fused propagation
// (csrc/spn_propagate) runs the same kernels.
#pragma once

#include "../spn_scan.h"

#include <cstdint>

namespace ial {
namespace spn {
namespace cpu {

// Horizontal scans move `tile` image columns at a time into line buffers (see
// choose_tiling); vertical scans of several channels against one gate set run
// `rows` rows of every channel while those gate rows are in cache.
struct Tiling {
  int64_t tile = 16;
  int64_t rows = 32;
};
constexpr int64_t kMaxTile = 512;  // columns per horizontal tile, at most

// The tiling of a forward or backward scan, from the cache sizes.
Tiling choose_tiling(const ScanGeometry& geo, int64_t element_size, bool backward);

// `channels` consecutive planes of x (plane k at x + k * H * W) scanned against
// one set of gate planes: one plane with its own gates, or channels of one
// batch item sharing theirs. With merge_max the output keeps the larger of its
// value and the scan's (the max merge of spn_propagate) instead of the scan.
//
// With r (spn_propagate's strengths on shared gates) the gates are the raw
// shared ones and channel k's are scaled by min(strength[k], r) per position,
// r = 1 / (|a| + |b| + |c|): normalize(strength[k] (a, b, c)) without a copy.
template <typename T>
struct ScanInputs {
  const T* x;
  const T* a;
  const T* b;
  const T* c;
  int64_t channels = 1;
  bool merge_max = false;
  const T* r = nullptr;
  const T* strength = nullptr;  // one per channel of the call
  // h far larger than the last-level cache: horizontal scans write it around
  // the caches (non-temporal stores; not with merge_max, which reads it).
  bool stream = false;
};

// The backward operands of such a run: g, x, h and gx are planes like x; the
// gate gradient (ga, gb, gc) is one set, summed over the channels. With
// accumulate_x (accumulate_gates) the kernel adds to gx (ga, gb, gc) instead
// of writing them.
template <typename T>
struct BackwardInputs {
  const T* g;  // incoming gradient of h
  const T* x;
  const T* a;
  const T* b;
  const T* c;
  const T* h;
  T* gx;  // nullptr: x's gradient is not wanted (nothing is written for it)
  T* ga;
  T* gb;
  T* gc;
  int64_t channels = 1;
  bool accumulate_x = false;
  bool accumulate_gates = false;
  // With r (see ScanInputs) the gate gradient is that of the raw shared gates
  // at each channel's factor, gt (like ga) gets the part the normalisation
  // adds where it binds (mapped to the raw gates by the caller: minus sign(a)
  // r^2 gt), and strength_share[k] = the gradient of channel k's strength.
  const T* r = nullptr;
  const T* strength = nullptr;
  T* gt = nullptr;
  T* strength_share = nullptr;
  // As ScanInputs::stream, for gx and for the gate gradient.
  bool stream_x = false;
  bool stream_gates = false;
};

template <typename T>
struct Kernels {
  // Elements of per-thread scratch a kernel call over `channels` planes needs.
  // (scaled: the call has r, see ScanInputs, which needs more.)
  int64_t (*forward_scratch)(const ScanGeometry&, const Tiling&, int64_t channels, bool scaled);
  void (*forward)(const ScanInputs<T>& in, T* h, const ScanGeometry&, const Tiling&, T* scratch);
  int64_t (*backward_scratch)(const ScanGeometry&, const Tiling&, int64_t channels, bool scaled);
  void (*backward)(const BackwardInputs<T>& in, const ScanGeometry&, const Tiling&, T* scratch);

  // Element-wise pieces of the fused propagation, over n positions.
  // (na, nb, nc) = (a, b, c) / max(1, |a| + |b| + |c|).
  void (*normalize)(const T* a, const T* b, const T* c, T* na, T* nb, T* nc, int64_t n);
  // In place: the gradient (ga, gb, gc) of the normalised gates becomes that of the raw ones.
  void (*normalize_backward)(const T* a, const T* b, const T* c, T* ga, T* gb, T* gc, int64_t n);
  // r = 1 / (|a| + |b| + |c|), the bound of scaled gates (ScanInputs::r).
  void (*inverse_magnitude)(const T* a, const T* b, const T* c, T* r, int64_t n);
  // In place: the raw gates' gradient (ga, gb, gc) of scaled gates gets the
  // normalisation's term where it binds, from the backward's gt (`bound`).
  void (*binding_backward)(const T* a, const T* b, const T* c, const T* bound, T* ga, T* gb, T* gc, int64_t n);
  // which = the first of h[0..3] to reach their maximum (0..3), as torch.max(dim) picks.
  void (*first_max)(const T* const* h, uint8_t* which, int64_t n);
  // out = grad where which == direction, else 0.
  void (*route)(const T* grad, const uint8_t* which, int direction, T* out, int64_t n);
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
