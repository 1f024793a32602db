// The upsampled softmax on the CPU in two passes over a batch:
//   1. every input row of every class resized along the width (B, C, h, W), a
//      fraction h / H of the output;
//   2. every output row: the two resized input rows it interpolates, then the
//      softmax over the classes in a per-thread buffer, written once.
// No full-size map but the output is written (with non-temporal stores where it
// is larger than the caches); the resize and its weights are
// ATen's (upsample_bilinear2d, align_corners=False), in the same order.
#include "../upsampled_softmax.h"
#include "softmax_kernels_api.h"
#include "../../common/cpu_features.h"
#include "../../common/output_memory.h"
#include "../../common/reduced_precision.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace ial {
namespace upsampled_softmax {
namespace {

// The taps of one axis as ATen's compute_source_index_and_lambda computes them.
template <typename T>
struct AxisTaps {
  std::vector<int64_t> i0, i1;
  std::vector<T> w0, w1;

  AxisTaps(int64_t in, int64_t out) : i0(out), i1(out), w0(out), w1(out) {
    const T scale = static_cast<T>(in) / static_cast<T>(out);
    for (int64_t k = 0; k < out; ++k) {
      if (in == out) {
        i0[k] = i1[k] = k;
        w0[k] = T(1);
        w1[k] = T(0);
        continue;
      }
      T source = scale * (static_cast<T>(k) + T(0.5)) - T(0.5);
      source = source < T(0) ? T(0) : source;
      i0[k] = std::min(static_cast<int64_t>(std::floor(source)), in - 1);
      const T lambda = std::min(std::max(source - static_cast<T>(i0[k]), T(0)), T(1));
      i1[k] = i0[k] + (i0[k] < in - 1 ? 1 : 0);
      w1[k] = lambda;
      w0[k] = T(1) - lambda;
    }
  }

  cpu::Taps<T> view() const { return {i0.data(), i1.data(), w0.data(), w1.data()}; }
};

template <typename T>
at::Tensor softmax_kernel(const at::Tensor& logits, const SoftmaxGeometry& g, const bool* present) {
  const auto& kernels = cpu::softmax_kernels<T>();
  const int64_t classes = g.classes, h = g.in_height, w = g.in_width, H = g.height, W = g.width;
  at::Tensor out = common::empty_output({g.batch, classes, H, W}, logits.options());
  at::Tensor resized = at::empty({g.batch, classes, h, W}, logits.options());
  const T* in = logits.const_data_ptr<T>();
  T* rd = resized.mutable_data_ptr<T>();
  T* od = out.mutable_data_ptr<T>();
  const AxisTaps<T> across(w, W), down(h, H);
  const auto across_taps = across.view();
  const bool stream = out.nbytes() > static_cast<size_t>(ial::cpu::streaming_store_bytes());
  at::parallel_for(0, g.batch * classes * h, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) kernels.resize_row(in + r * w, across_taps, W, rd + r * W);
  });
  at::parallel_for(0, g.batch * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> scratch((classes + 2) * W);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / H, i = row % H;
      const T* item = rd + b * classes * h * W;
      cpu::SoftmaxRow<T> task;
      task.rows0 = item + down.i0[i] * W;
      task.rows1 = item + down.i1[i] * W;
      task.class_stride = h * W;
      task.w0 = down.w0[i];
      task.w1 = down.w1[i];
      task.present = present == nullptr ? nullptr : present + b * classes;
      task.classes = classes;
      task.width = W;
      task.out = od + b * classes * H * W + i * W;
      task.out_stride = H * W;
      task.stream = stream;
      kernels.softmax_row(task, scratch.data());
    }
  });
  return out;
}

at::Tensor upsampled_softmax_cpu(const at::Tensor& logits, c10::SymIntArrayRef symbolic_size,
                                 const std::optional<at::Tensor>& present) {
  const at::IntArrayRef size = C10_AS_INTARRAYREF_SLOW(symbolic_size);
  const auto g = check_softmax_args(logits, size, present, "upsampled_softmax");
  TORCH_CHECK(logits.device().is_cpu(), "upsampled_softmax: the CPU kernel got a tensor on ", logits.device());
  if (logits.numel() == 0) {
    return at::empty({g.batch, g.classes, g.height, g.width}, logits.options());
  }
  if (common::is_reduced_precision(logits)) {
    return upsampled_softmax_cpu(logits.to(at::kFloat), symbolic_size, present).to(logits.scalar_type());
  }
  const at::Tensor lc = logits.contiguous();
  const at::Tensor pc = present.has_value() ? present->contiguous() : at::Tensor();
  const bool* pd = pc.defined() ? pc.const_data_ptr<bool>() : nullptr;
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "upsampled_softmax_cpu", [&] {
    out = softmax_kernel<scalar_t>(lc, g, pd);
  });
  return out;
}

} // namespace

TORCH_LIBRARY_IMPL(ial, CPU, m) {
  m.impl("upsampled_softmax", &upsampled_softmax_cpu);
}

} // namespace upsampled_softmax
} // namespace ial
