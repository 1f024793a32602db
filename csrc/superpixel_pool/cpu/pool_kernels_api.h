// Channel-inner float32 kernels of the CPU superpixel ops, compiled per
// instruction set (pool_kernels_avx2.cpp; AVX-512 gained nothing measurable
// here, see RESULTS.md), on plain pointers so that no torch header is compiled
// for a SIMD target. group_kernels() picks them with common/cpu_features.h.
//
// Both kernels take one image and a group of 8 channel planes at a time and
// move 8 pixels x 8 channels through an in-register 8x8 transpose, so a
// vector holds the 8 channels of one pixel: the per-segment rows of the
// (B, K, C) side are then read or written as whole vectors, once per pixel
// for 8 outputs, instead of once per (pixel, channel).
#pragma once

#include <cstdint>

namespace ial {
namespace superpixel {
namespace cpu {

constexpr int kLanes = 8;         // channels per group = floats per vector
constexpr int64_t kBlock = 64;    // pixels per run block (the longest run summed in float)

// Runs of equal slots of one image, cut at every kBlock pixels, over the
// pixels padded to a multiple of 8 (padding has slot 0, the ignored bin).
struct RunView {
  int64_t pixels = 0;              // H * W (unpadded)
  const int32_t* run_last = nullptr;    // per run, in pixel order: 8 * (its last pixel - its block's first)
  const int32_t* run_slot = nullptr;    // per run, in pixel order: its slot
  const int32_t* block_begin = nullptr; // per block, + 1 sentinel: index of its first run
};

// acc ((n + 1) x 8 doubles, zeroed by the caller) += per slot sums of the 8
// planes rows[0..7] (each H * W floats; rows may repeat for a partial group).
using ReduceGroup = void (*)(const float* const rows[kLanes], const RunView& runs, double* acc);

// out_rows[i][p] = table[8 * slot[p] + i] for p in [begin, end), i < valid;
// table has (n + 1) x 8 floats, slot one int32 per pixel of the image
// (begin a multiple of 8, end <= H * W). `stream`: write around the caches
// (for outputs far larger than the last-level cache).
using GatherGroup = void (*)(
    const float* table,
    const int32_t* slot,
    int64_t begin,
    int64_t end,
    float* const out_rows[kLanes],
    int valid,
    bool stream);

// The RunView arrays of one image's slots for `reduce`: run_last and run_slot
// hold at least padded + kRunSlack entries (padded = pixels rounded up to 8),
// block_begin one per block + 1.
using BuildRuns = void (*)(const int32_t* slot, int64_t pixels, int32_t* run_last, int32_t* run_slot,
                           int32_t* block_begin);
constexpr int64_t kRunSlack = 8;  // a vector store past the last run

struct GroupKernels {
  ReduceGroup reduce;
  GatherGroup gather;
  BuildRuns build_runs;
};

// The label pass of every op and dtype.
// slot[p] = labels[p] + 1 for ids in [0, k), else 0; returns whether some id
// is neither in [0, k) nor -1.
using WriteIdSlots = bool (*)(const int64_t* labels, int64_t pixels, int64_t k, int32_t* slot);
struct LabelKernels {
  WriteIdSlots write_id_slots;
};

namespace portable {
LabelKernels label_kernels();
} // namespace portable

namespace avx2 {
GroupKernels group_kernels();
LabelKernels label_kernels();
} // namespace avx2

// The kernels of the active ISA, or nullptr where it has none: the plane-wise
// kernels of superpixel_pool_cpu.cpp serve float64 and such CPUs.
const GroupKernels* group_kernels();
// The label pass of the active ISA (the portable one on any CPU).
const LabelKernels& label_kernels();

} // namespace cpu
} // namespace superpixel
} // namespace ial
