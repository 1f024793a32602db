// Superpixel mask pooling: shared geometry, argument checks and error reports.
//
// pool:   x (B, C, H, W), labels (B, H, W) int64 -> (B, K, C), the mean of x
//         over the pixels of each segment id (-1 = pixel ignored; an empty
//         segment gives 0).
// unpool: pooled (B, K, C), labels (B, H, W) -> (B, C, H, W), every pixel takes
//         the row of its segment (0 where the id is -1).
// The backward ops are the same two data movements: the gradient of pool is an
// unpool scaled by 1 / count, the gradient of unpool is a sum-pool.
//
// An id outside [-1, K) is an error (check_ids=true) and is never used as an
// index: with check_ids=false the kernels treat such a pixel like -1.
#pragma once

#include <ATen/core/Tensor.h>

namespace ial {
namespace superpixel {

struct PoolGeometry {
  int64_t batch = 0;
  int64_t channels = 0;
  int64_t height = 0;
  int64_t width = 0;
  int64_t segments = 0;

  int64_t pixels() const { return height * width; }
};

// x: (B, C, H, W) float32/float64; labels: (B, H, W) int64 on x's device;
// 0 <= num_segments < 2^31. `op` names the op in the messages.
PoolGeometry check_image_args(
    const at::Tensor& x,
    const at::Tensor& labels,
    int64_t num_segments,
    const char* op,
    const char* x_name);

// pooled: (B, K, C) float32/float64; labels: (B, H, W) int64 on pooled's device.
PoolGeometry check_pooled_args(
    const at::Tensor& pooled,
    const at::Tensor& labels,
    const char* op,
    const char* pooled_name);

// Throws the error for labels.flatten()[flat_index] == id being out of range.
[[noreturn]] void report_bad_id(
    const char* op,
    const PoolGeometry& geo,
    int64_t flat_index,
    int64_t id);

} // namespace superpixel
} // namespace ial
