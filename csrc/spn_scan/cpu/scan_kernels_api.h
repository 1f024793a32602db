// Entry points of the per-plane SPN scan kernels, one set per instruction set
// (scan_kernels_portable.cpp, scan_kernels_avx2.cpp); select_kernels picks the
// best the running CPU supports.
#pragma once

#include "../spn_scan.h"

#include <cstdint>

namespace ial {
namespace spn {
namespace cpu {

// One plane of x and its three gate planes.
template <typename T>
struct PlaneInputs {
  const T* x;
  const T* a;
  const T* b;
  const T* c;
};

// One plane of every backward operand.
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
};

template <typename T>
struct Kernels {
  // Elements of per-thread scratch each plane kernel needs.
  int64_t (*forward_scratch)(const ScanGeometry&);
  void (*forward_plane)(const PlaneInputs<T>& in, T* h, const ScanGeometry&, T* scratch);
  int64_t (*backward_scratch)(const ScanGeometry&);
  void (*backward_plane)(const BackwardPlane<T>& in, const ScanGeometry&, T* scratch);
};

namespace portable {
template <typename T>
Kernels<T> kernels();
} // namespace portable

namespace avx2 {
// Call only where avx2_supported(): the function itself is AVX2 code.
template <typename T>
Kernels<T> kernels();
} // namespace avx2

// Whether this build has the AVX2 + FMA kernels and the running CPU can run them.
bool avx2_supported();

template <typename T>
Kernels<T> select_kernels() {
  return avx2_supported() ? avx2::kernels<T>() : portable::kernels<T>();
}

} // namespace cpu
} // namespace spn
} // namespace ial
