// Schema of the fused propagation ops and the argument checks every backend shares.
#include "spn_propagate.h"

#include <torch/library.h>

namespace ial {
namespace spn {

PropagateGeometry check_propagate_args(const at::Tensor& x, const at::Tensor& guidance, const char* op) {
  TORCH_CHECK(x.dim() == 4, op, ": x must be 4-D (B, C, H, W), got ", x.dim(), "-D");
  TORCH_CHECK(
      guidance.dim() == 4,
      op, ": guidance must be 4-D, (B, 12C, H, W) or (B, 12, H, W), got ", guidance.dim(), "-D");
  const auto dtype = x.scalar_type();
  TORCH_CHECK(
      dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16,
      op, ": x must be float16, bfloat16, float32 or float64, got ", dtype);
  TORCH_CHECK(
      guidance.scalar_type() == dtype,
      op, ": guidance must have the dtype of x (", dtype, "), got ", guidance.scalar_type());
  TORCH_CHECK(
      guidance.device() == x.device(),
      op, ": guidance must be on the device of x (", x.device(), "), got ", guidance.device());
  PropagateGeometry g;
  ScanGeometry& s = g.scan;
  s.batch = x.size(0);
  s.channels = x.size(1);
  s.height = x.size(2);
  s.width = x.size(3);
  TORCH_CHECK(
      guidance.size(0) == s.batch && (guidance.size(1) == 12 * s.channels || guidance.size(1) == 12) &&
          guidance.size(2) == s.height && guidance.size(3) == s.width,
      op, ": guidance must have shape (B, 12C, H, W) = (", s.batch, ", ", 12 * s.channels, ", ", s.height,
      ", ", s.width, ") or, shared by the channels, (B, 12, H, W) = (", s.batch, ", 12, ", s.height, ", ",
      s.width, ") for x of shape ", x.sizes(), ", got ", guidance.sizes());
  s.shared_gates = guidance.size(1) == 12;
  s = with_direction(s, kLeftToRight);
  g.guidance = gate_layout(s);
  g.guidance.direction_stride = g.guidance.batch_stride;
  g.guidance.batch_stride *= kDirections;
  return g;
}

void check_strength(const at::Tensor& x, const std::optional<at::Tensor>& strength, const char* op) {
  if (!strength.has_value()) return;
  const at::Tensor& s = *strength;
  TORCH_CHECK(
      s.dim() == 2 && s.size(0) == kDirections && s.size(1) == x.size(1),
      op, ": strength must have shape (4, C) = (4, ", x.size(1), ") for x of shape ", x.sizes(), ", got ",
      s.sizes());
  TORCH_CHECK(
      s.scalar_type() == x.scalar_type(),
      op, ": strength must have the dtype of x (", x.scalar_type(), "), got ", s.scalar_type());
  TORCH_CHECK(
      s.device() == x.device(), op, ": strength must be on the device of x (", x.device(), "), got ", s.device());
}

TORCH_LIBRARY_FRAGMENT(ial, m) {
  m.def("spn_propagate(Tensor x, Tensor guidance, Tensor? strength=None) -> Tensor");
  // The third gradient is strength's, or an empty (0,) tensor without strength;
  // the first is x's, or an empty (0,) tensor when x_requires_grad is false
  // (the pairwise network refines a unary map that gets no gradient).
  m.def(
      "spn_propagate_backward(Tensor grad, Tensor x, Tensor guidance, Tensor? strength=None, "
      "bool x_requires_grad=True) -> (Tensor, Tensor, Tensor)");
}

} // namespace spn
} // namespace ial
