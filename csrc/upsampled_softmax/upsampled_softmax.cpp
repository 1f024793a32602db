// Schema of the upsampled softmax and the argument checks every backend shares.
#include "upsampled_softmax.h"

#include <torch/library.h>

namespace ial {
namespace upsampled_softmax {

SoftmaxGeometry check_softmax_args(const at::Tensor& logits, at::IntArrayRef size,
                                   const std::optional<at::Tensor>& present, const char* op) {
  TORCH_CHECK(logits.dim() == 4, op, ": logits must be 4-D (B, C, h, w), got ", logits.dim(), "-D");
  const auto dtype = logits.scalar_type();
  TORCH_CHECK(
      dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16,
      op, ": logits must be float16, bfloat16, float32 or float64, got ", dtype);
  TORCH_CHECK(logits.size(1) > 0, op, ": logits must have at least one class, got shape ", logits.sizes());
  TORCH_CHECK(size.size() == 2, op, ": size must be (H, W), got ", size.size(), " numbers");
  TORCH_CHECK(size[0] > 0 && size[1] > 0, op, ": size must be positive, got ", size);
  TORCH_CHECK(
      logits.numel() == 0 || (logits.size(2) > 0 && logits.size(3) > 0),
      op, ": logits must have a positive height and width, got shape ", logits.sizes());
  if (present.has_value()) {
    TORCH_CHECK(
        present->scalar_type() == at::kBool, op, ": present must be a bool tensor, got ", present->scalar_type());
    TORCH_CHECK(
        present->dim() == 2 && present->size(0) == logits.size(0) && present->size(1) == logits.size(1),
        op, ": present must have shape (B, C) = (", logits.size(0), ", ", logits.size(1), ") for logits of shape ",
        logits.sizes(), ", got ", present->sizes());
    TORCH_CHECK(
        present->device() == logits.device(),
        op, ": present must be on the device of logits (", logits.device(), "), got ", present->device());
  }
  SoftmaxGeometry g;
  g.batch = logits.size(0);
  g.classes = logits.size(1);
  g.in_height = logits.size(2);
  g.in_width = logits.size(3);
  g.height = size[0];
  g.width = size[1];
  return g;
}

TORCH_LIBRARY_FRAGMENT(ial, m) {
  m.def("upsampled_softmax(Tensor logits, SymInt[2] size, Tensor? present=None) -> Tensor");
}

} // namespace upsampled_softmax
} // namespace ial
