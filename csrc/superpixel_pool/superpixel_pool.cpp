// Schema of the superpixel pooling ops and the argument checks shared by every backend.
#include "superpixel_pool.h"

#include <torch/library.h>

#include <cstdint>
#include <limits>
#include <stdexcept>

namespace ial {
namespace superpixel {
namespace {

void check_float(const at::Tensor& t, const char* op, const char* name) {
  const auto dtype = t.scalar_type();
  TORCH_CHECK(
      dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16,
      op, ": ", name, " must be float16, bfloat16, float32 or float64, got ", dtype);
}

void check_labels(const at::Tensor& labels, const at::Tensor& data, const char* op, const char* name) {
  TORCH_CHECK(
      labels.dim() == 3, op, ": labels must be 3-D (B, H, W), got ", labels.dim(), "-D");
  TORCH_CHECK(
      labels.scalar_type() == at::kLong,
      op, ": labels must be int64 (torch.long) segment ids, got ", labels.scalar_type());
  TORCH_CHECK(
      labels.device() == data.device(),
      op, ": labels must be on the device of ", name, " (", data.device(), "), got ",
      labels.device());
}

} // namespace

PoolGeometry check_image_args(
    const at::Tensor& x,
    const at::Tensor& labels,
    int64_t num_segments,
    const char* op,
    const char* x_name) {
  TORCH_CHECK(
      x.dim() == 4, op, ": ", x_name, " must be 4-D (B, C, H, W), got ", x.dim(), "-D");
  check_float(x, op, x_name);
  check_labels(labels, x, op, x_name);
  TORCH_CHECK(num_segments >= 0, op, ": num_segments must be >= 0, got ", num_segments);
  TORCH_CHECK(
      num_segments < std::numeric_limits<int32_t>::max(),
      op, ": num_segments must be < 2^31 - 1, got ", num_segments);
  PoolGeometry g;
  g.batch = x.size(0);
  g.channels = x.size(1);
  g.height = x.size(2);
  g.width = x.size(3);
  g.segments = num_segments;
  TORCH_CHECK(
      labels.size(0) == g.batch && labels.size(1) == g.height && labels.size(2) == g.width,
      op, ": labels must have shape (B, H, W) = (", g.batch, ", ", g.height, ", ", g.width,
      ") to match ", x_name, " of shape ", x.sizes(), ", got ", labels.sizes());
  return g;
}

PoolGeometry check_pooled_args(
    const at::Tensor& pooled,
    const at::Tensor& labels,
    const char* op,
    const char* pooled_name) {
  TORCH_CHECK(
      pooled.dim() == 3,
      op, ": ", pooled_name, " must be 3-D (B, K, C), got ", pooled.dim(), "-D");
  check_float(pooled, op, pooled_name);
  check_labels(labels, pooled, op, pooled_name);
  PoolGeometry g;
  g.batch = pooled.size(0);
  g.segments = pooled.size(1);
  g.channels = pooled.size(2);
  g.height = labels.size(1);
  g.width = labels.size(2);
  TORCH_CHECK(
      labels.size(0) == g.batch,
      op, ": labels must have the batch size of ", pooled_name, " (", g.batch,
      "), got labels of shape ", labels.sizes());
  TORCH_CHECK(
      g.segments < std::numeric_limits<int32_t>::max(),
      op, ": ", pooled_name, " must have fewer than 2^31 - 1 segments, got ", g.segments);
  return g;
}

void report_bad_id(const char* op, const PoolGeometry& geo, int64_t flat_index, int64_t id) {
  const int64_t hw = geo.pixels();
  const int64_t b = flat_index / hw;
  const int64_t row = (flat_index % hw) / geo.width;
  const int64_t col = flat_index % geo.width;
  TORCH_CHECK(
      false, op, ": labels[", b, ", ", row, ", ", col, "] = ", id,
      " is out of range: segment ids must be -1 (ignored) or in [0, num_segments) = [0, ",
      geo.segments, ")");
  // Unreachable; keeps [[noreturn]] honest for compilers that do not see through TORCH_CHECK.
  throw std::logic_error("unreachable");
}

TORCH_LIBRARY_FRAGMENT(ial, m) {
  m.def(
      "superpixel_pool(Tensor x, Tensor labels, int num_segments, bool check_ids=True) -> Tensor");
  m.def("superpixel_pool_backward(Tensor grad, Tensor labels, bool check_ids=True) -> Tensor");
  m.def("superpixel_unpool(Tensor pooled, Tensor labels, bool check_ids=True) -> Tensor");
  m.def(
      "superpixel_unpool_backward(Tensor grad, Tensor labels, int num_segments, "
      "bool check_ids=True) -> Tensor");
}

} // namespace superpixel
} // namespace ial
