// AVX2 kernels of the CPU superpixel ops (see pool_kernels_api.h): the float32
// channel-group kernels, their run index, and the label pass.
//
// The whole unit below the includes is an AVX2 region (common/isa_avx2_begin.h);
// it includes no torch header, so no inline function shared with the rest of
// the library is ever compiled for AVX2.
#include "pool_kernels_api.h"

#include <cstdint>
#include <cstdlib>

#if defined(__x86_64__) && defined(__GNUC__)
#include "../../common/avx2_stream.h"
#include "../../common/avx2_transpose.h"
#include "../../common/isa_avx2_begin.h"

namespace ial {
namespace superpixel {
namespace cpu {
namespace avx2 {
namespace {

// Loads pixels [p, p + 8) of the 8 rows; past `pixels` the values are 0.
inline void load_tile(const float* const rows[8], int64_t p, int64_t pixels, __m256 r[8]) {
  if (p + 8 <= pixels) {
    for (int i = 0; i < 8; ++i) {
      r[i] = _mm256_loadu_ps(rows[i] + p);
    }
    return;
  }
  alignas(32) float tail[8];
  const int64_t have = pixels - p;
  for (int i = 0; i < 8; ++i) {
    for (int j = 0; j < 8; ++j) {
      tail[j] = j < have ? rows[i][p + j] : 0.0f;
    }
    r[i] = _mm256_load_ps(tail);
  }
}

// Per block of 64 pixels, a float prefix sum P over the block's pixels is
// stored after every pixel, in pixel order, and a run's sum is P at its last
// pixel minus P at the last pixel of the run before it. Within a tile of 8
// pixels the prefix is built from the tile's own values; only the carry (P
// before the tile, one add per tile) links tiles, so the dependency chain is
// one add per 8 pixels instead of one per pixel. The block's run sums are then
// added, in double, to their segments' accumulators.
void reduce_group(const float* const rows[kLanes], const RunView& runs, double* acc) {
  alignas(32) float prefix[(kBlock + 1) * kLanes];
  float* const prefix_at = prefix + kLanes;  // prefix_at[8 i] = P after pixel i of the block; [-8] = 0
  _mm256_store_ps(prefix, _mm256_setzero_ps());
  const int64_t padded = (runs.pixels + 7) & ~int64_t(7);
  const int64_t blocks = (padded + kBlock - 1) / kBlock;
  for (int64_t block = 0; block < blocks; ++block) {
    const int64_t begin = block * kBlock;
    const int64_t end = begin + kBlock < padded ? begin + kBlock : padded;
    __m256 carry = _mm256_setzero_ps();
    for (int64_t p = begin; p < end; p += 8) {
      __m256 r[8];
      load_tile(rows, p, runs.pixels, r);
      simd::transpose8x8(r);  // rows = channels <-> rows = pixels
      for (int i = 1; i < 8; ++i) {
        r[i] = _mm256_add_ps(r[i], r[i - 1]);
      }
      float* const tile_prefix = prefix_at + (p - begin) * kLanes;
      for (int i = 0; i < 8; ++i) {
        _mm256_store_ps(tile_prefix + i * kLanes, _mm256_add_ps(carry, r[i]));
      }
      carry = _mm256_add_ps(carry, r[7]);
    }
    const int32_t first = runs.block_begin[block];
    const int32_t count = runs.block_begin[block + 1] - first;
    int32_t before = -kLanes;
    for (int32_t k = 0; k < count; ++k) {
      double* a = acc + static_cast<int64_t>(runs.run_slot[first + k]) * kLanes;
      const int32_t last = runs.run_last[first + k];
      const __m256 s = _mm256_sub_ps(_mm256_load_ps(prefix_at + last), _mm256_load_ps(prefix_at + before));
      before = last;
      const __m256d lo = _mm256_add_pd(_mm256_loadu_pd(a), _mm256_cvtps_pd(_mm256_castps256_ps128(s)));
      const __m256d hi = _mm256_add_pd(_mm256_loadu_pd(a + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(s, 1)));
      _mm256_storeu_pd(a, lo);
      _mm256_storeu_pd(a + 4, hi);
    }
  }
}

// The 8 channel rows of pixels [p, p + 8) (p + 8 <= end), as r[0..7].
inline void gather_tile(const float* table, const int32_t* slot, int64_t p, __m256 r[8]) {
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm256_loadu_ps(table + static_cast<int64_t>(slot[p + i]) * kLanes);
  }
  simd::transpose8x8(r);  // rows = channels <-> rows = pixels
}

// The same for the last, partial tile: pixels [p, end), the rest from row 0.
inline void gather_partial_tile(const float* table, const int32_t* slot, int64_t p, int64_t end, __m256 r[8]) {
  for (int i = 0; i < 8; ++i) {
    const int32_t s = p + i < end ? slot[p + i] : 0;
    r[i] = _mm256_loadu_ps(table + static_cast<int64_t>(s) * kLanes);
  }
  simd::transpose8x8(r);
}

// Regular stores, straight into the channel rows.
void gather_into_rows(const float* table, const int32_t* slot, int64_t begin, int64_t end,
                      float* const out_rows[kLanes], int valid) {
  int64_t p = begin;
  for (; p + 8 <= end; p += 8) {
    __m256 r[8];
    gather_tile(table, slot, p, r);
    for (int i = 0; i < valid; ++i) {
      _mm256_storeu_ps(out_rows[i] + p, r[i]);
    }
  }
  if (p < end) {
    __m256 r[8];
    gather_partial_tile(table, slot, p, end, r);
    alignas(32) float tile[8];
    for (int i = 0; i < valid; ++i) {
      _mm256_store_ps(tile, r[i]);
      for (int64_t j = 0; j < end - p; ++j) {
        out_rows[i][p + j] = tile[j];
      }
    }
  }
}

// Non-temporal stores (common/avx2_stream.h): the channel rows of one pixel
// are aligned differently (an H * W plane is rarely a multiple of 8 floats), so
// the tiles go to a small staging buffer first and each row is streamed from
// it at its own alignment.
constexpr int64_t kStagePixels = 256;  // per row and segment, a multiple of 8

void gather_streaming(const float* table, const int32_t* slot, int64_t begin, int64_t end,
                      float* const out_rows[kLanes], int valid) {
  alignas(32) float stage[kLanes][kStagePixels];
  for (int64_t p0 = begin; p0 < end; p0 += kStagePixels) {
    const int64_t p1 = p0 + kStagePixels < end ? p0 + kStagePixels : end;
    for (int64_t p = p0; p < p1; p += 8) {
      __m256 r[8];
      if (p + 8 <= p1) {
        gather_tile(table, slot, p, r);
      } else {
        gather_partial_tile(table, slot, p, p1, r);
      }
      for (int i = 0; i < valid; ++i) {
        _mm256_store_ps(stage[i] + (p - p0), r[i]);
      }
    }
    for (int i = 0; i < valid; ++i) {
      simd::stream_floats(out_rows[i] + p0, stage[i], p1 - p0);
    }
  }
  _mm_sfence();
}

void gather_group(
    const float* table,
    const int32_t* slot,
    int64_t begin,
    int64_t end,
    float* const out_rows[kLanes],
    int valid,
    bool stream) {
  if (stream) {
    gather_streaming(table, slot, begin, end, out_rows, valid);
  } else {
    gather_into_rows(table, slot, begin, end, out_rows, valid);
  }
}

// Four ids per vector, two vectors per store of 8 slots.
bool write_id_slots(const int64_t* labels, int64_t pixels, int64_t k, int32_t* slot) {
  const __m256i limit = _mm256_set1_epi64x(k);
  const __m256i ignored = _mm256_set1_epi64x(-1);
  const __m256i one = _mm256_set1_epi64x(1);
  const __m256i low_halves = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
  __m256i good = _mm256_set1_epi64x(-1);  // in range or -1, per lane
  int64_t p = 0;
  for (; p + 8 <= pixels; p += 8) {
    __m128i packed[2];
    for (int half = 0; half < 2; ++half) {
      const __m256i id = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(labels + p + 4 * half));
      const __m256i valid = _mm256_and_si256(_mm256_cmpgt_epi64(limit, id), _mm256_cmpgt_epi64(id, ignored));
      good = _mm256_and_si256(good, _mm256_or_si256(valid, _mm256_cmpeq_epi64(id, ignored)));
      const __m256i s = _mm256_and_si256(valid, _mm256_add_epi64(id, one));
      packed[half] = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(s, low_halves));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(slot + p), _mm256_set_m128i(packed[1], packed[0]));
  }
  bool bad = _mm256_movemask_epi8(good) != -1;
  for (; p < pixels; ++p) {
    const int64_t id = labels[p];
    const bool valid = id >= 0 && id < k;
    slot[p] = valid ? static_cast<int32_t>(id + 1) : 0;
    bad = bad || (!valid && id != -1);
  }
  return bad;
}

// Per 8-bit mask of the lanes that start a run: how many runs start, and the
// starting lanes in order.
struct RunTables {
  int32_t starts[256];
  alignas(8) uint8_t starting_lanes[256][8];

  constexpr RunTables() : starts(), starting_lanes() {
    for (int m = 0; m < 256; ++m) {
      int n = 0;
      for (int i = 0; i < 8; ++i) {
        if ((m >> i) & 1) {
          starting_lanes[m][n++] = static_cast<uint8_t>(i);
        }
      }
      starts[m] = n;
    }
  }
};
constexpr RunTables kRunTables;

// The runs of one image's slots (RunView), 8 pixels at a time: where a lane's
// slot differs from the one before it, a run starts, and the starting lanes'
// slots (and, for the runs they end, the pixel before them) are packed into
// the run arrays with one permute each.
void build_runs(const int32_t* slot, int64_t pixels, int32_t* run_last, int32_t* run_slot, int32_t* block_begin) {
  static_assert(kLanes == 8, "positions are kept times 8");
  const int64_t padded = (pixels + 7) & ~int64_t(7);
  const int64_t blocks = (padded + kBlock - 1) / kBlock;
  const __m256i shift_up = _mm256_setr_epi32(0, 0, 1, 2, 3, 4, 5, 6);
  const __m256i lane0 = _mm256_setzero_si256();
  const __m256i lane7 = _mm256_set1_epi32(7);
  const __m256i lanes_before = _mm256_setr_epi32(-1, 0, 1, 2, 3, 4, 5, 6);  // each lane's previous pixel
  int32_t total = 0;
  for (int64_t block = 0; block < blocks; ++block) {
    const int64_t begin = block * kBlock;
    const int64_t end = begin + kBlock < padded ? begin + kBlock : padded;
    block_begin[block] = total;
    int32_t* const block_slots = run_slot + total;
    int32_t* const block_last = run_last + total;
    block_slots[0] = slot[begin];
    int32_t run = 0;
    __m256i before = _mm256_setzero_si256();  // every lane: the slot of the pixel before the tile
    for (int64_t p = begin; p < end; p += 8) {
      __m256i s;
      if (p + 8 <= pixels) {
        s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(slot + p));
      } else {  // padding goes to the ignored bin
        alignas(32) int32_t tail[8];
        for (int64_t j = 0; j < 8; ++j) {
          tail[j] = p + j < pixels ? slot[p + j] : 0;
        }
        s = _mm256_load_si256(reinterpret_cast<const __m256i*>(tail));
      }
      if (p == begin) {
        before = _mm256_permutevar8x32_epi32(s, lane0);
      }
      const __m256i previous = _mm256_blend_epi32(_mm256_permutevar8x32_epi32(s, shift_up), before, 1);
      const int starts =
          ~_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(s, previous))) & 0xFF;
      const __m256i lanes = _mm256_cvtepu8_epi32(
          _mm_loadl_epi64(reinterpret_cast<const __m128i*>(kRunTables.starting_lanes[starts])));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(block_slots + run + 1), _mm256_permutevar8x32_epi32(s, lanes));
      const __m256i ends = _mm256_slli_epi32(
          _mm256_add_epi32(_mm256_set1_epi32(static_cast<int32_t>(p - begin)), lanes_before), 3);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(block_last + run), _mm256_permutevar8x32_epi32(ends, lanes));
      run += kRunTables.starts[starts];
      before = _mm256_permutevar8x32_epi32(s, lane7);
    }
    block_last[run] = static_cast<int32_t>(end - 1 - begin) * kLanes;
    total += run + 1;
  }
  block_begin[blocks] = total;
}

} // namespace

GroupKernels group_kernels() {
  return {&reduce_group, &gather_group, &build_runs};
}

LabelKernels label_kernels() {
  return {&write_id_slots};
}

} // namespace avx2
} // namespace cpu
} // namespace superpixel
} // namespace ial

#include "../../common/isa_end.h"

#else  // no x86 SIMD build: cpu_features never selects this table

namespace ial::superpixel::cpu::avx2 {
GroupKernels group_kernels() {
  return {nullptr, nullptr, nullptr};
}
LabelKernels label_kernels() {
  return {nullptr};
}
} // namespace ial::superpixel::cpu::avx2

#endif
