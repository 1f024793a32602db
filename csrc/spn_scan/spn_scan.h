// SPN directional propagation: shared geometry and argument checks.
//
// Every direction is handled as one canonical scan: `steps` lines are visited
// in order s = 0..steps-1, each line holding `cross` positions i, and position
// i of line s is linked to positions i-1 (gate a), i (gate b) and i+1 (gate c)
// of line s-1. Directions differ only in how (s, i) maps to memory.
#pragma once

#include <ATen/core/Tensor.h>

namespace ial {
namespace spn {

enum Direction : int64_t {
  kLeftToRight = 0,
  kRightToLeft = 1,
  kTopToBottom = 2,
  kBottomToTop = 3,
};

struct ScanGeometry {
  int64_t batch = 0;
  int64_t channels = 0;
  int64_t height = 0;
  int64_t width = 0;
  bool horizontal = false;  // scan runs along W; lines are columns
  bool reverse = false;     // scan runs from the last line to the first
  bool shared_gates = false;  // gates (B, 3, H, W), one set for every channel

  int64_t planes() const { return batch * channels; }
  int64_t plane_size() const { return height * width; }
  int64_t steps() const { return horizontal ? width : height; }
  int64_t cross() const { return horizontal ? height : width; }
  // Index along the scanned axis of the line visited at step s.
  int64_t position(int64_t s) const { return reverse ? steps() - 1 - s : s; }
};

// Where the gate planes of (batch item, channel) lie, in elements: a at
// batch * batch_stride + channel * channel_stride (+ direction * direction_stride
// in a guidance tensor of four directions), b and c gate_stride and twice that
// further. Shared gates have channel_stride 0.
struct GateLayout {
  int64_t batch_stride = 0;
  int64_t channel_stride = 0;
  int64_t gate_stride = 0;
  int64_t direction_stride = 0;

  int64_t offset(int64_t batch, int64_t channel, int64_t direction = 0) const {
    return batch * batch_stride + channel * channel_stride + direction * direction_stride;
  }
};

// Gates of one direction: (B, 3C, H, W) per channel or (B, 3, H, W) shared.
GateLayout gate_layout(const ScanGeometry& geo);

// Validates (x, gates, direction) and returns the scan geometry. Gates are
// (B, 3C, H, W) or (B, 3, H, W) (shared by the C channels; C = 1 is both).
ScanGeometry check_forward_args(
    const at::Tensor& x,
    const at::Tensor& gates,
    int64_t direction,
    bool allow_reduced_precision);

// The geometry of one scan direction, from another direction's.
ScanGeometry with_direction(ScanGeometry geo, int64_t direction);

// Validates the backward arguments (grad_h and h must match x).
ScanGeometry check_backward_args(
    const at::Tensor& grad_h,
    const at::Tensor& x,
    const at::Tensor& gates,
    const at::Tensor& h,
    int64_t direction,
    bool allow_reduced_precision);

} // namespace spn
} // namespace ial
