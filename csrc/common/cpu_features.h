// The one CPU-feature dispatch of the library's CPU kernels, and the cache sizes
// their tiling adapts to.
//
// Every op compiles its kernels once per instruction set, in translation units
// named <name>_default.cpp and <name>_avx2.cpp (the latter opens with
// isa_avx2_begin.h), and picks a table with select(). An <name>_avx512.cpp
// belongs where AVX-512 measurably beats AVX2; on the machines of RESULTS.md it
// did not, so AVX-512 CPUs run the AVX2 tables. The ISA follows torch's own choice (at::get_cpu_capability), so
// ATEN_CPU_CAPABILITY=default or =avx2 caps these kernels exactly as it caps
// ATen's; it never exceeds what this build compiled or the CPU runs.
#pragma once

#include <cstdint>

namespace ial {
namespace cpu {

enum class Isa : int { kDefault = 0, kAvx2 = 1, kAvx512 = 2 };

// Detected once per process.
Isa active_isa();
const char* isa_name(Isa isa);

// Picks the entry of a per-ISA table, e.g. select(default_k, avx2_k, avx512_k).
template <typename T>
const T& select(const T& portable, const T& avx2, const T& avx512) {
  switch (active_isa()) {
    case Isa::kAvx512:
      return avx512;
    case Isa::kAvx2:
      return avx2;
    default:
      return portable;
  }
}

// Data cache sizes in bytes, as the OS reports them (sysfs on Linux, then
// sysconf; conservative defaults where neither answers). l2 is per core; l3 is
// the whole last-level cache and l3_share how many logical CPUs share it.
struct CacheSizes {
  int64_t l1d = 32 << 10;
  int64_t l2 = 512 << 10;
  int64_t l3 = 8 << 20;
  int64_t l3_share = 1;
  const char* source = "defaults";
};

// Read once per process.
const CacheSizes& cache_sizes();

// One thread's share of the last-level cache: the whole of it over the logical
// CPUs that share it, or over torch's threads where fewer of them run.
int64_t last_level_share();

// Outputs of more bytes than this (half the last-level cache) would not be
// read back from it anyway: the kernels write them with non-temporal stores,
// which skip reading every destination line first.
int64_t streaming_store_bytes();
inline bool streams_output(int64_t bytes) {
  return bytes > streaming_store_bytes();
}

} // namespace cpu
} // namespace ial
