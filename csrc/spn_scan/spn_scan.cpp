// Schema of the SPN scan ops and the argument checks shared by every backend.
#include "spn_scan.h"

#include <torch/library.h>

namespace ial {
namespace spn {
namespace {

void check_dtype(const at::Tensor& t, const char* name, bool allow_reduced_precision) {
  const auto dtype = t.scalar_type();
  const bool full = dtype == at::kFloat || dtype == at::kDouble;
  const bool reduced = dtype == at::kHalf || dtype == at::kBFloat16;
  TORCH_CHECK(
      full || (reduced && allow_reduced_precision),
      "spn_scan: ", name, " must be ",
      allow_reduced_precision ? "float16, bfloat16, float32 or float64"
                              : "float32 or float64 on this device",
      ", got ", dtype);
}

void check_same_shape(const at::Tensor& t, const at::Tensor& x, const char* name) {
  TORCH_CHECK(
      t.sizes() == x.sizes(),
      "spn_scan_backward: ", name, " must have the shape of x ", x.sizes(),
      ", got ", t.sizes());
}

void check_same_dtype_device(const at::Tensor& t, const at::Tensor& x, const char* name) {
  TORCH_CHECK(
      t.scalar_type() == x.scalar_type(),
      "spn_scan: ", name, " must have the dtype of x (", x.scalar_type(),
      "), got ", t.scalar_type());
  TORCH_CHECK(
      t.device() == x.device(),
      "spn_scan: ", name, " must be on the device of x (", x.device(),
      "), got ", t.device());
}

} // namespace

ScanGeometry check_forward_args(
    const at::Tensor& x,
    const at::Tensor& gates,
    int64_t direction,
    bool allow_reduced_precision) {
  TORCH_CHECK(
      x.dim() == 4, "spn_scan: x must be 4-D (B, C, H, W), got ", x.dim(), "-D");
  TORCH_CHECK(
      gates.dim() == 4,
      "spn_scan: gates must be 4-D, (B, 3C, H, W) or (B, 3, H, W), got ", gates.dim(), "-D");
  TORCH_CHECK(
      direction >= 0 && direction <= 3,
      "spn_scan: direction must be 0 (left->right), 1 (right->left), ",
      "2 (top->bottom) or 3 (bottom->top), got ", direction);
  check_dtype(x, "x", allow_reduced_precision);
  check_same_dtype_device(gates, x, "gates");

  ScanGeometry g;
  g.batch = x.size(0);
  g.channels = x.size(1);
  g.height = x.size(2);
  g.width = x.size(3);
  TORCH_CHECK(
      gates.size(0) == g.batch && (gates.size(1) == 3 * g.channels || gates.size(1) == 3) &&
          gates.size(2) == g.height && gates.size(3) == g.width,
      "spn_scan: gates must have shape (B, 3C, H, W) = (", g.batch, ", ", 3 * g.channels, ", ",
      g.height, ", ", g.width, ") or, shared by the channels, (B, 3, H, W) = (", g.batch, ", 3, ",
      g.height, ", ", g.width, ") for x of shape ", x.sizes(), ", got ", gates.sizes());
  g.shared_gates = gates.size(1) == 3;
  return with_direction(g, direction);
}

ScanGeometry with_direction(ScanGeometry geo, int64_t direction) {
  geo.horizontal = direction == kLeftToRight || direction == kRightToLeft;
  geo.reverse = direction == kRightToLeft || direction == kBottomToTop;
  return geo;
}

GateLayout gate_layout(const ScanGeometry& geo) {
  const int64_t hw = geo.plane_size();
  GateLayout layout;
  const int64_t per_gate = geo.shared_gates ? 1 : geo.channels;
  layout.batch_stride = 3 * per_gate * hw;
  layout.channel_stride = geo.shared_gates ? 0 : hw;
  layout.gate_stride = per_gate * hw;
  return layout;
}

ScanGeometry check_backward_args(
    const at::Tensor& grad_h,
    const at::Tensor& x,
    const at::Tensor& gates,
    const at::Tensor& h,
    int64_t direction,
    bool allow_reduced_precision) {
  auto g = check_forward_args(x, gates, direction, allow_reduced_precision);
  check_same_shape(grad_h, x, "grad_h");
  check_same_shape(h, x, "h");
  check_same_dtype_device(grad_h, x, "grad_h");
  check_same_dtype_device(h, x, "h");
  return g;
}

TORCH_LIBRARY_FRAGMENT(ial, m) {
  m.def("spn_scan(Tensor x, Tensor gates, int direction) -> Tensor");
  m.def(
      "spn_scan_backward(Tensor grad_h, Tensor x, Tensor gates, Tensor h, "
      "int direction) -> (Tensor, Tensor)");
}

} // namespace spn
} // namespace ial
