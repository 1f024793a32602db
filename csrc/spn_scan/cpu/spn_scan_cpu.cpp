// SPN scan on the CPU: argument handling, output allocation and the split of
// planes (one per batch item and channel) across threads. The per-plane
// kernels live in scan_kernels.h, compiled per instruction set.
#include "../spn_scan.h"
#include "../../common/output_memory.h"
#include "scan_kernels_api.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cstdint>
#include <memory>

namespace ial {
namespace spn {
namespace {

// Per-thread scratch, aligned to a cache line and left uninitialised (the
// kernels write every element before reading it).
template <typename T>
class Scratch {
 public:
  explicit Scratch(int64_t elements) : storage_(new T[elements + kAlign / sizeof(T)]) {}
  T* data() {
    const auto address = reinterpret_cast<std::uintptr_t>(storage_.get());
    return reinterpret_cast<T*>((address + kAlign - 1) & ~std::uintptr_t(kAlign - 1));
  }

 private:
  static constexpr std::uintptr_t kAlign = 64;
  std::unique_ptr<T[]> storage_;
};

template <typename T>
cpu::PlaneInputs<T> plane_inputs(const T* x, const T* gates, const ScanGeometry& geo, int64_t p) {
  const int64_t hw = geo.plane_size();
  const int64_t n = p / geo.channels;
  const int64_t ch = p % geo.channels;
  const T* a = gates + (n * 3 * geo.channels + ch) * hw;
  return {x + p * hw, a, a + geo.channels * hw, a + 2 * geo.channels * hw};
}

template <typename T>
at::Tensor forward_kernel(const at::Tensor& x, const at::Tensor& gates, const ScanGeometry& geo) {
  at::Tensor h = common::empty_output(x.sizes(), x.options());
  const T* xd = x.const_data_ptr<T>();
  const T* gd = gates.const_data_ptr<T>();
  T* hd = h.mutable_data_ptr<T>();
  const auto kernels = cpu::select_kernels<T>();
  at::parallel_for(0, geo.planes(), 1, [&](int64_t begin, int64_t end) {
    Scratch<T> scratch(kernels.forward_scratch(geo));
    for (int64_t p = begin; p < end; ++p) {
      kernels.forward_plane(plane_inputs(xd, gd, geo, p), hd + p * geo.plane_size(), geo, scratch.data());
    }
  });
  return h;
}

template <typename T>
std::tuple<at::Tensor, at::Tensor> backward_kernel(
    const at::Tensor& grad_h,
    const at::Tensor& x,
    const at::Tensor& gates,
    const at::Tensor& h,
    const ScanGeometry& geo) {
  at::Tensor grad_x = common::empty_output(x.sizes(), x.options());
  at::Tensor grad_gates = common::empty_output(gates.sizes(), gates.options());
  const T* gd = grad_h.const_data_ptr<T>();
  const T* xd = x.const_data_ptr<T>();
  const T* gatesd = gates.const_data_ptr<T>();
  const T* hd = h.const_data_ptr<T>();
  T* gxd = grad_x.mutable_data_ptr<T>();
  T* ggd = grad_gates.mutable_data_ptr<T>();
  const int64_t hw = geo.plane_size();
  const auto kernels = cpu::select_kernels<T>();
  at::parallel_for(0, geo.planes(), 1, [&](int64_t begin, int64_t end) {
    Scratch<T> scratch(kernels.backward_scratch(geo));
    auto plane = [&](int64_t p) {
      const auto in = plane_inputs(xd, gatesd, geo, p);
      T* ga = ggd + (in.a - gatesd);
      return cpu::BackwardPlane<T>{
          gd + p * hw, in.x, in.a, in.b, in.c, hd + p * hw,
          gxd + p * hw, ga, ga + geo.channels * hw, ga + 2 * geo.channels * hw};
    };
    for (int64_t p = begin; p < end; ++p) {
      kernels.backward_plane(plane(p), geo, scratch.data());
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
