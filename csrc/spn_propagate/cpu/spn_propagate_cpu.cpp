// The fused propagation on the CPU, one (batch item, channel) plane at a time
// with everything else in per-thread buffers that stay in cache at the sizes
// of the paper (a 321 x 321 plane is 412 KB):
//
// forward:  the plane's 12 gate maps are normalised into a buffer (once per
//           batch item for shared gates, whose thread runs consecutive channels
//           of one batch item), direction 0 is scanned into the output plane,
//           directions 1-3 into one buffer each in turn, max-ed into it.
// backward: the four scans are recomputed into four buffers (nothing but x and
//           the guidance is saved); direction d gets the incoming gradient
//           where it is the first to reach the maximum (torch.max's rule for
//           ties), runs its reverse scan, adds its share of grad_x and writes
//           (per channel) or adds (shared, see ChannelParts) the gradient of its
//           normalised gates, which the normalisation's backward then maps to
//           the raw guidance.
#include "../spn_propagate.h"
#include "../../common/output_memory.h"
#include "../../spn_scan/cpu/scan_kernels_api.h"
#include "../../spn_scan/cpu/scan_runtime.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdint>

namespace ial {
namespace spn {
namespace {

template <typename T>
struct Setup {
  const cpu::Kernels<T>& kernels = cpu::scan_kernels<T>();
  std::array<ScanGeometry, kDirections> geo;
  std::array<cpu::Tiling, kDirections> tiling;
  int64_t scan_scratch = 0;

  Setup(const PropagateGeometry& g, bool backward) {
    for (int64_t d = 0; d < kDirections; ++d) {
      geo[d] = g.direction(d);
      tiling[d] = cpu::choose_tiling(geo[d], sizeof(T), backward);
      scan_scratch = std::max({scan_scratch, kernels.forward_scratch(geo[d], tiling[d], 1),
                               kernels.backward_scratch(geo[d], tiling[d], 1)});
    }
  }
};

// The 12 normalised gate planes of (b, channel): [d][a | b | c] at (3d + j) * hw.
template <typename T>
void normalize_planes(const cpu::Kernels<T>& k, const T* guidance, const PropagateGeometry& g, int64_t b,
                      int64_t channel, T* out) {
  const int64_t hw = g.scan.plane_size();
  const int64_t gs = g.guidance.gate_stride;
  for (int64_t d = 0; d < kDirections; ++d) {
    const T* a = guidance + g.guidance.offset(b, channel, d);
    T* n = out + 3 * d * hw;
    k.normalize(a, a + gs, a + 2 * gs, n, n + hw, n + 2 * hw, hw);
  }
}

template <typename T>
void scan_plane(const Setup<T>& s, int64_t d, const T* x, const T* normalized, T* h, T* scratch, int64_t hw) {
  const T* a = normalized + 3 * d * hw;
  s.kernels.forward({x, a, a + hw, a + 2 * hw}, h, s.geo[d], s.tiling[d], scratch);
}

template <typename T>
at::Tensor forward_kernel(const at::Tensor& x, const at::Tensor& guidance, const PropagateGeometry& g) {
  at::Tensor out = common::empty_output(x.sizes(), x.options());
  const T* xd = x.const_data_ptr<T>();
  const T* gd = guidance.const_data_ptr<T>();
  T* od = out.mutable_data_ptr<T>();
  const int64_t hw = g.scan.plane_size();
  const int64_t channels = g.scan.channels;
  const Setup<T> s(g, /*backward=*/false);
  at::parallel_for(0, g.scan.planes(), 1, [&](int64_t begin, int64_t end) {
    cpu::Scratch<T> buffer(s.scan_scratch + 13 * hw);
    T* normalized = buffer.data();
    T* h = normalized + 12 * hw;
    T* scratch = h + hw;
    int64_t normalized_item = -1;
    for (int64_t p = begin; p < end; ++p) {
      const int64_t b = p / channels;
      const int64_t ch = p % channels;
      if (!g.scan.shared_gates || b != normalized_item) {
        normalize_planes(s.kernels, gd, g, b, ch, normalized);
        normalized_item = b;
      }
      const T* xp = xd + p * hw;
      T* op = od + p * hw;
      scan_plane(s, 0, xp, normalized, op, scratch, hw);
      for (int64_t d = 1; d < kDirections; ++d) {
        scan_plane(s, d, xp, normalized, h, scratch, hw);
        s.kernels.maximum(op, h, hw);
      }
    }
  });
  return out;
}

template <typename T>
std::tuple<at::Tensor, at::Tensor> backward_kernel(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& guidance, const PropagateGeometry& g) {
  at::Tensor grad_x = common::empty_output(x.sizes(), x.options());
  at::Tensor grad_guidance = common::empty_output(guidance.sizes(), guidance.options());
  const T* grd = grad.const_data_ptr<T>();
  const T* xd = x.const_data_ptr<T>();
  const T* gd = guidance.const_data_ptr<T>();
  T* gxd = grad_x.mutable_data_ptr<T>();
  T* ggd = grad_guidance.mutable_data_ptr<T>();
  const int64_t hw = g.scan.plane_size();
  const int64_t channels = g.scan.channels;
  const bool shared = g.scan.shared_gates;
  const GateLayout& layout = g.guidance;
  const Setup<T> s(g, /*backward=*/true);

  // Shared guidance: part 0 of a batch item sums its gate gradients into
  // grad_guidance, the other parts into `partial` (see ChannelParts).
  // Per-channel guidance: one task per plane.
  const auto parts = shared ? cpu::channel_parts(g.scan.batch, channels) : cpu::ChannelParts{channels, channels};
  const int64_t item = kDirections * 3 * hw;
  at::Tensor partial = shared && parts.parts > 1
      ? at::empty({g.scan.batch, parts.parts - 1, item}, guidance.options())
      : at::Tensor();
  T* pd = partial.defined() ? partial.mutable_data_ptr<T>() : nullptr;
  auto part_buffer = [&](int64_t b, int64_t part) {
    return part == 0 ? ggd + b * item : pd + (b * (parts.parts - 1) + part - 1) * item;
  };

  // One plane: recompute the four scans, route the gradient, run the reverse
  // scans. Gate gradients (of the normalised gates) go to `gates_out` at the
  // guidance layout's offsets, written or (accumulate) added.
  auto backward_plane = [&](int64_t b, int64_t ch, const T* normalized, T* work, T* scratch,
                            T* gates_out, const GateLayout& out_layout, bool accumulate) {
    const int64_t p = b * channels + ch;
    const T* xp = xd + p * hw;
    T* h[kDirections];
    for (int64_t d = 0; d < kDirections; ++d) {
      h[d] = work + d * hw;
      scan_plane(s, d, xp, normalized, h[d], scratch, hw);
    }
    T* routed = work + kDirections * hw;
    for (int64_t d = 0; d < kDirections; ++d) {
      s.kernels.route(grd + p * hw, h, static_cast<int>(d), routed, hw);
      const T* a = normalized + 3 * d * hw;
      T* ga = gates_out + out_layout.offset(0, ch, d);
      s.kernels.backward(
          {routed, xp, a, a + hw, a + 2 * hw, h[d], gxd + p * hw, ga, ga + out_layout.gate_stride,
           ga + 2 * out_layout.gate_stride, 1, d > 0, accumulate},
          s.geo[d], s.tiling[d], scratch);
    }
  };
  // Shared gate gradients of one batch item, laid out as one guidance item.
  GateLayout item_layout = layout;
  item_layout.batch_stride = 0;

  at::parallel_for(0, g.scan.batch * parts.parts, 1, [&](int64_t begin, int64_t end) {
    cpu::Scratch<T> buffer(s.scan_scratch + (12 + kDirections + 1) * hw);
    T* normalized = buffer.data();
    T* work = normalized + 12 * hw;
    T* scratch = work + (kDirections + 1) * hw;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / parts.parts;
      const int64_t part = task % parts.parts;
      const int64_t first = parts.begin(part);
      const int64_t last = parts.end(part);
      for (int64_t ch = first; ch < last; ++ch) {
        if (!shared || ch == first) {
          normalize_planes(s.kernels, gd, g, b, ch, normalized);
        }
        if (shared) {
          backward_plane(b, ch, normalized, work, scratch, part_buffer(b, part), item_layout, ch != first);
          continue;
        }
        T* out = ggd + layout.offset(b, 0, 0);
        backward_plane(b, ch, normalized, work, scratch, out, item_layout, false);
        for (int64_t d = 0; d < kDirections; ++d) {
          const T* a = gd + layout.offset(b, ch, d);
          T* ga = ggd + layout.offset(b, ch, d);
          const int64_t gs = layout.gate_stride;
          s.kernels.normalize_backward(a, a + gs, a + 2 * gs, ga, ga + gs, ga + 2 * gs, hw);
        }
      }
    }
  });
  if (shared) {
    // Sum the parts in order, then map the gradient to the raw guidance.
    at::parallel_for(0, g.scan.batch * kDirections, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / kDirections;
        const int64_t d = task % kDirections;
        T* ga = part_buffer(b, 0) + 3 * d * hw;
        for (int64_t part = 1; part < parts.parts; ++part) {
          s.kernels.add(ga, part_buffer(b, part) + 3 * d * hw, 3 * hw);
        }
        const T* a = gd + layout.offset(b, 0, d);
        s.kernels.normalize_backward(a, a + hw, a + 2 * hw, ga, ga + hw, ga + 2 * hw, hw);
      }
    });
  }
  return {grad_x, grad_guidance};
}

at::Tensor spn_propagate_cpu(const at::Tensor& x, const at::Tensor& guidance) {
  const auto geo = check_propagate_args(x, guidance, "spn_propagate");
  TORCH_CHECK(x.device().is_cpu(), "spn_propagate: the CPU kernel got a tensor on ", x.device());
  if (x.numel() == 0) {
    return at::empty(x.sizes(), x.options());
  }
  if (cpu::is_reduced_precision(x)) {
    return spn_propagate_cpu(x.to(at::kFloat), guidance.to(at::kFloat)).to(x.scalar_type());
  }
  const at::Tensor xc = x.contiguous();
  const at::Tensor gc = guidance.contiguous();
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spn_propagate_cpu", [&] {
    out = forward_kernel<scalar_t>(xc, gc, geo);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> spn_propagate_backward_cpu(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& guidance) {
  const auto geo = check_propagate_args(x, guidance, "spn_propagate_backward");
  TORCH_CHECK(
      grad.sizes() == x.sizes(),
      "spn_propagate_backward: grad must have the shape of x ", x.sizes(), ", got ", grad.sizes());
  TORCH_CHECK(
      grad.scalar_type() == x.scalar_type(),
      "spn_propagate_backward: grad must have the dtype of x (", x.scalar_type(), "), got ", grad.scalar_type());
  TORCH_CHECK(x.device().is_cpu(), "spn_propagate_backward: the CPU kernel got a tensor on ", x.device());
  if (x.numel() == 0) {
    return {at::empty(x.sizes(), x.options()), at::zeros(guidance.sizes(), guidance.options())};
  }
  if (cpu::is_reduced_precision(x)) {
    const auto dtype = x.scalar_type();
    auto [grad_x, grad_guidance] =
        spn_propagate_backward_cpu(grad.to(at::kFloat), x.to(at::kFloat), guidance.to(at::kFloat));
    return {grad_x.to(dtype), grad_guidance.to(dtype)};
  }
  // grad may be expanded (stride 0): read a contiguous copy, never write to it.
  const at::Tensor grc = grad.contiguous();
  const at::Tensor xc = x.contiguous();
  const at::Tensor gc = guidance.contiguous();
  std::tuple<at::Tensor, at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spn_propagate_backward_cpu", [&] {
    out = backward_kernel<scalar_t>(grc, xc, gc, geo);
  });
  return out;
}

} // namespace

TORCH_LIBRARY_IMPL(ial, CPU, m) {
  m.impl("spn_propagate", &spn_propagate_cpu);
  m.impl("spn_propagate_backward", &spn_propagate_backward_cpu);
}

} // namespace spn
} // namespace ial
