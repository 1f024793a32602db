// The similarity gates of the pairwise network (DESIGN.md, the pairwise module):
//
//   gates[b, (d, j, m), p] = scale * sigmoid(logits[b, (d, j, m), p])
//                                  * exp(-sum_e (embedding[b, e, p] - embedding[b, e, q])^2)
//
// for the 4 directions d and 3 gates j of each, with M maps per (d, j) (1 when
// the gates are shared by the classes), q = p + offset(d, j) clamped into the
// image (the nearest border pixel), offset(d, j) the neighbour gate j of scan
// direction d links to:
//   left->right (-1,-1) (0,-1) (1,-1)    right->left (-1,1) (0,1) (1,1)
//   top->bottom (-1,-1) (-1,0) (-1,1)    bottom->top (1,-1) (1,0) (1,1)
// as (row, column) offsets.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace ial {
namespace similarity {

constexpr int64_t kLinks = 12;  // 4 directions x 3 gates

struct GateGeometry {
  int64_t batch = 0;
  int64_t maps = 1;       // M
  int64_t embedding = 0;  // E
  int64_t height = 0;
  int64_t width = 0;
};

GateGeometry check_gate_args(const at::Tensor& logits, const at::Tensor& embedding, const char* op);

} // namespace similarity
} // namespace ial
