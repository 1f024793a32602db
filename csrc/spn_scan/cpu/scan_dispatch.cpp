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

Tiling choose_tiling(const ScanGeometry& geo, int64_t element_size, bool backward) {
  const int64_t l2 = ial::cpu::cache_sizes().l2;
  const int64_t line = (std::max<int64_t>(1, geo.cross()) + 32) * element_size;  // a padded tile line, about
  Tiling tiling;
  // Horizontal: as many columns per tile (a multiple of 16, at most 128) as
  // keep the tile buffers (4 forward, 10 backward) within 3/4 of this core's
  // L2. Wider tiles read and write the image in longer runs along its rows;
  // RESULTS.md has the measured widths.
  const int64_t arrays = backward ? 10 : 4;
  tiling.tile = std::clamp<int64_t>(l2 * 3 / 4 / (arrays * line) / 16 * 16, 16, kMaxTile);
  // Vertical, shared gates: the block's gate rows (and their gradient rows
  // backward) fill a quarter of the L2, the rest is for the streaming rows.
  const int64_t gate_rows = backward ? 6 : 3;
  tiling.rows = std::clamp<int64_t>(l2 / 4 / (gate_rows * line), 8, 256);
  return tiling;
}

} // namespace cpu
} // namespace spn
} // namespace ial
