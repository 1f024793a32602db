// The fused pairwise propagation: four SPN scans of x with gates normalised to
// |a| + |b| + |c| <= 1, merged by element-wise max (DESIGN.md, op 1 and the
// pairwise module), without materialising normalised gates or the four scans.
//
// guidance: (B, 12C, H, W) per channel or (B, 12, H, W) shared by the C
// channels; four directions (left->right, right->left, top->bottom,
// bottom->top) of [a | b | c], each C channels (or one map) wide.
// strength (optional): (4, C), direction d's gates of channel c are
// normalize(strength[d][c] x (a, b, c)), a propagation strength per direction
// and channel on gates that may be shared by the channels.
#pragma once

#include "../spn_scan/spn_scan.h"

#include <ATen/core/Tensor.h>

#include <optional>

namespace ial {
namespace spn {

constexpr int64_t kDirections = 4;

struct PropagateGeometry {
  ScanGeometry scan;       // direction 0; shared_gates for (B, 12, H, W)
  GateLayout guidance;     // where gate j of direction d of (b, channel) lies

  ScanGeometry direction(int64_t d) const { return with_direction(scan, d); }
};

PropagateGeometry check_propagate_args(const at::Tensor& x, const at::Tensor& guidance, const char* op);
void check_strength(const at::Tensor& x, const std::optional<at::Tensor>& strength, const char* op);

} // namespace spn
} // namespace ial
