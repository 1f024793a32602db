// Schema of the similarity-gate ops and the argument checks every backend shares.
#include "similarity_gates.h"

#include <torch/library.h>

namespace ial {
namespace similarity {

GateGeometry check_gate_args(const at::Tensor& logits, const at::Tensor& embedding, const char* op) {
  TORCH_CHECK(logits.dim() == 4, op, ": logits must be 4-D (B, 12M, H, W), got ", logits.dim(), "-D");
  TORCH_CHECK(embedding.dim() == 4, op, ": embedding must be 4-D (B, E, H, W), got ", embedding.dim(), "-D");
  const auto dtype = logits.scalar_type();
  TORCH_CHECK(
      dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16,
      op, ": logits must be float16, bfloat16, float32 or float64, got ", dtype);
  TORCH_CHECK(
      embedding.scalar_type() == dtype,
      op, ": embedding must have the dtype of logits (", dtype, "), got ", embedding.scalar_type());
  TORCH_CHECK(
      embedding.device() == logits.device(),
      op, ": embedding must be on the device of logits (", logits.device(), "), got ", embedding.device());
  TORCH_CHECK(
      logits.size(1) % kLinks == 0 && logits.size(1) > 0,
      op, ": logits must have 12M channels (4 directions x 3 gates x M maps), got ", logits.size(1));
  TORCH_CHECK(
      embedding.size(0) == logits.size(0) && embedding.size(2) == logits.size(2) &&
          embedding.size(3) == logits.size(3) && embedding.size(1) > 0,
      op, ": embedding must have shape (B, E, H, W) = (", logits.size(0), ", E, ", logits.size(2), ", ",
      logits.size(3), ") with E >= 1 for logits of shape ", logits.sizes(), ", got ", embedding.sizes());
  GateGeometry g;
  g.batch = logits.size(0);
  g.maps = logits.size(1) / kLinks;
  g.embedding = embedding.size(1);
  g.height = logits.size(2);
  g.width = logits.size(3);
  return g;
}

TORCH_LIBRARY_FRAGMENT(ial, m) {
  m.def("similarity_gates(Tensor logits, Tensor embedding, float scale) -> Tensor");
  // -> (grad_logits, grad_embedding)
  m.def(
      "similarity_gates_backward(Tensor grad, Tensor logits, Tensor embedding, float scale) "
      "-> (Tensor, Tensor)");
}

} // namespace similarity
} // namespace ial
