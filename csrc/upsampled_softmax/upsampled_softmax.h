// The unary probabilities alpha_u = softmax(f(images)) in one op, from the logits at the network's stride:
//
//   out[b, c, i, j] = softmax over the classes c of up(logits)[b, c, i, j], where
//                     up is the bilinear resize (align_corners=False) to (H, W) and
//                     classes with present[b, c] false get probability 0
//
// (every class gets 1 / C where none is present, as a softmax of equal values).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>

namespace ial {
namespace upsampled_softmax {

struct SoftmaxGeometry {
  int64_t batch = 0;
  int64_t classes = 0;
  int64_t in_height = 0;
  int64_t in_width = 0;
  int64_t height = 0;  // of the output
  int64_t width = 0;
};

SoftmaxGeometry check_softmax_args(const at::Tensor& logits, at::IntArrayRef size,
                                   const std::optional<at::Tensor>& present, const char* op);

} // namespace upsampled_softmax
} // namespace ial
