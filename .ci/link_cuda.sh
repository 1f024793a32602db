#!/usr/bin/env bash
# The extension built against a CUDA build of torch in its own environment, linked and imported
# (no GPU needed). A CUDA torch takes several GB of disk: with CUDA_LINK=if-space a machine that
# lacks them reports so and stops here, after cuda-compile has compiled every CUDA source.
set -euo pipefail
: "${CUDA_VENV:?}" "${CUDA_TORCH_SPEC:?}" "${CUDA_VENV_MIN_FREE_GB:?}" "${CUDA_BUILD_DIR:?}"
: "${CUDA_HOME:?}" "${TORCH_CUDA_ARCH_LIST:?}" "${PYTHON:=python3}" "${CUDA_LINK:=always}"

test -x "$CUDA_VENV/bin/python" || "$PYTHON" -m venv "$CUDA_VENV"
if ! "$CUDA_VENV/bin/python" -c "import torch; assert torch.version.cuda" 2>/dev/null; then
    free_gb=$(df -Pk "$CUDA_VENV" | awk 'NR == 2 { print int($4 / 1048576) }')
    if [ "$free_gb" -lt "$CUDA_VENV_MIN_FREE_GB" ]; then
        message="cuda-check: $CUDA_TORCH_SPEC needs about $CUDA_VENV_MIN_FREE_GB GB free in $CUDA_VENV, $free_gb GB are"
        if [ "$CUDA_LINK" = if-space ]; then
            echo "$message: link against a CUDA torch SKIPPED (the CUDA sources compiled above)" >&2
            exit 0
        fi
        echo "$message" >&2
        exit 1
    fi
    echo "$CUDA_VENV/bin/pip install --no-cache-dir $CUDA_TORCH_SPEC numpy"
    "$CUDA_VENV/bin/pip" install --no-cache-dir "$CUDA_TORCH_SPEC" numpy
fi
"$CUDA_VENV/bin/pip" install --no-cache-dir setuptools wheel pybind11 ninja
venv_bin=$(cd "$CUDA_VENV/bin" && pwd)
check_script=$(pwd)/.ci/check_cuda_build.py
rm -rf "$CUDA_BUILD_DIR" && mkdir -p "$CUDA_BUILD_DIR/src"
git ls-files -co --exclude-standard | tar -T - -cf - | tar -xf - -C "$CUDA_BUILD_DIR/src"
(cd "$CUDA_BUILD_DIR/src" && IAL_EXT_CUDA=1 MAX_JOBS=2 CUDA_HOME="$CUDA_HOME" \
    TORCH_CUDA_ARCH_LIST="$TORCH_CUDA_ARCH_LIST" \
    "$venv_bin/pip" wheel --no-build-isolation --no-deps -w ../dist .)
"$CUDA_VENV/bin/pip" install --no-deps --force-reinstall "$CUDA_BUILD_DIR"/dist/*.whl
(cd "$CUDA_BUILD_DIR" && "$venv_bin/python" "$check_script")
