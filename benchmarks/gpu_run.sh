#!/usr/bin/env bash
# What a machine with a CUDA GPU (and a CUDA build of torch) is for, in one go:
#   build   ial_ext with its CUDA kernels, against that torch, for TORCH_CUDA_ARCH_LIST
#   test    the CUDA tests: parity with the CPU kernels and the float64 references,
#           gradcheck, opcheck, compute-sanitizer (memcheck, racecheck, synccheck)
#   bench   the CUDA benchmark rows and the device's copy bandwidth, as RESULTS.md tables
# Usage: bash benchmarks/gpu_run.sh [build] [test] [bench]   (all three by default)
# Logs, the benchmark JSON and the report go to $OUT (default gpu-results/).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-results}
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the in-place build of this checkout
mkdir -p "$OUT"
stages=${*:-build test bench}
failed=()

want() { [[ " $stages " == *" $1 "* ]]; }

if want build; then
  echo "== build"
  {
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
    nvcc --version | tail -n 2
    $PYTHON -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"
  } 2>&1 | tee "$OUT/env.txt"
  # A compiler that links its own libstdc++ statically (the image of the lent GPU machines
  # sets CC/CXX to such a one, /opt/gcc) puts a second C++ runtime into the extension, whose
  # locale ids torch's runtime does not know: the first error message that formats a number
  # then crashes. Build with the system compiler, which shares torch's libstdc++, unless
  # IAL_KEEP_CXX is set.
  if [[ -z "${IAL_KEEP_CXX:-}" && -x /usr/bin/g++ ]]; then
    export CC=/usr/bin/gcc CXX=/usr/bin/g++
  fi
  # In place, so that the tests and benchmarks import this checkout; build.log keeps the
  # compile and link lines and (-Xptxas -v) each kernel's registers, shared memory, spills.
  if NVCC_APPEND_FLAGS="-Xptxas -v" IAL_EXT_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} \
      $PYTHON setup.py build_ext --inplace >"$OUT/build.log" 2>&1; then
    $PYTHON .ci/check_cuda_build.py 2>&1 | tee -a "$OUT/env.txt"
    if nm -C --defined-only ial_ext/_C*.so | grep -qE "std::moneypunct<char, (true|false)>::id"; then
      echo "ial_ext/_C carries its own copy of libstdc++ (see CC/CXX above): error paths would crash"
      exit 1
    fi
  else
    tail -n 60 "$OUT/build.log"
    exit 1
  fi
fi

if want test; then
  echo "== test"
  parallel=()
  $PYTHON -c "import xdist" 2>/dev/null && parallel=(-n "${TEST_JOBS:-8}")
  timeout "${TEST_TIMEOUT:-420}" $PYTHON -m pytest -p no:cacheprovider -q -rs "${parallel[@]}" \
      tests/test_spn_scan_cuda.py tests/test_superpixel_pool_cuda.py >"$OUT/tests.log" 2>&1 \
    || failed+=(test)
  tail -n 40 "$OUT/tests.log"
fi

if want bench; then
  echo "== bench"
  timeout "${BENCH_TIMEOUT:-300}" $PYTHON -m pytest -p no:cacheprovider -q -k cuda \
      benchmarks/test_bench_copy.py benchmarks/test_bench_spn_scan.py benchmarks/test_bench_superpixel_pool.py \
      --benchmark-json="$OUT/results_cuda.json" >"$OUT/bench.log" 2>&1 || failed+=(bench)
  tail -n 5 "$OUT/bench.log"
  [[ -s "$OUT/results_cuda.json" ]] && $PYTHON benchmarks/report.py "$OUT/results_cuda.json" | tee "$OUT/report.md"
fi

if ((${#failed[@]})); then
  echo "failed: ${failed[*]}"
  exit 1
fi
