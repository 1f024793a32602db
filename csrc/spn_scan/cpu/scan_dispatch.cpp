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

constexpr int64_t kTileL2 = 2 << 20;  // the L2 size from which horizontal tiles stay in it

Tiling choose_tiling(const ScanGeometry& geo, int64_t element_size, bool backward) {
  const int64_t l2 = ial::cpu::cache_sizes().l2;
  const int64_t line = (std::max<int64_t>(1, geo.cross()) + 32) * element_size;  // a padded tile line, about
  Tiling tiling;
  // Horizontal: with an L2 of kTileL2 or more a core (the Intel Xeons seen),
  // the tile buffers (about 5 forward, 10 backward) stay in half of it, which
  // measured faster than any wider tile read from their slower L3. With a
  // smaller L2 (the AMD machines seen) the tiles that fit it read runs too
  // short from every row: there, whole rows when their buffers fit half this
  // thread's share of L2 and L3, otherwise the fewest equal tiles that do. Whole
  // rows make every block row of 8 image rows one contiguous run, which the
  // hardware prefetchers follow. Tiles are a multiple of 8 columns, at most
  // kMaxTile (RESULTS.md has the widths measured on each machine).
  const int64_t arrays = backward ? 10 : 5;
  const int64_t budget = l2 >= kTileL2 ? l2 / 2 : (l2 + ial::cpu::last_level_share()) / 2;
  const int64_t fit = std::clamp<int64_t>(budget / (arrays * line), 16, kMaxTile);
  const int64_t steps = std::max<int64_t>(1, geo.steps());
  const int64_t tiles = (steps + fit - 1) / fit;
  tiling.tile = tiles == 1 ? steps : ((steps + tiles - 1) / tiles + 7) / 8 * 8;
  // Vertical, shared gates: the block's gate rows (and their gradient rows
  // backward) fill a quarter of the L2, the rest is for the streaming rows.
  const int64_t gate_rows = backward ? 6 : 3;
  tiling.rows = std::clamp<int64_t>(l2 / 4 / (gate_rows * line), 8, 256);
  return tiling;
}

} // namespace cpu
} // namespace spn
} // namespace ial
