// The Python module `ial_ext._C`. Importing it runs the static TORCH_LIBRARY
// registrations of every op; the module itself only reports how it was built.
#include <torch/extension.h>

namespace {

bool built_with_cuda() {
#ifdef IAL_WITH_CUDA
  return true;
#else
  return false;
#endif
}

} // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "Compiled kernels of ial_ext (ops are registered under torch.ops.ial).";
  m.def("built_with_cuda", &built_with_cuda, "True when the CUDA kernels were compiled in.");
  m.attr("torch_version") = TORCH_VERSION;
}
