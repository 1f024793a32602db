// SPN scan on the CPU: argument handling, output allocation and the split of
// planes (one per batch item and channel) across threads. The per-plane
// kernels live in scan_kernels.h, compiled per instruction set.
//
// Shared gates (B, 3, H, W): one kernel call runs consecutive channels of one
// batch item against the gate set, which it reads (and, horizontally,
// transposes) once, and returns their gate gradient summed over the channels,
// never through a (B, 3C, H, W) temporary.
#include "../spn_scan.h"
#include "../../common/cpu_features.h"
#include "../../common/output_memory.h"
#include "scan_kernels_api.h"
#include "scan_runtime.h"
#include "../../common/reduced_precision.h"

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
at::Tensor forward_kernel(const at::Tensor& x, const at::Tensor& gates, const ScanGeometry& geo) {
  at::Tensor h = common::empty_output(x.sizes(), x.options());
  const T* xd = x.const_data_ptr<T>();
  const T* gd = gates.const_data_ptr<T>();
  T* hd = h.mutable_data_ptr<T>();
  const int64_t hw = geo.plane_size();
  const auto& kernels = cpu::scan_kernels<T>();
  const auto tiling = cpu::choose_tiling(geo, sizeof(T), /*backward=*/false);
  const auto layout = gate_layout(geo);
  const auto calls = cpu::channel_calls(geo.batch, geo.channels, geo.shared_gates);
  const bool stream = ial::cpu::streams_output(h.nbytes());
  at::parallel_for(0, calls.count, 1, [&](int64_t begin, int64_t end) {
    cpu::Scratch<T> scratch(kernels.forward_scratch(geo, tiling, calls.max_channels, false));
    for (int64_t call = begin; call < end; ++call) {
      const int64_t b = calls.batch(call);
      const int64_t first = calls.first(call);
      const int64_t p = b * geo.channels + first;
      const T* a = gd + layout.offset(b, first);
      cpu::ScanInputs<T> in{xd + p * hw, a, a + layout.gate_stride, a + 2 * layout.gate_stride, calls.channels(call)};
      in.stream = stream;
      kernels.forward(in, hd + p * hw, geo, tiling, scratch.data());
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
  const auto tiling = cpu::choose_tiling(geo, sizeof(T), /*backward=*/true);
  const auto layout = gate_layout(geo);
  const auto calls = cpu::channel_calls(geo.batch, geo.channels, geo.shared_gates);
  const auto& parts = calls.parts;
  // Shared gates: part 0 of every batch item writes its channels' sum to
  // grad_gates, the others to `partial`, added in order below.
  const int64_t gate_set = 3 * hw;
  const bool partials = geo.shared_gates && parts.parts > 1;
  at::Tensor partial = partials ? at::empty({geo.batch, parts.parts - 1, gate_set}, gates.options()) : at::Tensor();
  T* pd = partials ? partial.mutable_data_ptr<T>() : nullptr;
  auto gate_gradient = [&](int64_t b, int64_t part, int64_t first) {
    if (!geo.shared_gates || part == 0) return ggd + layout.offset(b, first);
    return pd + (b * (parts.parts - 1) + part - 1) * gate_set;
  };
  const bool stream_x = ial::cpu::streams_output(grad_x.nbytes());
  // Partial gate sums are read back below: streamed only where the whole gradient is large.
  const bool stream_gates = ial::cpu::streams_output(grad_gates.nbytes());
  at::parallel_for(0, calls.count, 1, [&](int64_t begin, int64_t end) {
    cpu::Scratch<T> scratch(kernels.backward_scratch(geo, tiling, calls.max_channels, false));
    for (int64_t call = begin; call < end; ++call) {
      const int64_t b = calls.batch(call);
      const int64_t part = calls.part(call);
      const int64_t first = calls.first(call);
      const int64_t p = b * geo.channels + first;
      const T* a = gatesd + layout.offset(b, first);
      T* ga = gate_gradient(b, part, first);  // a partial's planes lie gate_stride = H * W apart too
      const int64_t gs = layout.gate_stride;
      cpu::BackwardInputs<T> in{
          gd + p * hw, xd + p * hw, a, a + layout.gate_stride, a + 2 * layout.gate_stride, hd + p * hw,
          gxd + p * hw, ga, ga + gs, ga + 2 * gs, calls.channels(call)};
      in.stream_x = stream_x;
      in.stream_gates = stream_gates;
      kernels.backward(in, geo, tiling, scratch.data());
    }
  });
  if (partials) {
    at::parallel_for(0, geo.batch * 3, 1, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        const int64_t b = item / 3;
        const int64_t gate = item % 3;
        for (int64_t part = 1; part < parts.parts; ++part) {
          kernels.add(ggd + b * gate_set + gate * hw, gate_gradient(b, part, 0) + gate * hw, hw);
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
  if (common::is_reduced_precision(x)) {
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
  if (common::is_reduced_precision(x)) {
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
