// The memory access pattern of the horizontal shared-gate scan without its arithmetic: the
// library's own forward_horizontal (scan_kernels.h, compiled here as in scan_kernels_avx2.cpp)
// with its line kernels left out, so every x tile goes back out unchanged; and plain copies of x
// in the runs of column tiles, without transposes or gates. Built by benchmarks/scan_access_pattern.py.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/cpu_features.h"
#include "spn_scan/cpu/scan_kernels_api.h"
#include "spn_scan/cpu/scan_runtime.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include "common/isa_avx2_begin.h"
#undef IAL_CPU_ISA
#define IAL_CPU_ISA access_pattern
#include "spn_scan/cpu/scan_kernels.h"

namespace ial::spn::cpu::access_pattern {

// The shared horizontal forward with its line kernels left out.
void move_tiles(const ScanInputs<float>& in, float* h, const ScanGeometry& geo, const Tiling& tiling, float* scratch) {
  forward_horizontal<false, float, /*kLineKernels=*/false>(in, h, geo, tiling, scratch);
}

// A run written around the caches, its lines not read first; stream_fence() once the runs are out.
void stream_run(float* dst, const float* src, int64_t n) { ial::simd::stream_floats(dst, src, n); }
void stream_fence() { _mm_sfence(); }

}  // namespace ial::spn::cpu::access_pattern
#include "common/isa_end.h"

namespace {

// x (B, C, H, W) and gates (B, 3, H, W) float32, contiguous; direction 0 (left to right) or 1.
// Returns x, moved through the scan's tiles (the gate tiles gathered as the scan does). `stream`:
// the scatter streams its rows, as spn_scan does for an output beyond half the last-level cache.
at::Tensor move_tiles(const at::Tensor& x, const at::Tensor& gates, int64_t direction, bool stream) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat && x.is_contiguous(), "x: contiguous (B, C, H, W) float32");
  TORCH_CHECK(gates.dim() == 4 && gates.size(1) == 3 && gates.scalar_type() == at::kFloat && gates.is_contiguous(),
              "gates: contiguous (B, 3, H, W) float32");
  TORCH_CHECK(direction == 0 || direction == 1, "direction: 0 or 1 (the horizontal scans)");
  TORCH_CHECK(ial::cpu::active_isa() != ial::cpu::Isa::kDefault, "needs AVX2");
  using namespace ial::spn;
  ScanGeometry geo;
  geo.batch = x.size(0);
  geo.channels = x.size(1);
  geo.height = x.size(2);
  geo.width = x.size(3);
  geo.horizontal = true;
  geo.reverse = direction == 1;
  geo.shared_gates = true;
  at::Tensor out = at::empty_like(x);
  const auto tiling = cpu::choose_tiling(geo, sizeof(float), /*backward=*/false);
  const auto calls = cpu::channel_calls(geo.batch, geo.channels, /*shared_gates=*/true);
  const auto& kernels = cpu::scan_kernels<float>();
  const float* xd = x.const_data_ptr<float>();
  const float* gd = gates.const_data_ptr<float>();
  float* od = out.mutable_data_ptr<float>();
  const int64_t hw = geo.plane_size();
  const bool stream_out = stream || ial::cpu::streams_output(out.nbytes());
  at::parallel_for(0, calls.count, 1, [&](int64_t begin, int64_t end) {
    cpu::Scratch<float> scratch(kernels.forward_scratch(geo, tiling, calls.max_channels, false));
    for (int64_t call = begin; call < end; ++call) {
      const int64_t b = calls.batch(call);
      const int64_t p = b * geo.channels + calls.first(call);
      const float* a = gd + b * 3 * hw;
      cpu::ScanInputs<float> in{xd + p * hw, a, a + hw, a + 2 * hw, calls.channels(call)};
      in.stream = stream_out;
      cpu::access_pattern::move_tiles(in, od + p * hw, geo, tiling, scratch.data());
    }
  });
  return out;
}

// Fetches the run of `bytes` at p (kWrite: for writing), a cache line at a time. The kernels'
// prefetch_line is compiled for AVX2 and would be called, not inlined, from here: measured slower.
template <int kWrite>
void prefetch_run(const void* p, int64_t bytes) {
  constexpr int64_t kLine = ial::spn::cpu::access_pattern::kCacheLine;
  for (int64_t off = 0; off < bytes; off += kLine) __builtin_prefetch(static_cast<const char*>(p) + off, kWrite, 3);
}

// A row's run of the output: streamed, or stored (its lines fetched for writing by the caller).
void write_run(float* dst, const float* src, int64_t bytes, bool stream) {
  if (stream) {
    ial::spn::cpu::access_pattern::stream_run(dst, src, bytes / int64_t(sizeof(float)));
  } else {
    std::memcpy(dst, src, bytes);
  }
}

// x (B, C, H, W) float32 copied in the order a horizontal scan of `tile`-column tiles moves it (per
// batch item and part of its channels, tile by tile, channel by channel, row by row), each row's run
// of the tile at once, the rows 16 ahead fetched. `staged`: every channel's tile goes into a row-major
// buffer first and out of it afterwards, a phase of reads then one of writes, as the scan's gather and
// scatter; otherwise each run goes straight from x to the output. `stream`: the output's runs are
// streamed (access_pattern::stream_run) instead of fetched for writing and stored.
at::Tensor copy_runs(const at::Tensor& x, int64_t tile, bool staged, bool stream) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat && x.is_contiguous(), "x: contiguous (B, C, H, W) float32");
  TORCH_CHECK(tile > 0, "tile: at least one column, got ", tile);
  TORCH_CHECK(!stream || ial::cpu::active_isa() != ial::cpu::Isa::kDefault, "stream: needs AVX2");
  constexpr int64_t kAhead = 16;
  const int64_t channels = x.size(1), height = x.size(2), width = x.size(3);
  const int64_t hw = height * width;
  at::Tensor out = at::empty_like(x);
  const float* xd = x.const_data_ptr<float>();
  float* od = out.mutable_data_ptr<float>();
  const auto calls = ial::spn::cpu::channel_calls(x.size(0), channels, /*shared_gates=*/true);
  at::parallel_for(0, calls.count, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> stage(staged ? height * tile : 0);
    for (int64_t call = begin; call < end; ++call) {
      const int64_t first = calls.batch(call) * channels + calls.first(call);
      for (int64_t s0 = 0; s0 < width; s0 += tile) {
        const int64_t bytes = std::min(tile, width - s0) * int64_t(sizeof(float));
        for (int64_t c = first; c < first + calls.channels(call); ++c) {
          const float* src = xd + c * hw + s0;
          float* dst = od + c * hw + s0;
          for (int64_t i = 0; i < height; ++i) {
            if (i + kAhead < height) {
              prefetch_run<0>(src + (i + kAhead) * width, bytes);
              if (!staged && !stream) prefetch_run<1>(dst + (i + kAhead) * width, bytes);
            }
            if (staged) {
              std::memcpy(stage.data() + i * tile, src + i * width, bytes);
            } else {
              write_run(dst + i * width, src + i * width, bytes, stream);
            }
          }
          for (int64_t i = 0; staged && i < height; ++i) {
            if (!stream && i + kAhead < height) prefetch_run<1>(dst + (i + kAhead) * width, bytes);
            write_run(dst + i * width, stage.data() + i * tile, bytes, stream);
          }
          if (stream) ial::spn::cpu::access_pattern::stream_fence();
        }
      }
    }
  });
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("move_tiles", &move_tiles, "the horizontal shared scan's tile moves, without its arithmetic");
  m.def("copy_runs", &copy_runs, "x copied in the runs of column tiles of the given width");
  m.def("tile_width", [](int64_t height, int64_t width) {
    ial::spn::ScanGeometry geo;
    geo.height = height;
    geo.width = width;
    geo.horizontal = true;
    return ial::spn::cpu::choose_tiling(geo, sizeof(float), false).tile;
  });
}
#endif
