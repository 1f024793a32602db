// The Python module `ial_ext._C`. Importing it runs the static TORCH_LIBRARY
// registrations of every op; the module itself only reports how it was built.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <mutex>
#include <set>
#include <thread>

#include "common/cpu_features.h"
#include "common/large_block_heap.h"
#include "common/output_memory.h"

namespace {

bool built_with_cuda() {
#ifdef IAL_WITH_CUDA
  return true;
#else
  return false;
#endif
}

// How many threads at::parallel_for spreads `items` over: the CPU kernels are
// only parallel if this build compiled ATen's parallel templates with OpenMP.
int64_t threads_used_by_parallel_for(int64_t items) {
  std::mutex mutex;
  std::set<std::thread::id> threads;
  at::parallel_for(0, items, 1, [&](int64_t, int64_t) {
    std::lock_guard<std::mutex> lock(mutex);
    threads.insert(std::this_thread::get_id());
  });
  return static_cast<int64_t>(threads.size());
}

pybind11::dict cpu_info() {
  const auto& caches = ial::cpu::cache_sizes();
  pybind11::dict info;
  info["isa"] = ial::cpu::isa_name(ial::cpu::active_isa());
  info["l1d_bytes"] = caches.l1d;
  info["l2_bytes"] = caches.l2;
  info["l3_bytes"] = caches.l3;
  info["l3_shared_by"] = caches.l3_share;
  info["cache_source"] = caches.source;
  info["streaming_store_bytes"] = ial::cpu::streaming_store_bytes();
  return info;
}

} // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "Compiled kernels of ial_ext (ops are registered under torch.ops.ial).";
  m.def("built_with_cuda", &built_with_cuda, "True when the CUDA kernels were compiled in.");
  m.def(
      "release_output_cache", &ial::common::release_output_cache,
      "Frees the cached blocks of large CPU op outputs; returns the bytes given back.");
  m.def(
      "retain_freed_memory", &ial::common::retain_freed_memory,
      "glibc: blocks below this many bytes come from the heap and stay there when freed; returns whether it took effect.");
  m.def(
      "install_large_block_heap", &ial::common::install_large_block_heap,
      "CPU tensors of 1 MiB and more from a heap of their own; returns whether it is torch's CPU allocator now.");
  m.def(
      "release_large_block_pages", &ial::common::release_large_block_pages,
      "Gives the pages of the large-tensor heap's free ranges back to the OS; returns their bytes.");
  m.def(
      "threads_used_by_parallel_for", &threads_used_by_parallel_for,
      "How many threads the CPU kernels' parallel loops use for this many work items.");
  m.def(
      "cpu_info", &cpu_info,
      "The instruction set the CPU kernels run (after ATEN_CPU_CAPABILITY) and the cache sizes they tile for.");
  m.attr("torch_version") = TORCH_VERSION;
}
