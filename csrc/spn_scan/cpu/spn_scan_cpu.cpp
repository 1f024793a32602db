// SPN scan on the CPU: argument handling, output allocation and the split of
// planes (one per batch item and channel) across threads. The per-plane
// kernels live in scan_kernels.h, compiled per instruction set.
//
// Shared gates (B, 3, H, W): a thread's planes are consecutive channels of one
// batch item, so the three gate planes stay in cache while it runs them. Their
// gradient is summed over the channels inside the kernels (each plane adds its
// gate gradient to its task's buffer; see ChannelParts), never through a
// (B, 3C, H, W) temporary.
#include "../spn_scan.h"
#include "../../common/output_memory.h"
#include "scan_kernels_api.h"
#include "scan_runtime.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cstdint>

namespace ial {
namespace spn {
namespace {

template <typename T>
cpu::PlaneInputs<T> plane_inputs(const T* x, const T* gates, const ScanGeometry& geo, const GateLayout& layout,
                                 int64_t p) {
  const T* a = gates + layout.offset(p / geo.channels, p % geo.channels);
  return {x + p * geo.plane_size(), a, a + layout.gate_stride, a + 2 * layout.gate_stride};
}

template <typename T>
at::Tensor forward_kernel(const at::Tensor& x, const at::Tensor& gates, const ScanGeometry& geo) {
  at::Tensor h = common::empty_output(x.sizes(), x.options());
  const T* xd = x.const_data_ptr<T>();
  const T* gd = gates.const_data_ptr<T>();
  T* hd = h.mutable_data_ptr<T>();
  const auto& kernels = cpu::scan_kernels<T>();
  const auto tiling = cpu::choose_tiling(geo, sizeof(T), 5);
  const auto layout = gate_layout(geo);
  at::parallel_for(0, geo.planes(), 1, [&](int64_t begin, int64_t end) {
    cpu::Scratch<T> scratch(kernels.forward_scratch(geo, tiling));
    for (int64_t p = begin; p < end; ++p) {
      kernels.forward_plane(plane_inputs(xd, gd, geo, layout, p), hd + p * geo.plane_size(), geo, tiling,
                            scratch.data());
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
  const auto& kernels = cpu::scan_kernels<T>();
  const auto tiling = cpu::choose_tiling(geo, sizeof(T), 10);
  const auto layout = gate_layout(geo);
  auto plane = [&](int64_t p, T* ga, bool accumulate_gates) {
    const auto in = plane_inputs(xd, gatesd, geo, layout, p);
    return cpu::BackwardPlane<T>{
        gd + p * hw, in.x, in.a, in.b, in.c, hd + p * hw, gxd + p * hw,
        ga, ga + layout.gate_stride, ga + 2 * layout.gate_stride, false, accumulate_gates};
  };
  if (!geo.shared_gates) {
    at::parallel_for(0, geo.planes(), 1, [&](int64_t begin, int64_t end) {
      cpu::Scratch<T> scratch(kernels.backward_scratch(geo, tiling));
      for (int64_t p = begin; p < end; ++p) {
        T* ga = ggd + layout.offset(p / geo.channels, p % geo.channels);
        kernels.backward_plane(plane(p, ga, false), geo, tiling, scratch.data());
      }
    });
    return {grad_x, grad_gates};
  }
  // Part 0 of every batch item sums into grad_gates, the others into `partial`.
  const auto parts = cpu::channel_parts(geo.batch, geo.channels);
  const int64_t gate_set = 3 * hw;
  at::Tensor partial = parts.parts > 1
      ? at::empty({geo.batch, parts.parts - 1, gate_set}, gates.options())
      : at::Tensor();
  T* pd = parts.parts > 1 ? partial.mutable_data_ptr<T>() : nullptr;
  auto part_buffer = [&](int64_t b, int64_t part) {
    return part == 0 ? ggd + b * gate_set : pd + (b * (parts.parts - 1) + part - 1) * gate_set;
  };
  at::parallel_for(0, geo.batch * parts.parts, 1, [&](int64_t begin, int64_t end) {
    cpu::Scratch<T> scratch(kernels.backward_scratch(geo, tiling));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / parts.parts;
      const int64_t part = task % parts.parts;
      T* ga = part_buffer(b, part);
      for (int64_t ch = parts.begin(part); ch < parts.end(part); ++ch) {
        const int64_t p = b * geo.channels + ch;
        kernels.backward_plane(plane(p, ga, ch != parts.begin(part)), geo, tiling, scratch.data());
      }
    }
  });
  if (parts.parts > 1) {
    at::parallel_for(0, geo.batch * 3, 1, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        const int64_t b = item / 3;
        const int64_t gate = item % 3;
        for (int64_t part = 1; part < parts.parts; ++part) {
          kernels.add(part_buffer(b, 0) + gate * hw, part_buffer(b, part) + gate * hw, hw);
        }
      }
    });
  }
  return {grad_x, grad_gates};
}

at::Tensor spn_scan_cpu(const at::Tensor& x, const at::Tensor& gates, int64_t direction) {
  const auto geo = check_forward_args(x, gates, direction, /*allow_reduced_precision=*/true);
  TORCH_CHECK(x.device().is_cpu(), "spn_scan: the CPU kernel got a tensor on ", x.device());
  if (x.numel() == 0) {
    return at::empty(x.sizes(), x.options());
  }
  if (cpu::is_reduced_precision(x)) {
    return spn_scan_cpu(x.to(at::kFloat), gates.to(at::kFloat), direction).to(x.scalar_type());
  }
  const at::Tensor xc = x.contiguous();
  const at::Tensor gc = gates.contiguous();
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
  const auto geo = check_backward_args(grad_h, x, gates, h, direction, /*allow_reduced_precision=*/true);
  TORCH_CHECK(x.device().is_cpu(), "spn_scan_backward: the CPU kernel got a tensor on ", x.device());
  if (x.numel() == 0) {
    return {at::empty(x.sizes(), x.options()), at::zeros(gates.sizes(), gates.options())};
  }
  if (cpu::is_reduced_precision(x)) {
    const auto dtype = x.scalar_type();
    auto [grad_x, grad_gates] = spn_scan_backward_cpu(
        grad_h.to(at::kFloat), x.to(at::kFloat), gates.to(at::kFloat), h.to(at::kFloat), direction);
    return {grad_x.to(dtype), grad_gates.to(dtype)};
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
