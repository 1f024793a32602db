// The similarity gates on the CPU, row by row of each batch item:
//
// forward:  the 8 affinity rows of an image row (one per neighbour offset, in a
//           per-thread buffer), then the 12M gate rows from them and the logits.
// backward: pass 1 recomputes the affinity rows and writes the logits' gradient
//           and, per offset, coef = the sum over the maps of go (B, 8, H, W),
//           the gradient of the link's squared distance with its sign flipped;
//           pass 2 gathers each pixel's embedding gradient from its own links
//           and from the links that end on it; pass 3 adds, per batch item, the
//           links at the border whose neighbour was clamped onto another pixel.
// Nothing of the size of the 12 affinity maps is stored.
#include "../similarity_gates.h"
#include "gate_kernels_api.h"
#include "../../common/output_memory.h"
#include "../../common/reduced_precision.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cstdint>
#include <vector>

namespace ial {
namespace similarity {
namespace {

template <typename T>
cpu::Image<T> image_of(const at::Tensor& embedding, const GateGeometry& g, int64_t b) {
  const int64_t plane = g.height * g.width;
  return {embedding.const_data_ptr<T>() + b * g.embedding * plane, g.embedding, g.height, g.width};
}

// f(b, y, affinity) for every image row of the batch, in parallel, with the row's 8 affinity
// rows (offset o's at affinity + o * W) in a per-thread buffer.
template <typename T, typename F>
void for_each_row(const cpu::Kernels<T>& kernels, const at::Tensor& embedding, const GateGeometry& g, F&& f) {
  at::parallel_for(0, g.batch * g.height, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> affinity(cpu::kOffsets * g.width);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / g.height, y = row % g.height;
      kernels.affinity_row(image_of<T>(embedding, g, b), y, affinity.data());
      f(b, y, affinity.data());
    }
  });
}

// f(o, at) for the 12M gate rows of image row y of batch item b: o is the neighbour offset of
// the row's link, at the index of its first element.
template <typename F>
void for_each_gate_row(const GateGeometry& g, int64_t b, int64_t y, F&& f) {
  const int64_t plane = g.height * g.width;
  for (int64_t k = 0; k < kLinks; ++k) {
    for (int64_t m = 0; m < g.maps; ++m) {
      f(cpu::kLinkOffset[k], ((b * kLinks + k) * g.maps + m) * plane + y * g.width);
    }
  }
}

template <typename T>
at::Tensor forward_kernel(const at::Tensor& logits, const at::Tensor& embedding, T scale, const GateGeometry& g) {
  const auto& kernels = cpu::gate_kernels<T>();
  at::Tensor out = common::empty_output(logits.sizes(), logits.options());
  const int64_t w = g.width;
  const T* l = logits.const_data_ptr<T>();
  T* o = out.mutable_data_ptr<T>();
  for_each_row(kernels, embedding, g, [&](int64_t b, int64_t y, const T* affinity) {
    for_each_gate_row(g, b, y, [&](int offset, int64_t at) {
      kernels.gate_row(l + at, affinity + offset * w, scale, w, o + at);
    });
  });
  return out;
}

// The links of border pixels whose neighbour lies outside the image end on the
// nearest border pixel q; where q is not the pixel itself, q's gradient gets
// 2 coef (e_p - e_q) (pass 2 covers only links that end where they point).
template <typename T>
void add_clamped_links(const cpu::Image<T>& image, const T* coef, T* grad_embedding) {
  const int64_t h = image.height, w = image.width, plane = h * w;
  auto pixel = [&](int64_t y, int64_t x) {
    for (int o = 0; o < cpu::kOffsets; ++o) {
      const int64_t ty = y + cpu::kOffsetRow[o], tx = x + cpu::kOffsetColumn[o];
      if (ty >= 0 && ty < h && tx >= 0 && tx < w) continue;
      const int64_t qy = ty < 0 ? 0 : (ty >= h ? h - 1 : ty);
      const int64_t qx = tx < 0 ? 0 : (tx >= w ? w - 1 : tx);
      if (qy == y && qx == x) continue;  // the clamped link is the pixel itself: no distance
      const T c = T(2) * coef[o * plane + y * w + x];
      for (int64_t e = 0; e < image.channels; ++e) {
        const T* channel = image.embedding + e * plane;
        grad_embedding[e * plane + qy * w + qx] += c * (channel[y * w + x] - channel[qy * w + qx]);
      }
    }
  };
  for (int64_t x = 0; x < w; ++x) {
    pixel(0, x);
    if (h > 1) pixel(h - 1, x);
  }
  for (int64_t y = 1; y < h - 1; ++y) {
    pixel(y, 0);
    if (w > 1) pixel(y, w - 1);
  }
}

template <typename T>
std::tuple<at::Tensor, at::Tensor> backward_kernel(
    const at::Tensor& grad, const at::Tensor& logits, const at::Tensor& embedding, T scale, const GateGeometry& g) {
  const auto& kernels = cpu::gate_kernels<T>();
  at::Tensor grad_logits = common::empty_output(logits.sizes(), logits.options());
  at::Tensor grad_embedding = common::empty_output(embedding.sizes(), embedding.options());
  at::Tensor coef = at::empty({g.batch, cpu::kOffsets, g.height, g.width}, logits.options());
  const int64_t w = g.width, plane = g.height * w;
  const T* gr = grad.const_data_ptr<T>();
  const T* l = logits.const_data_ptr<T>();
  T* gl = grad_logits.mutable_data_ptr<T>();
  T* ge = grad_embedding.mutable_data_ptr<T>();
  T* co = coef.mutable_data_ptr<T>();
  for_each_row(kernels, embedding, g, [&](int64_t b, int64_t y, const T* affinity) {
    T* coef_rows = co + b * cpu::kOffsets * plane + y * w;
    for (int o = 0; o < cpu::kOffsets; ++o) {
      for (int64_t x = 0; x < w; ++x) coef_rows[o * plane + x] = T(0);
    }
    for_each_gate_row(g, b, y, [&](int offset, int64_t at) {
      kernels.gate_backward_row(
          gr + at, l + at, affinity + offset * w, scale, w, gl + at, coef_rows + offset * plane);
    });
  });
  at::parallel_for(0, g.batch * g.height, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / g.height, y = row % g.height;
      kernels.embedding_backward_row(
          image_of<T>(embedding, g, b), co + b * cpu::kOffsets * plane, y, ge + b * g.embedding * plane);
    }
  });
  at::parallel_for(0, g.batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      add_clamped_links(image_of<T>(embedding, g, b), co + b * cpu::kOffsets * plane, ge + b * g.embedding * plane);
    }
  });
  return {grad_logits, grad_embedding};
}

at::Tensor similarity_gates_cpu(const at::Tensor& logits, const at::Tensor& embedding, double scale) {
  const auto g = check_gate_args(logits, embedding, "similarity_gates");
  TORCH_CHECK(logits.device().is_cpu(), "similarity_gates: the CPU kernel got a tensor on ", logits.device());
  if (logits.numel() == 0) {
    return at::empty(logits.sizes(), logits.options());
  }
  if (common::is_reduced_precision(logits)) {
    return similarity_gates_cpu(logits.to(at::kFloat), embedding.to(at::kFloat), scale).to(logits.scalar_type());
  }
  const at::Tensor lc = logits.contiguous();
  const at::Tensor ec = embedding.contiguous();
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "similarity_gates_cpu", [&] {
    out = forward_kernel<scalar_t>(lc, ec, static_cast<scalar_t>(scale), g);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> similarity_gates_backward_cpu(
    const at::Tensor& grad, const at::Tensor& logits, const at::Tensor& embedding, double scale) {
  const auto g = check_gate_args(logits, embedding, "similarity_gates_backward");
  TORCH_CHECK(
      grad.sizes() == logits.sizes(),
      "similarity_gates_backward: grad must have the shape of logits ", logits.sizes(), ", got ", grad.sizes());
  TORCH_CHECK(
      grad.scalar_type() == logits.scalar_type(),
      "similarity_gates_backward: grad must have the dtype of logits (", logits.scalar_type(), "), got ",
      grad.scalar_type());
  TORCH_CHECK(
      logits.device().is_cpu(), "similarity_gates_backward: the CPU kernel got a tensor on ", logits.device());
  if (logits.numel() == 0) {
    return {at::zeros(logits.sizes(), logits.options()), at::zeros(embedding.sizes(), embedding.options())};
  }
  if (common::is_reduced_precision(logits)) {
    const auto dtype = logits.scalar_type();
    auto [grad_logits, grad_embedding] = similarity_gates_backward_cpu(
        grad.to(at::kFloat), logits.to(at::kFloat), embedding.to(at::kFloat), scale);
    return {grad_logits.to(dtype), grad_embedding.to(dtype)};
  }
  // grad may be expanded (stride 0): read a contiguous copy, never write to it.
  const at::Tensor grc = grad.contiguous();
  const at::Tensor lc = logits.contiguous();
  const at::Tensor ec = embedding.contiguous();
  std::tuple<at::Tensor, at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "similarity_gates_backward_cpu", [&] {
    out = backward_kernel<scalar_t>(grc, lc, ec, static_cast<scalar_t>(scale), g);
  });
  return out;
}

} // namespace

TORCH_LIBRARY_IMPL(ial, CPU, m) {
  m.impl("similarity_gates", &similarity_gates_cpu);
  m.impl("similarity_gates_backward", &similarity_gates_backward_cpu);
}

} // namespace similarity
} // namespace ial
