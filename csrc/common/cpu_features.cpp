#include "cpu_features.h"

#include <ATen/Parallel.h>
#include <ATen/Version.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#if defined(__linux__)
#include <unistd.h>
#endif

namespace ial {
namespace cpu {
namespace {

// What this build compiled: the AVX2 and AVX-512 units need x86-64 and GCC/Clang.
Isa compiled_isa() {
#if defined(__x86_64__) && defined(__GNUC__)
  return Isa::kAvx512;
#else
  return Isa::kDefault;
#endif
}

Isa supported_by_cpu() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return avx512 ? Isa::kAvx512 : (avx2 ? Isa::kAvx2 : Isa::kDefault);
#else
  return Isa::kDefault;
#endif
}

// torch's capability ("DEFAULT", "AVX2", "AVX512", or another architecture's
// names), which already honours ATEN_CPU_CAPABILITY.
Isa torch_isa() {
  const std::string name = at::get_cpu_capability();
  if (name == "AVX512") return Isa::kAvx512;
  if (name == "AVX2") return Isa::kAvx2;
  return Isa::kDefault;
}

Isa lowest(Isa a, Isa b) {
  return static_cast<int>(a) < static_cast<int>(b) ? a : b;
}

#if defined(__linux__)
bool read_line(const std::string& path, std::string& out) {
  std::ifstream file(path);
  return static_cast<bool>(std::getline(file, out));
}

// "48K", "1024K", "32M" -> bytes; 0 when unreadable.
int64_t parse_size(const std::string& text) {
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (end == text.c_str() || value <= 0) return 0;
  switch (*end) {
    case 'K': return value << 10;
    case 'M': return value << 20;
    case 'G': return value << 30;
    default: return value;
  }
}

// "0-1", "0,2,4-7" -> number of CPUs listed.
int64_t count_cpus(const std::string& list) {
  int64_t count = 0;
  size_t pos = 0;
  while (pos < list.size()) {
    const size_t comma = list.find(',', pos);
    const std::string item = list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    const size_t dash = item.find('-');
    if (dash == std::string::npos) {
      count += item.empty() ? 0 : 1;
    } else {
      count += std::atoll(item.c_str() + dash + 1) - std::atoll(item.c_str()) + 1;
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return count > 0 ? count : 1;
}

bool from_sysfs(CacheSizes& sizes) {
  bool found = false;
  for (int index = 0; index < 8; ++index) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/";
    std::string level, type, size, shared;
    if (!read_line(dir + "level", level) || !read_line(dir + "type", type) || !read_line(dir + "size", size)) {
      continue;
    }
    if (type == "Instruction") continue;
    const int64_t bytes = parse_size(size);
    if (bytes <= 0) continue;
    found = true;
    if (level == "1") {
      sizes.l1d = bytes;
    } else if (level == "2") {
      sizes.l2 = bytes;
    } else if (level == "3") {
      sizes.l3 = bytes;
      sizes.l3_share = read_line(dir + "shared_cpu_list", shared) ? count_cpus(shared) : 1;
    }
  }
  return found;
}

bool from_sysconf(CacheSizes& sizes) {
#if defined(_SC_LEVEL2_CACHE_SIZE)
  const long l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE);
  const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (l2 <= 0) return false;
  if (l1 > 0) sizes.l1d = l1;
  sizes.l2 = l2;
  if (l3 > 0) {
    sizes.l3 = l3;
    sizes.l3_share = sysconf(_SC_NPROCESSORS_ONLN) > 0 ? sysconf(_SC_NPROCESSORS_ONLN) : 1;
  }
  return true;
#else
  (void)sizes;
  return false;
#endif
}
#endif

} // namespace

Isa active_isa() {
  static const Isa isa = lowest(lowest(compiled_isa(), supported_by_cpu()), torch_isa());
  return isa;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "default";
  }
}

const CacheSizes& cache_sizes() {
  static const CacheSizes sizes = [] {
    CacheSizes s;
#if defined(__linux__)
    // sysfs first: inside a VM sysconf may report the host's last-level cache.
    if (from_sysfs(s)) {
      s.source = "sysfs";
    } else if (from_sysconf(s)) {
      s.source = "sysconf";
    }
#endif
    return s;
  }();
  return sizes;
}

int64_t last_level_share() {
  const auto& caches = cache_sizes();
  const int64_t sharers = std::min<int64_t>(caches.l3_share, at::get_num_threads());
  return caches.l3 / std::max<int64_t>(1, sharers);
}

int64_t streaming_store_bytes() {
  return cache_sizes().l3 / 2;
}

} // namespace cpu
} // namespace ial
