// Which scan kernels run (common/cpu_features.h) and how horizontal scans tile.
#include "scan_kernels_api.h"
#include "../../common/cpu_features.h"

#include <algorithm>

namespace ial {
namespace spn {
namespace cpu {

template <typename T>
const Kernels<T>& scan_kernels() {
  // AVX-512 runs the AVX2 kernels: 16-wide line kernels measured slower (RESULTS.md).
  static const Kernels<T> table = ial::cpu::select(
      portable::kernels<T>(), avx2::kernels<T>(), avx2::kernels<T>());
  return table;
}

template const Kernels<float>& scan_kernels<float>();
template const Kernels<double>& scan_kernels<double>();

Tiling choose_tiling(const ScanGeometry& geo, int64_t element_size, int64_t arrays) {
  // One cache line of every row per tile (16 floats) while the tile's line
  // buffers fill at most half of this core's L2; half that for lines so long
  // that they would not. Wider tiles (32, 64 columns) were slower on the AMD
  // EPYC of RESULTS.md, AVX-512 line kernels too (rows are not 64-byte aligned).
  const int64_t budget = ial::cpu::cache_sizes().l2 / 2;
  const int64_t line = std::max<int64_t>(1, geo.cross()) * element_size;
  Tiling tiling;
  tiling.tile = arrays * 16 * line <= budget ? 16 : 8;
  return tiling;
}

} // namespace cpu
} // namespace spn
} // namespace ial
