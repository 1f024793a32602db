// Superpixel pooling on the CPU, threaded without atomics.
//
// Every op runs in two passes:
//  1. Index (parallel over images): one branch-free sweep over the labels writes
//     every pixel's int32 slot as id + 1 (0 for -1 or, with check_ids=false, an
//     out-of-range id) and checks the range; a histogram of the slots counts the
//     pixels of every id. The ids present in image b get dense slots 1..n_b:
//     where they are 0..n_b-1 the slots are already those, otherwise one more
//     sweep renumbers them.
//  2. Data, each thread owning whole outputs so nothing is shared:
//     - float32 with AVX2 (pool_kernels_avx2.cpp): tasks are (image, group of 8
//       channels); 8x8 transposes put the 8 channels of a pixel in one vector,
//       so a segment's row of the (B, K, C) side is touched once per pixel for
//       8 channels. reduce (pool forward, unpool backward) sums runs of equal
//       slots (cut every 64 pixels) as differences of a float prefix sum and
//       adds each run to its segment in double; gather (unpool forward, pool
//       backward) loads the pixel's table row and stores 8 channel rows, with
//       streaming stores when the output is far larger than the caches.
//     - otherwise (float64, or no AVX2) tasks are (image, channel) planes:
//       reduce streams the plane into n_b + 1 double accumulators (slot 0 is
//       the bin of ignored pixels; U interleaved accumulator sets break the
//       chain of adds into one segment); gather writes table[slot[p]] with the
//       plane's n_b + 1 values in L1.
// Accumulation into a segment is in double for float32 too (the sums of large
// segments keep full float32 precision; the AVX2 path sums at most 64 pixels
// in float first).
#include "../superpixel_pool.h"
#include "../../common/output_memory.h"
#include "pool_kernels_api.h"
#include "../../common/cpu_features.h"
#include "../../common/reduced_precision.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

namespace ial {
namespace superpixel {
namespace {

// Per-image dense numbering of the segment ids present in the image.
struct SegmentIndex {
  std::unique_ptr<int32_t[]> slot;          // (B * H * W): 0 ignored, j + 1 = present segment j
  std::vector<std::vector<int64_t>> ids;    // per image: id of present segment j
  std::vector<std::vector<double>> counts;  // per image: pixel count of present segment j
  bool all_present = true;                  // every image holds every id in [0, K)
  int64_t max_present = 0;
};

// counts[s] = pixels of slot s, s in [0, slots). U interleaved histograms keep
// the pixels of one segment, which come in runs, from chaining through memory.
template <int U>
void count_slots(const int32_t* __restrict__ slot, int64_t hw, int64_t slots, std::vector<int32_t>& counts) {
  counts.assign(U * slots, 0);
  int32_t* __restrict__ c = counts.data();
  int64_t p = 0;
  for (; p + U <= hw; p += U) {
    for (int u = 0; u < U; ++u) {
      ++c[u * slots + slot[p + u]];
    }
  }
  for (; p < hw; ++p) {
    ++c[slot[p]];
  }
  for (int u = 1; u < U; ++u) {
    for (int64_t s = 0; s < slots; ++s) {
      c[s] += c[u * slots + s];
    }
  }
}

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
  index.slot.reset(new int32_t[geo.batch * hw]);
  index.ids.resize(geo.batch);
  index.counts.resize(geo.batch);
  std::vector<int64_t> first_bad(geo.batch, -1);
  const int64_t* lab = labels.const_data_ptr<int64_t>();
  const auto& kernels = cpu::label_kernels();
  at::parallel_for(0, geo.batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<int32_t> counts;
    for (int64_t b = begin; b < end; ++b) {
      const int64_t* l = lab + b * hw;
      int32_t* slot = index.slot.get() + b * hw;
      if (kernels.write_id_slots(l, hw, k, slot) && check_ids) {
        const uint64_t range = static_cast<uint64_t>(k);
        for (int64_t p = 0; p < hw && first_bad[b] < 0; ++p) {
          if (static_cast<uint64_t>(l[p]) >= range && l[p] != -1) {
            first_bad[b] = p;
          }
        }
      }
      // Four histograms pay off while they are small next to the image.
      if (4 * (k + 1) <= hw) {
        count_slots<4>(slot, hw, k + 1, counts);
      } else {
        count_slots<1>(slot, hw, k + 1, counts);
      }
      // Present ids get dense slots 1..n; where they are 0..n-1 (superpixels
      // as scikit-image numbers them), the slots written above already are.
      auto& ids = index.ids[b];
      auto& present_counts = index.counts[b];
      int32_t n = 0;
      bool dense = true;
      for (int64_t id = 0; id < k; ++id) {
        const int32_t count = counts[id + 1];
        if (count > 0) {
          dense = dense && id == n;
          ids.push_back(id);
          present_counts.push_back(static_cast<double>(count));
          counts[id + 1] = ++n;
        }
      }
      if (!dense) {
        counts[0] = 0;
        for (int64_t p = 0; p < hw; ++p) {
          slot[p] = counts[slot[p]];
        }
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

// Runs of equal slots of one image for the AVX2 reduce (see cpu::RunView).
struct ImageRuns {
  std::unique_ptr<int32_t[]> run_last;
  std::unique_ptr<int32_t[]> run_slot;
  std::vector<int32_t> block_begin;

  cpu::RunView view(int64_t pixels) const {
    cpu::RunView v;
    v.pixels = pixels;
    v.run_last = run_last.get();
    v.run_slot = run_slot.get();
    v.block_begin = block_begin.data();
    return v;
  }
};

// The runs of one image's slots (see cpu::RunView).
void build_runs(const cpu::GroupKernels& kernels, const int32_t* slot, int64_t hw, ImageRuns& runs) {
  const int64_t padded = (hw + 7) & ~int64_t(7);
  runs.run_last.reset(new int32_t[padded + cpu::kRunSlack]);
  runs.run_slot.reset(new int32_t[padded + cpu::kRunSlack]);
  runs.block_begin.resize((padded + cpu::kBlock - 1) / cpu::kBlock + 1);
  kernels.build_runs(slot, hw, runs.run_last.get(), runs.run_slot.get(), runs.block_begin.data());
}

// 1 / count of every present segment, per image (a multiply per value
// instead of a division).
std::vector<std::vector<double>> inverse_counts(const SegmentIndex& index) {
  std::vector<std::vector<double>> inverse(index.counts.size());
  for (size_t b = 0; b < inverse.size(); ++b) {
    inverse[b].reserve(index.counts[b].size());
    for (const double count : index.counts[b]) {
      inverse[b].push_back(1.0 / count);
    }
  }
  return inverse;
}

// Where plane (b, c) of a (B, C, H, W) input starts: any batch and channel
// strides (an expanded gradient has 0), rows contiguous.
template <typename T>
struct Planes {
  const T* data;
  int64_t batch_stride;
  int64_t channel_stride;

  const T* operator()(int64_t b, int64_t c) const { return data + b * batch_stride + c * channel_stride; }
};

template <typename T>
Planes<T> planes_of(const at::Tensor& x) {
  return {x.const_data_ptr<T>(), x.stride(0), x.stride(1)};
}

// Float32 reduce with the channel-group kernels: tasks are (image, group of 8 channels).
void reduce_kernel_groups(const cpu::GroupKernels& kernels, const at::Tensor& x, const SegmentIndex& index,
                          const PoolGeometry& geo, bool mean, at::Tensor& out) {
  const int64_t hw = geo.pixels();
  const int64_t channels = geo.channels;
  const int64_t k = geo.segments;
  const int64_t groups = (channels + cpu::kLanes - 1) / cpu::kLanes;
  const auto inverse = inverse_counts(index);
  std::vector<ImageRuns> runs(geo.batch);
  at::parallel_for(0, geo.batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      build_runs(kernels, index.slot.get() + b * hw, hw, runs[b]);
    }
  });
  const auto plane = planes_of<float>(x);
  float* od = out.mutable_data_ptr<float>();
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, hw));
  at::parallel_for(0, geo.batch * groups, grain, [&](int64_t begin, int64_t end) {
    std::vector<double> acc;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / groups;
      const int64_t c0 = (task - b * groups) * cpu::kLanes;
      const int valid = static_cast<int>(std::min<int64_t>(cpu::kLanes, channels - c0));
      const float* rows[cpu::kLanes];
      for (int i = 0; i < cpu::kLanes; ++i) {
        // A partial group repeats its last plane; those lanes are not written.
        rows[i] = plane(b, c0 + std::min(i, valid - 1));
      }
      const auto& ids = index.ids[b];
      const auto n = static_cast<int64_t>(ids.size());
      acc.assign((n + 1) * cpu::kLanes, 0.0);
      kernels.reduce(rows, runs[b].view(hw), acc.data());
      for (int64_t j = 0; j < n; ++j) {
        const double scale = mean ? inverse[b][j] : 1.0;
        const double* a = acc.data() + (j + 1) * cpu::kLanes;
        float* o = od + (b * k + ids[j]) * channels + c0;
        for (int i = 0; i < valid; ++i) {
          o[i] = static_cast<float>(a[i] * scale);
        }
      }
    }
  });
}

// Float32 gather with the channel-group kernels: tasks are (image, group of 8 channels, pixel chunk).
void gather_kernel_groups(const cpu::GroupKernels& kernels, const at::Tensor& src, const SegmentIndex& index,
                          const PoolGeometry& geo, bool mean, at::Tensor& out) {
  const int64_t hw = geo.pixels();
  const int64_t channels = geo.channels;
  const int64_t k = geo.segments;
  const int64_t groups = (channels + cpu::kLanes - 1) / cpu::kLanes;
  constexpr int64_t kChunk = 16384;  // pixels per task (a multiple of 8)
  const auto inverse = inverse_counts(index);
  const int64_t chunks = (hw + kChunk - 1) / kChunk;
  const float* sd = src.const_data_ptr<float>();
  float* od = out.mutable_data_ptr<float>();
  // Tables of every (image, channel group), (n + 1) x 8 floats each, row 0 =
  // the ignored pixels' zeros, built in one pass that reads every row of src
  // contiguously (a per-task build would read 32 bytes per 1 KB-strided row,
  // a cache miss each once src has left the cache).
  const int64_t rows_per_table = index.max_present + 1;
  const int64_t table_size = rows_per_table * cpu::kLanes;
  std::unique_ptr<float[]> tables(new float[geo.batch * groups * table_size]);
  at::parallel_for(0, geo.batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const auto& ids = index.ids[b];
      const auto n = static_cast<int64_t>(ids.size());
      float* image_tables = tables.get() + b * groups * table_size;
      for (int64_t g = 0; g < groups; ++g) {
        std::fill(image_tables + g * table_size, image_tables + g * table_size + cpu::kLanes, 0.0f);
      }
      for (int64_t j = 0; j < n; ++j) {
        const float* s = sd + (b * k + ids[j]) * channels;
        const double scale = mean ? inverse[b][j] : 1.0;
        for (int64_t g = 0; g < groups; ++g) {
          float* t = image_tables + g * table_size + (j + 1) * cpu::kLanes;
          const int64_t c0 = g * cpu::kLanes;
          const int valid = static_cast<int>(std::min<int64_t>(cpu::kLanes, channels - c0));
          for (int i = 0; i < cpu::kLanes; ++i) {
            t[i] = i < valid ? static_cast<float>(static_cast<double>(s[c0 + i]) * scale) : 0.0f;
          }
        }
      }
    }
  });
  const bool stream = ial::cpu::streams_output(out.nbytes());
  at::parallel_for(0, geo.batch * groups * chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t chunk = task % chunks;
      const int64_t b = task / (groups * chunks);
      const int64_t g = task / chunks - b * groups;
      const int64_t c0 = g * cpu::kLanes;
      const int valid = static_cast<int>(std::min<int64_t>(cpu::kLanes, channels - c0));
      float* rows[cpu::kLanes];
      for (int i = 0; i < cpu::kLanes; ++i) {
        rows[i] = od + (b * channels + c0 + std::min(i, valid - 1)) * hw;
      }
      const int64_t p0 = chunk * kChunk;
      kernels.gather(
          tables.get() + (b * groups + g) * table_size, index.slot.get() + b * hw, p0,
          std::min(hw, p0 + kChunk), rows, valid, stream);
    }
  });
}

// (B, C, H, W) -> (B, K, C): per segment sum, divided by the count when `mean`.
template <typename T>
at::Tensor reduce_kernel(const at::Tensor& x, const SegmentIndex& index, const PoolGeometry& geo, bool mean) {
  // Rows of ids absent from an image are never visited below: start from 0 then.
  at::Tensor out = index.all_present
      ? at::empty({geo.batch, geo.segments, geo.channels}, x.options())
      : at::zeros({geo.batch, geo.segments, geo.channels}, x.options());
  if constexpr (std::is_same_v<T, float>) {
    const auto* kernels = cpu::group_kernels();
    if (geo.channels > 0 && kernels != nullptr) {
      reduce_kernel_groups(*kernels, x, index, geo, mean, out);
      return out;
    }
  }
  const int64_t hw = geo.pixels();
  const int64_t channels = geo.channels;
  const int64_t k = geo.segments;
  const auto plane_at = planes_of<T>(x);
  T* od = out.mutable_data_ptr<T>();
  at::parallel_for(0, geo.batch * channels, plane_grain(hw), [&](int64_t begin, int64_t end) {
    std::vector<double> acc;
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t b = plane / channels;
      const int64_t c = plane - b * channels;
      const auto& ids = index.ids[b];
      const auto& counts = index.counts[b];
      const auto n = static_cast<int64_t>(ids.size());
      const int32_t* slot = index.slot.get() + b * hw;
      const T* xp = plane_at(b, c);
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
  at::Tensor out = common::empty_output({geo.batch, geo.channels, geo.height, geo.width}, src.options());
  if constexpr (std::is_same_v<T, float>) {
    const auto* kernels = cpu::group_kernels();
    if (geo.channels > 0 && geo.pixels() > 0 && kernels != nullptr) {
      gather_kernel_groups(*kernels, src, index, geo, mean, out);
      return out;
    }
  }
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
      const int32_t* __restrict__ slot = index.slot.get() + b * hw;
      const T* __restrict__ t = table.data();
      T* __restrict__ op = od + plane * hw;
      for (int64_t p = 0; p < hw; ++p) {
        op[p] = t[slot[p]];
      }
    }
  });
  return out;
}

// (B, C, H, W) whose every plane is one value (an expanded gradient, e.g. of a
// .sum()): the mean of a segment is that value, the sum value x count.
template <typename T>
at::Tensor reduce_constant_planes(const at::Tensor& x, const SegmentIndex& index, const PoolGeometry& geo, bool mean) {
  at::Tensor out = at::zeros({geo.batch, geo.segments, geo.channels}, x.options());
  const auto plane = planes_of<T>(x);
  T* od = out.mutable_data_ptr<T>();
  at::parallel_for(0, geo.batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const auto& ids = index.ids[b];
      for (size_t j = 0; j < ids.size(); ++j) {
        T* row = od + (b * geo.segments + ids[j]) * geo.channels;
        for (int64_t c = 0; c < geo.channels; ++c) {
          const T v = *plane(b, c);
          row[c] = mean ? v : static_cast<T>(static_cast<double>(v) * index.counts[b][j]);
        }
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
  if (common::is_reduced_precision(x)) {
    // float16 / bfloat16 through the float32 kernels: sums in float32 and double.
    return reduce_op(x.to(at::kFloat), labels, num_segments, check_ids, mean, op, x_name).to(x.scalar_type());
  }
  const at::Tensor lc = labels.contiguous();
  const auto index = build_index(lc, geo, check_ids, op);
  // Planes are read through the batch and channel strides, so an expanded
  // gradient is never copied out to full size.
  const bool rows_contiguous =
      (x.size(3) <= 1 || x.stride(3) == 1) && (x.size(2) <= 1 || x.stride(2) == x.size(3));
  const bool constant_planes = (x.size(3) <= 1 || x.stride(3) == 0) && (x.size(2) <= 1 || x.stride(2) == 0);
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "superpixel_reduce_cpu", [&] {
    if (rows_contiguous) {
      out = reduce_kernel<scalar_t>(x, index, geo, mean);
    } else if (constant_planes) {
      out = reduce_constant_planes<scalar_t>(x, index, geo, mean);
    } else {
      out = reduce_kernel<scalar_t>(x.contiguous(), index, geo, mean);
    }
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
  if (common::is_reduced_precision(src)) {
    return gather_op(src.to(at::kFloat), labels, check_ids, mean, op, src_name).to(src.scalar_type());
  }
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
