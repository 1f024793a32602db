// The fused propagation on the CPU. Work is split into the scan kernels'
// calls (one per plane with per-channel guidance, one per batch item and part
// of its channels with shared guidance; see ChannelCalls), and everything but
// the inputs and outputs stays in per-thread buffers:
//
// forward:  the call's 12 gate maps are normalised into a buffer (once per
//           call), then each direction runs as one kernel call over the call's
//           channels: direction 0 writes the output, directions 1-3 keep the
//           larger of it and their scan (merge_max), so no scan is stored.
// backward: channels go in groups (one channel per group with per-channel
//           guidance; as many as keep the group's four scans and routed
//           gradient within this core's share of the L3 with shared guidance).
//           The four scans of the group are recomputed (nothing but x and the
//           guidance is saved); direction d gets the incoming gradient where it
//           is the first to reach the maximum (torch.max's rule for ties), runs
//           its reverse scan over the group, adds its share of grad_x, and
//           writes (first group) or adds (later groups, see ChannelParts) the
//           gradient of its normalised gates, summed over the channels, which
//           the normalisation's backward then maps to the raw guidance.
#include "../spn_propagate.h"
#include "../../common/cpu_features.h"
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
  std::array<cpu::Tiling, kDirections> tiling;           // forward scans
  std::array<cpu::Tiling, kDirections> backward_tiling;  // reverse scans
  int64_t scan_scratch = 0;

  // Scratch for kernel calls over up to `channels` channels.
  Setup(const PropagateGeometry& g, bool backward, int64_t channels) {
    for (int64_t d = 0; d < kDirections; ++d) {
      geo[d] = g.direction(d);
      tiling[d] = cpu::choose_tiling(geo[d], sizeof(T), false);
      backward_tiling[d] = cpu::choose_tiling(geo[d], sizeof(T), true);
      scan_scratch = std::max(scan_scratch, kernels.forward_scratch(geo[d], tiling[d], channels));
      if (backward) {
        scan_scratch = std::max(scan_scratch, kernels.backward_scratch(geo[d], backward_tiling[d], channels));
      }
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

// Direction d's gates among the normalised planes.
template <typename T>
cpu::ScanInputs<T> scan_inputs(const T* x, const T* normalized, int64_t d, int64_t channels, int64_t hw,
                               bool merge_max) {
  const T* a = normalized + 3 * d * hw;
  return {x, a, a + hw, a + 2 * hw, channels, merge_max};
}

template <typename T>
at::Tensor forward_kernel(const at::Tensor& x, const at::Tensor& guidance, const PropagateGeometry& g) {
  at::Tensor out = common::empty_output(x.sizes(), x.options());
  const T* xd = x.const_data_ptr<T>();
  const T* gd = guidance.const_data_ptr<T>();
  T* od = out.mutable_data_ptr<T>();
  const int64_t hw = g.scan.plane_size();
  const auto calls = cpu::channel_calls(g.scan.batch, g.scan.channels, g.scan.shared_gates);
  const Setup<T> s(g, /*backward=*/false, calls.max_channels);
  at::parallel_for(0, calls.count, 1, [&](int64_t begin, int64_t end) {
    cpu::Scratch<T> buffer(12 * hw + s.scan_scratch);
    T* normalized = buffer.data();
    T* scratch = normalized + 12 * hw;
    for (int64_t call = begin; call < end; ++call) {
      const int64_t b = calls.batch(call);
      const int64_t first = calls.first(call);
      const int64_t p = b * g.scan.channels + first;
      normalize_planes(s.kernels, gd, g, b, first, normalized);
      for (int64_t d = 0; d < kDirections; ++d) {
        s.kernels.forward(scan_inputs(xd + p * hw, normalized, d, calls.channels(call), hw, d > 0), od + p * hw,
                          s.geo[d], s.tiling[d], scratch);
      }
    }
  });
  return out;
}

// Channels per backward group with shared guidance: the group's four scans
// and its routed gradient (5 planes a channel) fill at most half of this
// core's share of the last-level cache.
constexpr int64_t kMaxGroup = 4;  // bounds the per-thread buffers: (12 + 5 x 4) planes

int64_t group_channels(int64_t plane_bytes, int64_t channels) {
  const auto& caches = ial::cpu::cache_sizes();
  const int64_t share = caches.l3 / std::max<int64_t>(1, std::min<int64_t>(caches.l3_share, at::get_num_threads()));
  return std::clamp<int64_t>(share / 2 / (5 * plane_bytes), 1, std::min<int64_t>(kMaxGroup, channels));
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
  const auto calls = cpu::channel_calls(g.scan.batch, channels, shared);
  const auto& parts = calls.parts;
  const int64_t group = shared ? group_channels(hw * int64_t(sizeof(T)), calls.max_channels) : 1;
  const Setup<T> s(g, /*backward=*/true, group);

  // Shared guidance: part 0 of a batch item sums its gate gradients into
  // grad_guidance, the other parts into `partial` (see ChannelParts), both laid
  // out as one guidance item. Per-channel guidance: each plane's own place.
  const int64_t item = kDirections * 3 * hw;
  at::Tensor partial = shared && parts.parts > 1
      ? at::empty({g.scan.batch, parts.parts - 1, item}, guidance.options())
      : at::Tensor();
  T* pd = partial.defined() ? partial.mutable_data_ptr<T>() : nullptr;
  auto part_buffer = [&](int64_t b, int64_t part) {
    return part == 0 ? ggd + b * item : pd + (b * (parts.parts - 1) + part - 1) * item;
  };
  GateLayout item_layout = layout;
  item_layout.batch_stride = 0;

  at::parallel_for(0, calls.count, 1, [&](int64_t begin, int64_t end) {
    cpu::Scratch<T> buffer((12 + 5 * group) * hw + s.scan_scratch);
    cpu::Scratch<uint8_t> which(group * hw);  // channel k's first maximum at k * hw
    T* normalized = buffer.data();
    T* scans = normalized + 12 * hw;          // direction d, channel k of the group at (d * group + k) * hw
    T* routed = scans + 4 * group * hw;       // channel k at k * hw
    T* scratch = routed + group * hw;
    for (int64_t call = begin; call < end; ++call) {
      const int64_t b = calls.batch(call);
      const int64_t part = calls.part(call);
      const int64_t first = calls.first(call);
      const int64_t last = first + calls.channels(call);
      if (shared) normalize_planes(s.kernels, gd, g, b, first, normalized);
      for (int64_t g0 = first; g0 < last; g0 += group) {
        const int64_t count = std::min(group, last - g0);
        const int64_t p = b * channels + g0;
        if (!shared) normalize_planes(s.kernels, gd, g, b, g0, normalized);
        for (int64_t d = 0; d < kDirections; ++d) {
          s.kernels.forward(scan_inputs(xd + p * hw, normalized, d, count, hw, false), scans + d * group * hw,
                            s.geo[d], s.tiling[d], scratch);
        }
        for (int64_t k = 0; k < count; ++k) {
          const T* h[kDirections];
          for (int64_t d = 0; d < kDirections; ++d) h[d] = scans + (d * group + k) * hw;
          s.kernels.first_max(h, which.data() + k * hw, hw);
        }
        // Gate gradients: shared, the part's sum over its channels; per
        // channel, the plane's own, mapped to the raw guidance below.
        T* gates_out = shared ? part_buffer(b, part) : ggd + layout.offset(b, 0, 0);
        const GateLayout& out_layout = shared ? item_layout : layout;
        for (int64_t d = 0; d < kDirections; ++d) {
          for (int64_t k = 0; k < count; ++k) {
            s.kernels.route(grd + (p + k) * hw, which.data() + k * hw, static_cast<int>(d), routed + k * hw, hw);
          }
          const T* a = normalized + 3 * d * hw;
          T* ga = gates_out + out_layout.offset(0, g0, d);  // shared: channel_stride 0
          const int64_t gs = out_layout.gate_stride;
          s.kernels.backward(
              {routed, xd + p * hw, a, a + hw, a + 2 * hw, scans + d * group * hw, gxd + p * hw, ga, ga + gs,
               ga + 2 * gs, count, d > 0, shared && g0 != first},
              s.geo[d], s.backward_tiling[d], scratch);
        }
        if (!shared) {
          for (int64_t d = 0; d < kDirections; ++d) {
            const T* a = gd + layout.offset(b, g0, d);
            T* ga = ggd + layout.offset(b, g0, d);
            const int64_t gs = layout.gate_stride;
            s.kernels.normalize_backward(a, a + gs, a + 2 * gs, ga, ga + gs, ga + 2 * gs, hw);
          }
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
