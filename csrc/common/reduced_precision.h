// float16 and bfloat16 run through the float32 kernels of every op: the op converts its
// inputs to float32 and its outputs back, so every sum is taken in float32.
#pragma once

#include <ATen/core/Tensor.h>

namespace ial {
namespace common {

inline bool is_reduced_precision(const at::Tensor& t) {
  return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
}

} // namespace common
} // namespace ial
