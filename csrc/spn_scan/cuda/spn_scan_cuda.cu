// SPN scan on CUDA: one launch per call, one thread block per (batch, channel)
// plane, the whole scan inside the block.
//
// Lines of the scan are staged through shared memory in tiles of `tile` steps:
// the block loads a tile of every input with coalesced reads (for horizontal
// scans, each row contributes `tile` consecutive columns; for vertical scans,
// each step is one contiguous row), runs the recurrence from shared memory
// with one barrier per step, and writes the outputs back coalesced. The tile
// layout is [position][step] with a padded pitch of tile + 1 so that threads
// walking positions hit distinct banks.
#include "../spn_scan.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

namespace ial {
namespace spn {
namespace {

constexpr int kForwardTiles = 5;   // x, a, b, c, h
constexpr int kBackwardTiles = 10; // grad_h, x, a, b, c, h, grad_x, grad_a, grad_b, grad_c
constexpr int kForwardLines = 2;   // h of the previous and of the current step
constexpr int kBackwardLines = 6;  // (a, b, c) contributions, double-buffered

struct PlaneLayout {
  int64_t channels;
  int64_t height;
  int64_t width;
  int64_t steps;
  int64_t cross;
  bool reverse;
};

// Offset inside a plane of position i of the line visited at step s.
template <bool kHorizontal>
__device__ __forceinline__ int64_t plane_offset(const PlaneLayout& p, int64_t s, int64_t i) {
  const int64_t pos = p.reverse ? p.steps - 1 - s : s;
  return kHorizontal ? i * p.width + pos : pos * p.width + i;
}

// Maps the e-th element of a tile of `count` steps to (step k, position i) so
// that consecutive threads touch consecutive addresses in global memory.
template <bool kHorizontal>
__device__ __forceinline__ void tile_coords(int64_t e, int count, int64_t cross, int& k, int64_t& i) {
  if (kHorizontal) {
    i = e / count;
    k = static_cast<int>(e - i * count);
  } else {
    k = static_cast<int>(e / cross);
    i = e - static_cast<int64_t>(k) * cross;
  }
}

template <typename scalar_t, typename acc_t, bool kHorizontal>
__global__ void spn_scan_forward_kernel(
    const scalar_t* __restrict__ x,
    const scalar_t* __restrict__ gates,
    scalar_t* __restrict__ h,
    PlaneLayout p,
    int tile) {
  const int64_t plane = blockIdx.x;
  const int64_t hw = p.height * p.width;
  const int64_t batch = plane / p.channels;
  const int64_t channel = plane - batch * p.channels;
  const scalar_t* xp = x + plane * hw;
  const scalar_t* ap = gates + (batch * 3 * p.channels + channel) * hw;
  const scalar_t* bp = ap + p.channels * hw;
  const scalar_t* cp = bp + p.channels * hw;
  scalar_t* hp = h + plane * hw;

  const int64_t cross = p.cross;
  const int pitch = tile + 1;
  extern __shared__ unsigned char smem[];
  acc_t* prev = reinterpret_cast<acc_t*>(smem);
  acc_t* cur = prev + cross;
  scalar_t* tx = reinterpret_cast<scalar_t*>(cur + cross);
  scalar_t* ta = tx + cross * pitch;
  scalar_t* tb = ta + cross * pitch;
  scalar_t* tc = tb + cross * pitch;
  scalar_t* th = tc + cross * pitch;

  for (int64_t s0 = 0; s0 < p.steps; s0 += tile) {
    const int count = static_cast<int>(p.steps - s0 < tile ? p.steps - s0 : tile);
    const int64_t elements = cross * count;
    for (int64_t e = threadIdx.x; e < elements; e += blockDim.x) {
      int k;
      int64_t i;
      tile_coords<kHorizontal>(e, count, cross, k, i);
      const int64_t g = plane_offset<kHorizontal>(p, s0 + k, i);
      const int64_t t = i * pitch + k;
      tx[t] = xp[g];
      ta[t] = ap[g];
      tb[t] = bp[g];
      tc[t] = cp[g];
    }
    __syncthreads();
    for (int k = 0; k < count; ++k) {
      const bool first_line = s0 + k == 0;
      for (int64_t i = threadIdx.x; i < cross; i += blockDim.x) {
        const int64_t t = i * pitch + k;
        const acc_t xv = static_cast<acc_t>(tx[t]);
        acc_t out = xv;
        if (!first_line) {
          // Gates whose neighbour lies outside the image drop out of both terms.
          const bool has_a = i > 0;
          const bool has_c = i + 1 < cross;
          const acc_t a = has_a ? static_cast<acc_t>(ta[t]) : acc_t(0);
          const acc_t b = static_cast<acc_t>(tb[t]);
          const acc_t c = has_c ? static_cast<acc_t>(tc[t]) : acc_t(0);
          out = (acc_t(1) - a - b - c) * xv + b * prev[i];
          if (has_a) out += a * prev[i - 1];
          if (has_c) out += c * prev[i + 1];
        }
        cur[i] = out;
        th[t] = static_cast<scalar_t>(out);
      }
      __syncthreads();
      acc_t* swap = prev;
      prev = cur;
      cur = swap;
    }
    for (int64_t e = threadIdx.x; e < elements; e += blockDim.x) {
      int k;
      int64_t i;
      tile_coords<kHorizontal>(e, count, cross, k, i);
      hp[plane_offset<kHorizontal>(p, s0 + k, i)] = th[i * pitch + k];
    }
    // The next tile's loads touch tx..tc only; th is rewritten after the
    // barrier that follows those loads, when every store above is done.
  }
}

template <typename scalar_t, typename acc_t, bool kHorizontal>
__global__ void spn_scan_backward_kernel(
    const scalar_t* __restrict__ grad_h,
    const scalar_t* __restrict__ x,
    const scalar_t* __restrict__ gates,
    const scalar_t* __restrict__ h,
    scalar_t* __restrict__ grad_x,
    scalar_t* __restrict__ grad_gates,
    PlaneLayout p,
    int tile) {
  const int64_t plane = blockIdx.x;
  const int64_t hw = p.height * p.width;
  const int64_t batch = plane / p.channels;
  const int64_t channel = plane - batch * p.channels;
  const int64_t gate_plane = (batch * 3 * p.channels + channel) * hw;
  const int64_t gate_stride = p.channels * hw;
  const scalar_t* gp = grad_h + plane * hw;
  const scalar_t* xp = x + plane * hw;
  const scalar_t* ap = gates + gate_plane;
  const scalar_t* bp = ap + gate_stride;
  const scalar_t* cp = bp + gate_stride;
  const scalar_t* hp = h + plane * hw;
  scalar_t* gxp = grad_x + plane * hw;
  scalar_t* gap = grad_gates + gate_plane;
  scalar_t* gbp = gap + gate_stride;
  scalar_t* gcp = gbp + gate_stride;

  const int64_t cross = p.cross;
  const int pitch = tile + 1;
  extern __shared__ unsigned char smem[];
  // recv_*: what line s+1 sends back through its gates, send_*: what line s
  // sends to line s-1 (send_a[i] = a'[s, i] q[s, i], ...).
  acc_t* recv_a = reinterpret_cast<acc_t*>(smem);
  acc_t* recv_b = recv_a + cross;
  acc_t* recv_c = recv_b + cross;
  acc_t* send_a = recv_c + cross;
  acc_t* send_b = send_a + cross;
  acc_t* send_c = send_b + cross;
  scalar_t* tg = reinterpret_cast<scalar_t*>(send_c + cross);
  scalar_t* tx = tg + cross * pitch;
  scalar_t* ta = tx + cross * pitch;
  scalar_t* tb = ta + cross * pitch;
  scalar_t* tc = tb + cross * pitch;
  scalar_t* th = tc + cross * pitch;  // slot k holds h of step s0 + k - 1
  scalar_t* tgx = th + cross * pitch;
  scalar_t* tga = tgx + cross * pitch;
  scalar_t* tgb = tga + cross * pitch;
  scalar_t* tgc = tgb + cross * pitch;

  for (int64_t i = threadIdx.x; i < cross; i += blockDim.x) {
    recv_a[i] = recv_b[i] = recv_c[i] = acc_t(0);
  }

  const int64_t last_tile = ((p.steps - 1) / tile) * tile;
  for (int64_t s0 = last_tile; s0 >= 0; s0 -= tile) {
    const int count = static_cast<int>(p.steps - s0 < tile ? p.steps - s0 : tile);
    const int64_t elements = cross * count;
    for (int64_t e = threadIdx.x; e < elements; e += blockDim.x) {
      int k;
      int64_t i;
      tile_coords<kHorizontal>(e, count, cross, k, i);
      const int64_t g = plane_offset<kHorizontal>(p, s0 + k, i);
      const int64_t t = i * pitch + k;
      tg[t] = gp[g];
      tx[t] = xp[g];
      ta[t] = ap[g];
      tb[t] = bp[g];
      tc[t] = cp[g];
    }
    // h of steps s0 - 1 .. s0 + count - 2 (step -1 does not exist).
    const int64_t first_h = s0 > 0 ? s0 - 1 : 0;
    const int h_count = static_cast<int>(s0 + count - 1 - first_h);
    const int h_slot = static_cast<int>(first_h - (s0 - 1));
    for (int64_t e = threadIdx.x; e < cross * h_count; e += blockDim.x) {
      int k;
      int64_t i;
      tile_coords<kHorizontal>(e, h_count, cross, k, i);
      th[i * pitch + h_slot + k] = hp[plane_offset<kHorizontal>(p, first_h + k, i)];
    }
    __syncthreads();
    for (int k = count - 1; k >= 0; --k) {
      const bool first_line = s0 + k == 0;
      for (int64_t i = threadIdx.x; i < cross; i += blockDim.x) {
        const int64_t t = i * pitch + k;
        const bool has_a = i > 0;
        const bool has_c = i + 1 < cross;
        acc_t q = static_cast<acc_t>(tg[t]) + recv_b[i];
        if (has_c) q += recv_a[i + 1];
        if (has_a) q += recv_c[i - 1];
        if (first_line) {
          tgx[t] = static_cast<scalar_t>(q);
          tga[t] = tgb[t] = tgc[t] = scalar_t(0);
          continue;
        }
        const acc_t xv = static_cast<acc_t>(tx[t]);
        const acc_t a = has_a ? static_cast<acc_t>(ta[t]) : acc_t(0);
        const acc_t b = static_cast<acc_t>(tb[t]);
        const acc_t c = has_c ? static_cast<acc_t>(tc[t]) : acc_t(0);
        tgx[t] = static_cast<scalar_t>((acc_t(1) - a - b - c) * q);
        tga[t] = has_a ? static_cast<scalar_t>(q * (static_cast<acc_t>(th[t - pitch]) - xv)) : scalar_t(0);
        tgb[t] = static_cast<scalar_t>(q * (static_cast<acc_t>(th[t]) - xv));
        tgc[t] = has_c ? static_cast<scalar_t>(q * (static_cast<acc_t>(th[t + pitch]) - xv)) : scalar_t(0);
        send_a[i] = a * q;
        send_b[i] = b * q;
        send_c[i] = c * q;
      }
      __syncthreads();
      acc_t* swap = recv_a;
      recv_a = send_a;
      send_a = swap;
      swap = recv_b;
      recv_b = send_b;
      send_b = swap;
      swap = recv_c;
      recv_c = send_c;
      send_c = swap;
    }
    for (int64_t e = threadIdx.x; e < elements; e += blockDim.x) {
      int k;
      int64_t i;
      tile_coords<kHorizontal>(e, count, cross, k, i);
      const int64_t g = plane_offset<kHorizontal>(p, s0 + k, i);
      const int64_t t = i * pitch + k;
      gxp[g] = tgx[t];
      gap[g] = tga[t];
      gbp[g] = tgb[t];
      gcp[g] = tgc[t];
    }
    // The next tile's loads do not touch the output tiles, which are only
    // rewritten after the barrier that follows those loads.
  }
}

struct LaunchShape {
  int tile;
  int threads;
  size_t smem;
};

// Picks the deepest tile (in steps) whose staging fits in shared memory,
// starting from one 32-byte sector per row for horizontal scans.
template <typename scalar_t, typename acc_t>
LaunchShape launch_shape(int64_t cross, int tiles, int lines, int device) {
  int smem_limit = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&smem_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  const int preferred = std::max<int>(1, 32 / static_cast<int>(sizeof(scalar_t)));
  for (int tile = preferred; tile >= 1; tile /= 2) {
    const size_t smem = static_cast<size_t>(lines) * cross * sizeof(acc_t) +
        static_cast<size_t>(tiles) * cross * (tile + 1) * sizeof(scalar_t);
    if (smem <= static_cast<size_t>(smem_limit)) {
      const int64_t warps = (cross + 31) / 32;
      const int threads = static_cast<int>(std::min<int64_t>(1024, std::max<int64_t>(1, warps) * 32));
      return {tile, threads, smem};
    }
  }
  const size_t per_position = lines * sizeof(acc_t) + 2 * tiles * sizeof(scalar_t);
  TORCH_CHECK(
      false, "spn_scan: a line of ", cross, " positions needs ", per_position * cross,
      " bytes of shared memory in this dtype (", per_position, " per position) but this GPU has ",
      smem_limit, "; lines up to ", smem_limit / per_position,
      " positions fit (float32 takes about half of float64)");
  return {};
}

PlaneLayout plane_layout(const ScanGeometry& geo) {
  return {geo.channels, geo.height, geo.width, geo.steps(), geo.cross(), geo.reverse};
}

// Shared gates (B, 3, H, W) run through the per-channel kernels (which have run
// on a GPU) as (B, 3C, H, W) copies; a dedicated kernel waits for a GPU to test it.
at::Tensor expand_shared_gates(const at::Tensor& gates, const ScanGeometry& geo) {
  return gates.unsqueeze(2).expand({geo.batch, 3, geo.channels, geo.height, geo.width})
      .reshape({geo.batch, 3 * geo.channels, geo.height, geo.width});
}

at::Tensor spn_scan_cuda(const at::Tensor& x, const at::Tensor& gates, int64_t direction) {
  const auto geo = check_forward_args(x, gates, direction, /*allow_reduced_precision=*/true);
  TORCH_CHECK(x.is_cuda(), "spn_scan: the CUDA kernel got a tensor on ", x.device());
  if (geo.shared_gates && geo.channels > 1) {
    return spn_scan_cuda(x, expand_shared_gates(gates, geo), direction);
  }
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous();
  const at::Tensor gc = gates.contiguous();
  at::Tensor h = at::empty(x.sizes(), x.options());
  if (h.numel() == 0) {
    return h;
  }
  TORCH_CHECK(geo.planes() <= INT32_MAX, "spn_scan: too many (batch, channel) planes: ", geo.planes());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "spn_scan_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto shape = launch_shape<scalar_t, acc_t>(geo.cross(), kForwardTiles, kForwardLines, x.get_device());
    auto kernel = geo.horizontal ? spn_scan_forward_kernel<scalar_t, acc_t, true>
                                 : spn_scan_forward_kernel<scalar_t, acc_t, false>;
    C10_CUDA_CHECK(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shape.smem)));
    kernel<<<static_cast<unsigned>(geo.planes()), shape.threads, shape.smem, stream>>>(
        xc.const_data_ptr<scalar_t>(), gc.const_data_ptr<scalar_t>(), h.mutable_data_ptr<scalar_t>(),
        plane_layout(geo), shape.tile);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return h;
}

std::tuple<at::Tensor, at::Tensor> spn_scan_backward_cuda(
    const at::Tensor& grad_h,
    const at::Tensor& x,
    const at::Tensor& gates,
    const at::Tensor& h,
    int64_t direction) {
  const auto geo = check_backward_args(grad_h, x, gates, h, direction, /*allow_reduced_precision=*/true);
  TORCH_CHECK(x.is_cuda(), "spn_scan_backward: the CUDA kernel got a tensor on ", x.device());
  if (geo.shared_gates && geo.channels > 1) {
    auto [grad_x, grad_expanded] = spn_scan_backward_cuda(grad_h, x, expand_shared_gates(gates, geo), h, direction);
    return {grad_x, grad_expanded.view({geo.batch, 3, geo.channels, geo.height, geo.width}).sum(2)};
  }
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor grad_x = at::empty(x.sizes(), x.options());
  at::Tensor grad_gates = at::empty(gates.sizes(), gates.options());
  if (x.numel() == 0) {
    return {grad_x, grad_gates.zero_()};
  }
  TORCH_CHECK(geo.planes() <= INT32_MAX, "spn_scan: too many (batch, channel) planes: ", geo.planes());
  // grad_h may be expanded (stride 0): read a contiguous copy, never write to it.
  const at::Tensor gc = grad_h.contiguous();
  const at::Tensor xc = x.contiguous();
  const at::Tensor gatesc = gates.contiguous();
  const at::Tensor hc = h.contiguous();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "spn_scan_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto shape = launch_shape<scalar_t, acc_t>(geo.cross(), kBackwardTiles, kBackwardLines, x.get_device());
    auto kernel = geo.horizontal ? spn_scan_backward_kernel<scalar_t, acc_t, true>
                                 : spn_scan_backward_kernel<scalar_t, acc_t, false>;
    C10_CUDA_CHECK(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shape.smem)));
    kernel<<<static_cast<unsigned>(geo.planes()), shape.threads, shape.smem, stream>>>(
        gc.const_data_ptr<scalar_t>(), xc.const_data_ptr<scalar_t>(), gatesc.const_data_ptr<scalar_t>(),
        hc.const_data_ptr<scalar_t>(), grad_x.mutable_data_ptr<scalar_t>(),
        grad_gates.mutable_data_ptr<scalar_t>(), plane_layout(geo), shape.tile);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_x, grad_gates};
}

} // namespace

TORCH_LIBRARY_IMPL(ial, CUDA, m) {
  m.impl("spn_scan", &spn_scan_cuda);
  m.impl("spn_scan_backward", &spn_scan_backward_cuda);
}

} // namespace spn
} // namespace ial
