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
// strength: channel c's gates are normalize(strength x guidance) = guidance
//           x min(strength, r), r = 1 / (|a| + |b| + |c|). With shared
//           guidance the scan kernels take the raw gates and r (computed once
//           per batch item) and scale per channel on the fly, so channels
//           still share the gates; the backward sums the raw gates' gradient
//           over the channels and maps the normalisation's part of it (where
//           it binds) once per batch item. With per-channel guidance the work
//           goes channel by channel through a scaled, normalised copy.
#include "../spn_propagate.h"
#include "../../common/cpu_features.h"
#include "../../common/output_memory.h"
#include "../../spn_scan/cpu/scan_kernels_api.h"
#include "../../spn_scan/cpu/scan_runtime.h"
#include "../../common/reduced_precision.h"

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

  // Scratch for kernel calls over up to `channels` channels (scaled: with the strengths' r).
  Setup(const PropagateGeometry& g, bool backward, int64_t channels, bool scaled) {
    for (int64_t d = 0; d < kDirections; ++d) {
      geo[d] = g.direction(d);
      tiling[d] = cpu::choose_tiling(geo[d], sizeof(T), false);
      backward_tiling[d] = cpu::choose_tiling(geo[d], sizeof(T), true);
      scan_scratch = std::max(scan_scratch, kernels.forward_scratch(geo[d], tiling[d], channels, scaled));
      if (backward) {
        scan_scratch = std::max(scan_scratch, kernels.backward_scratch(geo[d], backward_tiling[d], channels, scaled));
      }
    }
  }
};

// Planes of gates a call keeps per thread: with shared gates and strength each
// direction's r (the kernels scale the raw gates on the fly), otherwise the
// normalised gates.
inline int64_t gate_plane_count(bool shared_scaled) { return shared_scaled ? kDirections : 3 * kDirections; }

// The (4, C) strengths, or none (every strength 1, the gates as given).
template <typename T>
struct Strength {
  const T* data = nullptr;
  int64_t channels = 0;

  bool defined() const { return data != nullptr; }
  T at(int64_t d, int64_t channel) const { return data[d * channels + channel]; }
};

// out = s x the three gate planes at a (gate_stride apart), laid out contiguously.
template <typename T>
void scale_gates(const T* a, int64_t gate_stride, T s, T* __restrict__ out, int64_t hw) {
  for (int64_t j = 0; j < 3; ++j) {
    const T* __restrict__ in = a + j * gate_stride;
    T* __restrict__ o = out + j * hw;
    for (int64_t i = 0; i < hw; ++i) o[i] = s * in[i];
  }
}

// sum over the three planes of grad x the gates at a (gate_stride apart).
template <typename T>
T gate_dot(const T* __restrict__ grad, const T* a, int64_t gate_stride, int64_t hw) {
  constexpr int64_t kLanes = 16;  // independent sums, so that the loop vectorises
  T lanes[kLanes] = {};
  for (int64_t j = 0; j < 3; ++j) {
    const T* __restrict__ g = grad + j * hw;
    const T* __restrict__ v = a + j * gate_stride;
    int64_t i = 0;
    for (; i + kLanes <= hw; i += kLanes) {
      for (int64_t l = 0; l < kLanes; ++l) lanes[l] += g[i + l] * v[i + l];
    }
    for (; i < hw; ++i) lanes[0] += g[i] * v[i];
  }
  T total = 0;
  for (int64_t l = 0; l < kLanes; ++l) total += lanes[l];
  return total;
}

// out (gate_stride apart) = or += s x the three contiguous planes of grad.
template <typename T>
void put_scaled_gates(const T* grad, T s, T* out, int64_t gate_stride, int64_t hw, bool accumulate) {
  for (int64_t j = 0; j < 3; ++j) {
    const T* __restrict__ g = grad + j * hw;
    T* __restrict__ o = out + j * gate_stride;
    if (accumulate) {
      for (int64_t i = 0; i < hw; ++i) o[i] += s * g[i];
    } else {
      for (int64_t i = 0; i < hw; ++i) o[i] = s * g[i];
    }
  }
}

// The 12 normalised gate planes of (b, channel): [d][a | b | c] at (3d + j) * hw.
// With strength, direction d's gates are scaled by its strength first (in
// `scaled`, 3 planes).
template <typename T>
void normalize_planes(const cpu::Kernels<T>& k, const T* guidance, const PropagateGeometry& g, int64_t b,
                      int64_t channel, T* out, const Strength<T>& strength, T* scaled) {
  const int64_t hw = g.scan.plane_size();
  const int64_t gs = g.guidance.gate_stride;
  for (int64_t d = 0; d < kDirections; ++d) {
    const T* a = guidance + g.guidance.offset(b, channel, d);
    T* n = out + 3 * d * hw;
    if (strength.defined()) {
      scale_gates(a, gs, strength.at(d, channel), scaled, hw);
      k.normalize(scaled, scaled + hw, scaled + 2 * hw, n, n + hw, n + 2 * hw, hw);
    } else {
      k.normalize(a, a + gs, a + 2 * gs, n, n + hw, n + 2 * hw, hw);
    }
  }
}

// The four directions' r of batch item b's shared guidance, at d * hw.
template <typename T>
void inverse_magnitude_planes(const cpu::Kernels<T>& k, const T* guidance, const PropagateGeometry& g, int64_t b,
                              T* out) {
  const int64_t hw = g.scan.plane_size();
  const int64_t gs = g.guidance.gate_stride;
  for (int64_t d = 0; d < kDirections; ++d) {
    const T* a = guidance + g.guidance.offset(b, 0, d);
    k.inverse_magnitude(a, a + gs, a + 2 * gs, out + d * hw, hw);
  }
}

// Direction d's raw shared gates, scaled per channel by the kernels.
template <typename T>
cpu::ScanInputs<T> scaled_scan_inputs(const T* x, const T* guidance, const PropagateGeometry& g, int64_t b,
                                      const T* r, const Strength<T>& strength, int64_t d, int64_t first,
                                      int64_t channels, bool merge_max) {
  const T* a = guidance + g.guidance.offset(b, 0, d);
  const int64_t gs = g.guidance.gate_stride;
  return {x,        a, a + gs, a + 2 * gs, channels, merge_max, r + d * g.scan.plane_size(),
          strength.data + d * strength.channels + first};
}

// Direction d's gates among the normalised planes.
template <typename T>
cpu::ScanInputs<T> scan_inputs(const T* x, const T* normalized, int64_t d, int64_t channels, int64_t hw,
                               bool merge_max) {
  const T* a = normalized + 3 * d * hw;
  return {x, a, a + hw, a + 2 * hw, channels, merge_max};
}

template <typename T>
at::Tensor forward_kernel(const at::Tensor& x, const at::Tensor& guidance, const Strength<T>& strength,
                         const PropagateGeometry& g) {
  at::Tensor out = common::empty_output(x.sizes(), x.options());
  const T* xd = x.const_data_ptr<T>();
  const T* gd = guidance.const_data_ptr<T>();
  T* od = out.mutable_data_ptr<T>();
  const int64_t hw = g.scan.plane_size();
  const auto calls = cpu::channel_calls(g.scan.batch, g.scan.channels, g.scan.shared_gates);
  // With strength on per-channel guidance every channel runs against gates of its own.
  const bool shared_scaled = g.scan.shared_gates && strength.defined();
  const int64_t per_set = strength.defined() && !shared_scaled ? 1 : calls.max_channels;
  const Setup<T> s(g, /*backward=*/false, per_set, shared_scaled);
  at::parallel_for(0, calls.count, 1, [&](int64_t begin, int64_t end) {
    const int64_t gate_planes = gate_plane_count(shared_scaled);
    const int64_t scaled_planes = strength.defined() && !shared_scaled ? 3 : 0;
    cpu::Scratch<T> buffer((gate_planes + scaled_planes) * hw + s.scan_scratch);
    T* normalized = buffer.data();
    T* scaled = normalized + gate_planes * hw;
    T* scratch = scaled + scaled_planes * hw;
    for (int64_t call = begin; call < end; ++call) {
      const int64_t b = calls.batch(call);
      const int64_t first = calls.first(call);
      const int64_t last = first + calls.channels(call);
      if (shared_scaled) {
        const int64_t p = b * g.scan.channels + first;
        inverse_magnitude_planes(s.kernels, gd, g, b, normalized);
        for (int64_t d = 0; d < kDirections; ++d) {
          s.kernels.forward(scaled_scan_inputs(xd + p * hw, gd, g, b, normalized, strength, d, first, last - first,
                                               d > 0),
                            od + p * hw, s.geo[d], s.tiling[d], scratch);
        }
        continue;
      }
      for (int64_t c0 = first; c0 < last; c0 += per_set) {
        const int64_t count = std::min(per_set, last - c0);
        const int64_t p = b * g.scan.channels + c0;
        normalize_planes(s.kernels, gd, g, b, c0, normalized, strength, scaled);
        for (int64_t d = 0; d < kDirections; ++d) {
          s.kernels.forward(scan_inputs(xd + p * hw, normalized, d, count, hw, d > 0), od + p * hw, s.geo[d],
                            s.tiling[d], scratch);
        }
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
  const int64_t share = ial::cpu::last_level_share();
  return std::clamp<int64_t>(share / 2 / (5 * plane_bytes), 1, std::min<int64_t>(kMaxGroup, channels));
}

template <typename T>
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_kernel(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& guidance, const Strength<T>& strength,
    const PropagateGeometry& g, bool x_requires_grad) {
  at::Tensor grad_x = x_requires_grad ? common::empty_output(x.sizes(), x.options()) : at::empty({0}, x.options());
  at::Tensor grad_guidance = common::empty_output(guidance.sizes(), guidance.options());
  const T* grd = grad.const_data_ptr<T>();
  const T* xd = x.const_data_ptr<T>();
  const T* gd = guidance.const_data_ptr<T>();
  T* gxd = x_requires_grad ? grad_x.mutable_data_ptr<T>() : nullptr;
  T* ggd = grad_guidance.mutable_data_ptr<T>();
  const int64_t hw = g.scan.plane_size();
  const int64_t channels = g.scan.channels;
  const bool shared = g.scan.shared_gates;
  const bool scaled = strength.defined();
  const GateLayout& layout = g.guidance;
  const auto calls = cpu::channel_calls(g.scan.batch, channels, shared);
  const auto& parts = calls.parts;
  const bool shared_scaled = shared && scaled;
  const int64_t group = shared ? group_channels(hw * int64_t(sizeof(T)), calls.max_channels) : 1;
  const Setup<T> s(g, /*backward=*/true, group, shared_scaled);

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
  // Strength: each (batch item, direction, channel)'s share of its gradient,
  // summed over the batch at the end.
  at::Tensor strength_items = scaled ? at::empty({g.scan.batch, kDirections, channels}, x.options()) : at::Tensor();
  T* sid = scaled ? strength_items.mutable_data_ptr<T>() : nullptr;
  // Shared guidance with strength: per (batch item, part), each direction's
  // sum over the part's channels of t where the normalisation binds.
  at::Tensor binding = shared_scaled ? at::empty({g.scan.batch, parts.parts, kDirections, hw}, x.options())
                                     : at::Tensor();
  T* bd = shared_scaled ? binding.mutable_data_ptr<T>() : nullptr;
  auto binding_buffer = [&](int64_t b, int64_t part) { return bd + (b * parts.parts + part) * kDirections * hw; };

  at::parallel_for(0, calls.count, 1, [&](int64_t begin, int64_t end) {
    const int64_t gate_planes = gate_plane_count(shared_scaled);
    const int64_t scaled_planes = scaled && !shared_scaled ? 3 : 0;  // per-channel strength
    cpu::Scratch<T> buffer((gate_planes + 5 * group + 2 * scaled_planes) * hw + s.scan_scratch);
    cpu::Scratch<uint8_t> which(group * hw);  // channel k's first maximum at k * hw
    T* normalized = buffer.data();
    T* scans = normalized + gate_planes * hw;  // direction d, channel k of the group at (d * group + k) * hw
    T* routed = scans + 4 * group * hw;        // channel k at k * hw
    T* scaled_gates = routed + group * hw;     // per-channel strength: one direction's strength x guidance
    T* channel_grad = scaled_gates + scaled_planes * hw;  // per-channel strength: its gate gradient
    T* scratch = channel_grad + scaled_planes * hw;
    for (int64_t call = begin; call < end; ++call) {
      const int64_t b = calls.batch(call);
      const int64_t part = calls.part(call);
      const int64_t first = calls.first(call);
      const int64_t last = first + calls.channels(call);
      // Shared: the normalised gates, or with strength the raw gates' r, once per call.
      if (shared_scaled) {
        inverse_magnitude_planes(s.kernels, gd, g, b, normalized);
      } else if (shared) {
        normalize_planes(s.kernels, gd, g, b, first, normalized, strength, scaled_gates);
      }
      for (int64_t g0 = first; g0 < last; g0 += group) {
        const int64_t count = std::min(group, last - g0);
        const int64_t p = b * channels + g0;
        T* gx = x_requires_grad ? gxd + p * hw : nullptr;  // the kernels then skip it
        if (!shared) normalize_planes(s.kernels, gd, g, b, g0, normalized, strength, scaled_gates);
        for (int64_t d = 0; d < kDirections; ++d) {
          const auto inputs = shared_scaled
              ? scaled_scan_inputs(xd + p * hw, gd, g, b, normalized, strength, d, g0, count, false)
              : scan_inputs(xd + p * hw, normalized, d, count, hw, false);
          s.kernels.forward(inputs, scans + d * group * hw, s.geo[d], s.tiling[d], scratch);
        }
        for (int64_t k = 0; k < count; ++k) {
          const T* h[kDirections];
          for (int64_t d = 0; d < kDirections; ++d) h[d] = scans + (d * group + k) * hw;
          s.kernels.first_max(h, which.data() + k * hw, hw);
        }
        // Gate gradients: shared, the part's sum over its channels; per
        // channel, the plane's own, mapped to the raw guidance below; with
        // strength, the channel's own first, mapped here.
        T* gates_out = shared ? part_buffer(b, part) : ggd + layout.offset(b, 0, 0);
        const GateLayout& out_layout = shared ? item_layout : layout;
        const bool add_to_gates = shared && g0 != first;
        for (int64_t d = 0; d < kDirections; ++d) {
          for (int64_t k = 0; k < count; ++k) {
            s.kernels.route(grd + (p + k) * hw, which.data() + k * hw, static_cast<int>(d), routed + k * hw, hw);
          }
          const T* a = normalized + 3 * d * hw;
          T* ga = gates_out + out_layout.offset(0, g0, d);  // shared: channel_stride 0
          const int64_t gs = out_layout.gate_stride;
          if (shared_scaled) {
            const auto inputs = scaled_scan_inputs(xd + p * hw, gd, g, b, normalized, strength, d, g0, count, false);
            cpu::BackwardInputs<T> backward{routed, inputs.x, inputs.a, inputs.b, inputs.c, scans + d * group * hw,
                                            gx, ga, ga + gs, ga + 2 * gs, count, d > 0, add_to_gates};
            backward.r = inputs.r;
            backward.strength = inputs.strength;
            backward.gt = binding_buffer(b, part) + d * hw;
            backward.strength_share = sid + (b * kDirections + d) * channels + g0;
            s.kernels.backward(backward, s.geo[d], s.backward_tiling[d], scratch);
            continue;
          }
          if (!scaled) {
            s.kernels.backward(
                {routed, xd + p * hw, a, a + hw, a + 2 * hw, scans + d * group * hw, gx, ga, ga + gs,
                 ga + 2 * gs, count, d > 0, add_to_gates},
                s.geo[d], s.backward_tiling[d], scratch);
            continue;
          }
          T* cg = channel_grad;
          s.kernels.backward(
              {routed, xd + p * hw, a, a + hw, a + 2 * hw, scans + d * group * hw, gx, cg, cg + hw,
               cg + 2 * hw, 1, d > 0, false},
              s.geo[d], s.backward_tiling[d], scratch);
          // normalize(s x raw): the gradient of s x raw, then of s and of raw.
          const T strength_d = strength.at(d, g0);
          const T* raw = gd + layout.offset(b, g0, d);
          const int64_t rs = layout.gate_stride;
          scale_gates(raw, rs, strength_d, scaled_gates, hw);
          s.kernels.normalize_backward(scaled_gates, scaled_gates + hw, scaled_gates + 2 * hw, cg, cg + hw,
                                       cg + 2 * hw, hw);
          sid[(b * kDirections + d) * channels + g0] = gate_dot(cg, raw, rs, hw);
          put_scaled_gates(cg, strength_d, ga, gs, hw, add_to_gates);
        }
        if (!shared && !scaled) {
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
    // Sum the parts in order, then (without strength, whose gradients are
    // mapped per channel) map the gradient to the raw guidance.
    at::parallel_for(0, g.scan.batch * kDirections, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / kDirections;
        const int64_t d = task % kDirections;
        T* ga = part_buffer(b, 0) + 3 * d * hw;
        for (int64_t part = 1; part < parts.parts; ++part) {
          s.kernels.add(ga, part_buffer(b, part) + 3 * d * hw, 3 * hw);
        }
        const T* a = gd + layout.offset(b, 0, d);
        if (!scaled) {
          s.kernels.normalize_backward(a, a + hw, a + 2 * hw, ga, ga + hw, ga + 2 * hw, hw);
        } else {
          T* bound = binding_buffer(b, 0) + d * hw;
          for (int64_t part = 1; part < parts.parts; ++part) {
            s.kernels.add(bound, binding_buffer(b, part) + d * hw, hw);
          }
          s.kernels.binding_backward(a, a + hw, a + 2 * hw, bound, ga, ga + hw, ga + 2 * hw, hw);
        }
      }
    });
  }
  at::Tensor grad_strength = scaled ? strength_items.sum(0) : at::empty({0}, x.options());
  return {grad_x, grad_guidance, grad_strength};
}

// The strengths as the kernels read them (contiguous, of the kernels' dtype).
template <typename T>
Strength<T> strength_of(const std::optional<at::Tensor>& strength) {
  if (!strength.has_value()) return {};
  return {strength->const_data_ptr<T>(), strength->size(1)};
}

std::optional<at::Tensor> prepared(const std::optional<at::Tensor>& strength, at::ScalarType dtype) {
  if (!strength.has_value()) return std::nullopt;
  return strength->to(dtype).contiguous();
}

at::Tensor spn_propagate_cpu(const at::Tensor& x, const at::Tensor& guidance,
                             const std::optional<at::Tensor>& strength) {
  const auto geo = check_propagate_args(x, guidance, "spn_propagate");
  check_strength(x, strength, "spn_propagate");
  TORCH_CHECK(x.device().is_cpu(), "spn_propagate: the CPU kernel got a tensor on ", x.device());
  if (x.numel() == 0) {
    return at::empty(x.sizes(), x.options());
  }
  if (common::is_reduced_precision(x)) {
    return spn_propagate_cpu(x.to(at::kFloat), guidance.to(at::kFloat), prepared(strength, at::kFloat))
        .to(x.scalar_type());
  }
  const at::Tensor xc = x.contiguous();
  const at::Tensor gc = guidance.contiguous();
  const auto sc = prepared(strength, x.scalar_type());
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spn_propagate_cpu", [&] {
    out = forward_kernel<scalar_t>(xc, gc, strength_of<scalar_t>(sc), geo);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> spn_propagate_backward_cpu(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& guidance,
    const std::optional<at::Tensor>& strength, bool x_requires_grad) {
  const auto geo = check_propagate_args(x, guidance, "spn_propagate_backward");
  check_strength(x, strength, "spn_propagate_backward");
  TORCH_CHECK(
      grad.sizes() == x.sizes(),
      "spn_propagate_backward: grad must have the shape of x ", x.sizes(), ", got ", grad.sizes());
  TORCH_CHECK(
      grad.scalar_type() == x.scalar_type(),
      "spn_propagate_backward: grad must have the dtype of x (", x.scalar_type(), "), got ", grad.scalar_type());
  TORCH_CHECK(x.device().is_cpu(), "spn_propagate_backward: the CPU kernel got a tensor on ", x.device());
  if (x.numel() == 0) {
    at::Tensor grad_x = x_requires_grad ? at::empty(x.sizes(), x.options()) : at::empty({0}, x.options());
    return {grad_x, at::zeros(guidance.sizes(), guidance.options()),
            strength.has_value() ? at::zeros(strength->sizes(), x.options()) : at::empty({0}, x.options())};
  }
  if (common::is_reduced_precision(x)) {
    const auto dtype = x.scalar_type();
    auto [grad_x, grad_guidance, grad_strength] = spn_propagate_backward_cpu(
        grad.to(at::kFloat), x.to(at::kFloat), guidance.to(at::kFloat), prepared(strength, at::kFloat),
        x_requires_grad);
    return {grad_x.to(dtype), grad_guidance.to(dtype), grad_strength.to(dtype)};
  }
  // grad may be expanded (stride 0): read a contiguous copy, never write to it.
  const at::Tensor grc = grad.contiguous();
  const at::Tensor xc = x.contiguous();
  const at::Tensor gc = guidance.contiguous();
  const auto sc = prepared(strength, x.scalar_type());
  std::tuple<at::Tensor, at::Tensor, at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spn_propagate_backward_cpu", [&] {
    out = backward_kernel<scalar_t>(grc, xc, gc, strength_of<scalar_t>(sc), geo, x_requires_grad);
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
