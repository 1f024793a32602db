// Superpixel pooling on the CPU, threaded without atomics.
//
// Every op runs in two passes:
//  1. Index (parallel over images): one sweep over the labels counts the pixels
//     of every id and checks the range; the ids present in image b get dense
//     slots 1..n_b, and every pixel gets an int32 slot (0 for -1 or, with
//     check_ids=false, an out-of-range id). Labels are read twice per image,
//     a few percent of the traffic of x.
//  2. Planes (parallel over (image, channel) planes): each thread owns whole
//     planes, so it owns the outputs they produce and nothing is shared.
//     - reduce (pool forward, unpool backward): the plane of x is streamed
//       once, contiguously, into n_b + 1 double accumulators (slot 0 is the
//       bin of ignored pixels, so the hot loop has no branch). Neighbouring
//       pixels mostly share a segment, which would chain every add through
//       the same memory location; U interleaved accumulator sets break that
//       chain and are summed at the end of the plane.
//     - gather (unpool forward, pool backward): the plane's n_b + 1 values
//       (scaled by 1 / count for pool backward, 0 in slot 0) are put in a
//       table in L1, then the output plane is written contiguously as
//       table[slot[p]].
// Accumulation is in double for float32 too (the sums of large segments keep
// full float32 precision).
#include "../superpixel_pool.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

namespace ial {
namespace superpixel {
namespace {

// Per-image dense numbering of the segment ids present in the image.
struct SegmentIndex {
  std::vector<int32_t> slot;                // (B * H * W): 0 ignored, j + 1 = present segment j
  std::vector<std::vector<int64_t>> ids;    // per image: id of present segment j
  std::vector<std::vector<double>> counts;  // per image: pixel count of present segment j
  bool all_present = true;                  // every image holds every id in [0, K)
  int64_t max_present = 0;
};

SegmentIndex build_index(
    const at::Tensor& labels,
    const PoolGeometry& geo,
    bool check_ids,
    const char* op) {
  const int64_t hw = geo.pixels();
  const int64_t k = geo.segments;
  TORCH_CHECK(
      hw < std::numeric_limits<int32_t>::max(),
      op, ": images of more than 2^31 - 1 pixels are not supported, got ", hw);
  SegmentIndex index;
  index.slot.resize(geo.batch * hw);
  index.ids.resize(geo.batch);
  index.counts.resize(geo.batch);
  std::vector<int64_t> first_bad(geo.batch, -1);
  const int64_t* lab = labels.const_data_ptr<int64_t>();
  const uint64_t range = static_cast<uint64_t>(k);
  at::parallel_for(0, geo.batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<int32_t> map;
    for (int64_t b = begin; b < end; ++b) {
      const int64_t* l = lab + b * hw;
      int32_t* slot = index.slot.data() + b * hw;
      map.assign(k, 0);
      for (int64_t p = 0; p < hw; ++p) {
        const int64_t id = l[p];
        if (static_cast<uint64_t>(id) < range) {
          ++map[id];
        } else if (id != -1 && first_bad[b] < 0) {
          first_bad[b] = p;
        }
      }
      auto& ids = index.ids[b];
      auto& counts = index.counts[b];
      int32_t n = 0;
      for (int64_t s = 0; s < k; ++s) {
        if (map[s] > 0) {
          ids.push_back(s);
          counts.push_back(static_cast<double>(map[s]));
          map[s] = ++n;
        }
      }
      for (int64_t p = 0; p < hw; ++p) {
        const int64_t id = l[p];
        slot[p] = static_cast<uint64_t>(id) < range ? map[id] : 0;
      }
    }
  });
  for (int64_t b = 0; b < geo.batch; ++b) {
    if (check_ids && first_bad[b] >= 0) {
      const int64_t flat = b * hw + first_bad[b];
      report_bad_id(op, geo, flat, lab[flat]);
    }
    const auto n = static_cast<int64_t>(index.ids[b].size());
    index.all_present = index.all_present && n == k;
    index.max_present = std::max(index.max_present, n);
  }
  return index;
}

// Planes handled per task: enough pixels to amortise the scheduling.
int64_t plane_grain(int64_t hw) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, hw));
}

// Sums one plane into acc[0 .. n] (acc[0] collects the ignored pixels), using
// U interleaved accumulator sets of n + 1 entries each.
template <typename T, int U>
void reduce_plane(const T* __restrict__ x, const int32_t* __restrict__ slot, int64_t hw, int64_t n,
                  double* __restrict__ acc) {
  const int64_t stride = n + 1;
  std::fill(acc, acc + U * stride, 0.0);
  int64_t p = 0;
  for (; p + U <= hw; p += U) {
    for (int u = 0; u < U; ++u) {
      acc[u * stride + slot[p + u]] += static_cast<double>(x[p + u]);
    }
  }
  for (; p < hw; ++p) {
    acc[slot[p]] += static_cast<double>(x[p]);
  }
  for (int u = 1; u < U; ++u) {
    const double* __restrict__ other = acc + u * stride;
    for (int64_t j = 1; j <= n; ++j) {
      acc[j] += other[j];
    }
  }
}

// (B, C, H, W) -> (B, K, C): per segment sum, divided by the count when `mean`.
template <typename T>
at::Tensor reduce_kernel(const at::Tensor& x, const SegmentIndex& index, const PoolGeometry& geo, bool mean) {
  // Rows of ids absent from an image are never visited below: start from 0 then.
  at::Tensor out = index.all_present
      ? at::empty({geo.batch, geo.segments, geo.channels}, x.options())
      : at::zeros({geo.batch, geo.segments, geo.channels}, x.options());
  const int64_t hw = geo.pixels();
  const int64_t channels = geo.channels;
  const int64_t k = geo.segments;
  const T* xd = x.const_data_ptr<T>();
  T* od = out.mutable_data_ptr<T>();
  at::parallel_for(0, geo.batch * channels, plane_grain(hw), [&](int64_t begin, int64_t end) {
    std::vector<double> acc;
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t b = plane / channels;
      const int64_t c = plane - b * channels;
      const auto& ids = index.ids[b];
      const auto& counts = index.counts[b];
      const auto n = static_cast<int64_t>(ids.size());
      const int32_t* slot = index.slot.data() + b * hw;
      const T* xp = xd + plane * hw;
      // Four accumulator sets pay off while they are small next to the plane.
      const bool interleave = 4 * (n + 1) <= hw;
      acc.resize((interleave ? 4 : 1) * (n + 1));
      if (interleave) {
        reduce_plane<T, 4>(xp, slot, hw, n, acc.data());
      } else {
        reduce_plane<T, 1>(xp, slot, hw, n, acc.data());
      }
      T* orow = od + b * k * channels + c;
      for (int64_t j = 0; j < n; ++j) {
        const double v = mean ? acc[j + 1] / counts[j] : acc[j + 1];
        orow[ids[j] * channels] = static_cast<T>(v);
      }
    }
  });
  return out;
}

// (B, K, C) -> (B, C, H, W): every pixel takes its segment's row, divided by
// the segment's count when `mean` (the gradient of the mean).
template <typename T>
at::Tensor gather_kernel(const at::Tensor& src, const SegmentIndex& index, const PoolGeometry& geo, bool mean) {
  at::Tensor out = at::empty({geo.batch, geo.channels, geo.height, geo.width}, src.options());
  const int64_t hw = geo.pixels();
  const int64_t channels = geo.channels;
  const int64_t k = geo.segments;
  const T* sd = src.const_data_ptr<T>();
  T* od = out.mutable_data_ptr<T>();
  at::parallel_for(0, geo.batch * channels, plane_grain(hw), [&](int64_t begin, int64_t end) {
    std::vector<T> table;
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t b = plane / channels;
      const int64_t c = plane - b * channels;
      const auto& ids = index.ids[b];
      const auto& counts = index.counts[b];
      const auto n = static_cast<int64_t>(ids.size());
      table.resize(n + 1);
      table[0] = T(0);
      const T* srow = sd + b * k * channels + c;
      for (int64_t j = 0; j < n; ++j) {
        const T v = srow[ids[j] * channels];
        table[j + 1] = mean ? static_cast<T>(static_cast<double>(v) / counts[j]) : v;
      }
      const int32_t* __restrict__ slot = index.slot.data() + b * hw;
      const T* __restrict__ t = table.data();
      T* __restrict__ op = od + plane * hw;
      for (int64_t p = 0; p < hw; ++p) {
        op[p] = t[slot[p]];
      }
    }
  });
  return out;
}

at::Tensor reduce_op(
    const at::Tensor& x,
    const at::Tensor& labels,
    int64_t num_segments,
    bool check_ids,
    bool mean,
    const char* op,
    const char* x_name) {
  const auto geo = check_image_args(x, labels, num_segments, op, x_name);
  TORCH_CHECK(x.device().is_cpu(), op, ": the CPU kernel got a tensor on ", x.device());
  const at::Tensor lc = labels.contiguous();
  const auto index = build_index(lc, geo, check_ids, op);
  const at::Tensor xc = x.contiguous();
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "superpixel_reduce_cpu", [&] {
    out = reduce_kernel<scalar_t>(xc, index, geo, mean);
  });
  return out;
}

at::Tensor gather_op(
    const at::Tensor& src,
    const at::Tensor& labels,
    bool check_ids,
    bool mean,
    const char* op,
    const char* src_name) {
  const auto geo = check_pooled_args(src, labels, op, src_name);
  TORCH_CHECK(src.device().is_cpu(), op, ": the CPU kernel got a tensor on ", src.device());
  const at::Tensor lc = labels.contiguous();
  const auto index = build_index(lc, geo, check_ids, op);
  // src may be an expanded (stride-0) gradient: read a contiguous copy.
  const at::Tensor sc = src.contiguous();
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "superpixel_gather_cpu", [&] {
    out = gather_kernel<scalar_t>(sc, index, geo, mean);
  });
  return out;
}

at::Tensor superpixel_pool_cpu(const at::Tensor& x, const at::Tensor& labels, int64_t num_segments, bool check_ids) {
  return reduce_op(x, labels, num_segments, check_ids, /*mean=*/true, "superpixel_pool", "x");
}

at::Tensor superpixel_pool_backward_cpu(const at::Tensor& grad, const at::Tensor& labels, bool check_ids) {
  return gather_op(grad, labels, check_ids, /*mean=*/true, "superpixel_pool_backward", "grad");
}

at::Tensor superpixel_unpool_cpu(const at::Tensor& pooled, const at::Tensor& labels, bool check_ids) {
  return gather_op(pooled, labels, check_ids, /*mean=*/false, "superpixel_unpool", "pooled");
}

at::Tensor superpixel_unpool_backward_cpu(
    const at::Tensor& grad, const at::Tensor& labels, int64_t num_segments, bool check_ids) {
  return reduce_op(grad, labels, num_segments, check_ids, /*mean=*/false, "superpixel_unpool_backward", "grad");
}

} // namespace

TORCH_LIBRARY_IMPL(ial, CPU, m) {
  m.impl("superpixel_pool", &superpixel_pool_cpu);
  m.impl("superpixel_pool_backward", &superpixel_pool_backward_cpu);
  m.impl("superpixel_unpool", &superpixel_unpool_cpu);
  m.impl("superpixel_unpool_backward", &superpixel_unpool_backward_cpu);
}

} // namespace superpixel
} // namespace ial
