// Superpixel pooling on CUDA.
//
// Thread layout shared by every kernel: a block covers a tile of 256
// consecutive pixels of one image (one pixel per thread) and, for the
// per-channel kernels, a chunk of up to 32 channels (grid.y); threads of a
// warp read and write 32 consecutive pixels of one channel plane, coalesced.
//
// Sums without atomic contention on large segments (pool forward, unpool
// backward): superpixels are spatially compact, so consecutive pixels of a
// row mostly share an id. Each warp cuts its 32 pixels into runs of equal ids
// (one ballot) and sums every run with a segmented warp scan (5 shuffles, no
// shared memory, no sort); only the last lane of a run issues one atomicAdd
// per channel into the output. A segment covering the image costs one atomic
// per (warp, channel) instead of one per (pixel, channel): at most
// H*W/32 adds per output element however large the segment, and random ids
// (no runs) spread their atomics over K*C addresses instead.
//
// Means in one launch (pool forward): blocks also add their run lengths to
// per-(image, channel chunk) counts; the last block to finish a (image,
// chunk) group (a ticket counter, after __threadfence) divides that group's
// K x 32 sums by the counts. Outputs and workspace are cleared with
// cudaMemsetAsync, not kernels.
//
// Gathers (unpool forward, pool backward) write every output element once,
// coalesced, reading the (B, K, C) rows through the read-only cache (runs of
// equal ids read the same address). Pool backward needs the pixel counts of
// every segment before any pixel can be written, so it is the one op with two
// launches: a count kernel (the same warp runs) then the gather.
//
// Id check: every kernel that reads labels treats an id outside [-1, K) as -1
// (never an index) and, when check_ids is set, records the flat position of
// the first such pixel with atomicMax(total - position) in a device flag. The
// host reads the flag after the launch: this costs one device-to-host
// synchronisation per op, which check_ids=false skips (and which CUDA graph
// capture needs skipped). The autograd backward ops always skip it: their
// forward op has already checked the same labels.
#include "../superpixel_pool.h"
#include "../../common/reduced_precision.h"

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>

namespace ial {
namespace superpixel {
namespace {

constexpr int kThreads = 256;  // pixels per tile, one per thread
constexpr int kChunk = 32;     // channels per block
constexpr unsigned kFullMask = 0xffffffffu;

struct Layout {
  int64_t channels;
  int64_t pixels;
  int64_t segments;
  int64_t tiles;   // tiles per image
  int64_t total;   // pixels of the whole batch
};

// Id of pixel p of image b, or -1 outside the image or for an invalid id
// (recorded in `bad` when given).
__device__ __forceinline__ int64_t load_id(
    const int64_t* __restrict__ labels,
    int64_t flat,
    bool in_image,
    const Layout& l,
    unsigned long long* bad) {
  if (!in_image) {
    return -1;
  }
  const int64_t id = labels[flat];
  if (id < -1 || id >= l.segments) {
    if (bad != nullptr) {
      // The largest total - flat marks the first bad pixel in memory order.
      atomicMax(bad, static_cast<unsigned long long>(l.total - flat));
    }
    return -1;
  }
  return id;
}

// Runs of equal ids inside the warp: the lane where this lane's run starts,
// and whether this lane ends its run. Every lane of the warp must call it.
struct WarpRun {
  int start;
  bool tail;
};

__device__ __forceinline__ WarpRun warp_run(int64_t id) {
  const int lane = threadIdx.x & 31;
  const long long prev = __shfl_up_sync(kFullMask, static_cast<long long>(id), 1);
  const bool head = lane == 0 || prev != static_cast<long long>(id);
  const unsigned heads = __ballot_sync(kFullMask, head);
  const unsigned upto = lane == 31 ? heads : heads & ((2u << lane) - 1u);
  WarpRun run;
  run.start = 31 - __clz(upto);  // lane 0 is always a head, so upto != 0
  run.tail = lane == 31 || ((heads >> (lane + 1)) & 1u) != 0;
  return run;
}

// Inclusive segmented scan: on the tail lane of a run, the sum of the run.
template <typename T>
__device__ __forceinline__ T run_sum(T v, int start) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const T other = __shfl_up_sync(kFullMask, v, d);
    if (lane - d >= start) {
      v += other;
    }
  }
  return v;
}

// Sums (kMean: means) of x (B, C, H, W) per segment into out (B, K, C), which
// starts at 0. counts: (B, chunks, K) and done: (B, chunks), zeroed, for kMean.
template <typename scalar_t, bool kMean>
__global__ void __launch_bounds__(kThreads) reduce_kernel(
    const scalar_t* __restrict__ x,
    const int64_t* __restrict__ labels,
    scalar_t* __restrict__ out,
    int* __restrict__ counts,
    unsigned* __restrict__ done,
    unsigned long long* bad,
    Layout l) {
  const int64_t b = blockIdx.x / l.tiles;
  const int64_t tile = blockIdx.x - b * l.tiles;
  const int64_t p = tile * kThreads + threadIdx.x;
  const bool in_image = p < l.pixels;
  const int64_t id = load_id(labels, b * l.pixels + p, in_image, l, bad);
  const WarpRun run = warp_run(id);
  const bool flush = run.tail && id >= 0;
  const int64_t c0 = static_cast<int64_t>(blockIdx.y) * kChunk;
  const int chunk = static_cast<int>(l.channels - c0 < kChunk ? l.channels - c0 : kChunk);
  const scalar_t* xp = x + (b * l.channels + c0) * l.pixels + p;
  scalar_t* orow = out + (b * l.segments + (id >= 0 ? id : 0)) * l.channels + c0;
  for (int c = 0; c < chunk; ++c) {
    scalar_t v = in_image ? xp[c * l.pixels] : scalar_t(0);
    v = run_sum(v, run.start);
    if (flush) {
      atomicAdd(orow + c, v);
    }
  }
  if (!kMean) {
    return;
  }
  const int64_t group = b * gridDim.y + blockIdx.y;
  int* group_counts = counts + group * l.segments;
  if (flush) {
    atomicAdd(group_counts + id, (threadIdx.x & 31) - run.start + 1);
  }
  // Last block of the (image, chunk) group: every other block's atomics are
  // visible once its ticket is taken (threadfence-reduction pattern).
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    last = atomicAdd(done + group, 1u) == static_cast<unsigned>(l.tiles - 1);
  }
  __syncthreads();
  if (!last) {
    return;
  }
  __threadfence();
  const int64_t elements = l.segments * chunk;
  for (int64_t e = threadIdx.x; e < elements; e += kThreads) {
    const int64_t k = e / chunk;
    const int64_t c = e - k * chunk;
    const int n = __ldcg(group_counts + k);
    if (n > 0) {
      scalar_t* o = out + (b * l.segments + k) * l.channels + c0 + c;
      *o = __ldcg(o) / static_cast<scalar_t>(n);
    }
  }
}

// Pixel counts per segment into counts (B, K) (zeroed), or only the id check
// when counts is null.
__global__ void __launch_bounds__(kThreads) count_kernel(
    const int64_t* __restrict__ labels,
    int* __restrict__ counts,
    unsigned long long* bad,
    Layout l) {
  const int64_t b = blockIdx.x / l.tiles;
  const int64_t tile = blockIdx.x - b * l.tiles;
  const int64_t p = tile * kThreads + threadIdx.x;
  const int64_t id = load_id(labels, b * l.pixels + p, p < l.pixels, l, bad);
  if (counts == nullptr) {
    return;
  }
  const WarpRun run = warp_run(id);
  if (run.tail && id >= 0) {
    atomicAdd(counts + b * l.segments + id, (threadIdx.x & 31) - run.start + 1);
  }
}

// out (B, C, H, W) = src (B, K, C) row of each pixel's id (kMean: divided by
// the segment's count), 0 where the id is -1.
template <typename scalar_t, bool kMean>
__global__ void __launch_bounds__(kThreads) gather_kernel(
    const scalar_t* __restrict__ src,
    const int64_t* __restrict__ labels,
    const int* __restrict__ counts,
    scalar_t* __restrict__ out,
    unsigned long long* bad,
    Layout l) {
  const int64_t b = blockIdx.x / l.tiles;
  const int64_t tile = blockIdx.x - b * l.tiles;
  const int64_t p = tile * kThreads + threadIdx.x;
  if (p >= l.pixels) {
    return;
  }
  const int64_t id = load_id(labels, b * l.pixels + p, true, l, bad);
  const int64_t c0 = static_cast<int64_t>(blockIdx.y) * kChunk;
  const int chunk = static_cast<int>(l.channels - c0 < kChunk ? l.channels - c0 : kChunk);
  scalar_t* op = out + (b * l.channels + c0) * l.pixels + p;
  if (id < 0) {
    for (int c = 0; c < chunk; ++c) {
      op[c * l.pixels] = scalar_t(0);
    }
    return;
  }
  const scalar_t* srow = src + (b * l.segments + id) * l.channels + c0;
  scalar_t count = scalar_t(1);
  if (kMean) {
    count = static_cast<scalar_t>(__ldg(counts + b * l.segments + id));
  }
  for (int c = 0; c < chunk; ++c) {
    const scalar_t v = __ldg(srow + c);
    op[c * l.pixels] = kMean ? v / count : v;
  }
}

Layout make_layout(const PoolGeometry& geo) {
  Layout l;
  l.channels = geo.channels;
  l.pixels = geo.pixels();
  l.segments = geo.segments;
  l.tiles = (l.pixels + kThreads - 1) / kThreads;
  l.total = geo.batch * l.pixels;
  return l;
}

void check_grid(const Layout& l, int64_t batch, const char* op) {
  TORCH_CHECK(
      l.tiles * batch <= std::numeric_limits<int32_t>::max(),
      op, ": too many pixels for one launch: ", l.total);
  TORCH_CHECK(
      (l.channels + kChunk - 1) / kChunk <= 65535, op, ": too many channels: ", l.channels);
}

// Raises the bad-id error recorded by the kernels, if any (synchronises).
void check_flag(
    const at::Tensor& workspace,
    const at::Tensor& labels,
    const PoolGeometry& geo,
    const Layout& l,
    const char* op) {
  const int64_t flag = workspace.slice(0, 0, 8).view(at::kLong).item<int64_t>();
  if (flag != 0) {
    const int64_t flat = l.total - flag;
    report_bad_id(op, geo, flat, labels.view(-1).select(0, flat).item<int64_t>());
  }
}

at::Tensor reduce_cuda(
    const at::Tensor& x,
    const at::Tensor& labels,
    int64_t num_segments,
    bool check_ids,
    bool mean,
    const char* op,
    const char* x_name) {
  const auto geo = check_image_args(x, labels, num_segments, op, x_name);
  TORCH_CHECK(x.is_cuda(), op, ": the CUDA kernel got a tensor on ", x.device());
  if (common::is_reduced_precision(x)) {
    // float16 / bfloat16 sum in float32 through the float32 kernel (which has run on a GPU).
    return reduce_cuda(x.to(at::kFloat), labels, num_segments, check_ids, mean, op, x_name).to(x.scalar_type());
  }
  const c10::cuda::CUDAGuard guard(x.device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor out = at::empty({geo.batch, geo.segments, geo.channels}, x.options());
  if (out.numel() > 0) {
    C10_CUDA_CHECK(cudaMemsetAsync(out.mutable_data_ptr(), 0, out.nbytes(), stream));
  }
  const Layout l = make_layout(geo);
  if (l.total == 0 || (geo.channels == 0 && !check_ids)) {
    return out;
  }
  check_grid(l, geo.batch, op);
  const at::Tensor lc = labels.contiguous();
  const int64_t chunks = (geo.channels + kChunk - 1) / kChunk;
  const int64_t groups = geo.batch * chunks;
  // Workspace: [bad flag: 8 bytes][counts: groups * K int][done: groups unsigned].
  const int64_t bytes = 8 + (mean ? groups * (geo.segments + 1) * 4 : 0);
  at::Tensor workspace = at::empty({bytes}, x.options().dtype(at::kByte));
  C10_CUDA_CHECK(cudaMemsetAsync(workspace.mutable_data_ptr(), 0, bytes, stream));
  auto* base = static_cast<unsigned char*>(workspace.mutable_data_ptr());
  auto* bad = check_ids ? reinterpret_cast<unsigned long long*>(base) : nullptr;
  int* counts = mean ? reinterpret_cast<int*>(base + 8) : nullptr;
  auto* done = mean ? reinterpret_cast<unsigned*>(base + 8 + groups * geo.segments * 4) : nullptr;
  const unsigned blocks = static_cast<unsigned>(l.tiles * geo.batch);
  if (geo.channels == 0) {
    count_kernel<<<blocks, kThreads, 0, stream>>>(lc.const_data_ptr<int64_t>(), nullptr, bad, l);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  } else {
    const at::Tensor xc = x.contiguous();
    const dim3 grid(blocks, static_cast<unsigned>(chunks));
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "superpixel_reduce_cuda", [&] {
      auto kernel = mean ? reduce_kernel<scalar_t, true> : reduce_kernel<scalar_t, false>;
      kernel<<<grid, kThreads, 0, stream>>>(
          xc.const_data_ptr<scalar_t>(), lc.const_data_ptr<int64_t>(),
          out.mutable_data_ptr<scalar_t>(), counts, done, bad, l);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  if (check_ids) {
    check_flag(workspace, lc, geo, l, op);
  }
  return out;
}

at::Tensor gather_cuda(
    const at::Tensor& src,
    const at::Tensor& labels,
    bool check_ids,
    bool mean,
    const char* op,
    const char* src_name) {
  const auto geo = check_pooled_args(src, labels, op, src_name);
  TORCH_CHECK(src.is_cuda(), op, ": the CUDA kernel got a tensor on ", src.device());
  if (common::is_reduced_precision(src)) {
    return gather_cuda(src.to(at::kFloat), labels, check_ids, mean, op, src_name).to(src.scalar_type());
  }
  const c10::cuda::CUDAGuard guard(src.device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor out = at::empty({geo.batch, geo.channels, geo.height, geo.width}, src.options());
  const Layout l = make_layout(geo);
  if (l.total == 0 || (geo.channels == 0 && !check_ids)) {
    return out;
  }
  check_grid(l, geo.batch, op);
  const at::Tensor lc = labels.contiguous();
  // Workspace: [bad flag: 8 bytes][counts: B * K int, for the mean's gradient].
  const int64_t bytes = 8 + (mean ? geo.batch * geo.segments * 4 : 0);
  at::Tensor workspace = at::empty({bytes}, src.options().dtype(at::kByte));
  C10_CUDA_CHECK(cudaMemsetAsync(workspace.mutable_data_ptr(), 0, bytes, stream));
  auto* base = static_cast<unsigned char*>(workspace.mutable_data_ptr());
  auto* bad = check_ids ? reinterpret_cast<unsigned long long*>(base) : nullptr;
  int* counts = mean ? reinterpret_cast<int*>(base + 8) : nullptr;
  const unsigned blocks = static_cast<unsigned>(l.tiles * geo.batch);
  if (mean || geo.channels == 0) {
    count_kernel<<<blocks, kThreads, 0, stream>>>(lc.const_data_ptr<int64_t>(), counts, bad, l);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    bad = nullptr;  // checked by the count kernel
  }
  if (geo.channels > 0) {
    // src may be an expanded (stride-0) gradient: read a contiguous copy.
    const at::Tensor sc = src.contiguous();
    const dim3 grid(blocks, static_cast<unsigned>((geo.channels + kChunk - 1) / kChunk));
    AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "superpixel_gather_cuda", [&] {
      auto kernel = mean ? gather_kernel<scalar_t, true> : gather_kernel<scalar_t, false>;
      kernel<<<grid, kThreads, 0, stream>>>(
          sc.const_data_ptr<scalar_t>(), lc.const_data_ptr<int64_t>(), counts,
          out.mutable_data_ptr<scalar_t>(), bad, l);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  if (check_ids) {
    check_flag(workspace, lc, geo, l, op);
  }
  return out;
}

at::Tensor superpixel_pool_cuda(const at::Tensor& x, const at::Tensor& labels, int64_t num_segments, bool check_ids) {
  return reduce_cuda(x, labels, num_segments, check_ids, /*mean=*/true, "superpixel_pool", "x");
}

at::Tensor superpixel_pool_backward_cuda(const at::Tensor& grad, const at::Tensor& labels, bool check_ids) {
  return gather_cuda(grad, labels, check_ids, /*mean=*/true, "superpixel_pool_backward", "grad");
}

at::Tensor superpixel_unpool_cuda(const at::Tensor& pooled, const at::Tensor& labels, bool check_ids) {
  return gather_cuda(pooled, labels, check_ids, /*mean=*/false, "superpixel_unpool", "pooled");
}

at::Tensor superpixel_unpool_backward_cuda(
    const at::Tensor& grad, const at::Tensor& labels, int64_t num_segments, bool check_ids) {
  return reduce_cuda(grad, labels, num_segments, check_ids, /*mean=*/false, "superpixel_unpool_backward", "grad");
}

} // namespace

TORCH_LIBRARY_IMPL(ial, CUDA, m) {
  m.impl("superpixel_pool", &superpixel_pool_cuda);
  m.impl("superpixel_pool_backward", &superpixel_pool_backward_cuda);
  m.impl("superpixel_unpool", &superpixel_unpool_cuda);
  m.impl("superpixel_unpool_backward", &superpixel_unpool_backward_cuda);
}

} // namespace superpixel
} // namespace ial
