# Two entry points for a fresh machine: `make demo` and `make test`. Each
# creates the virtual environment, installs torch and the project, and builds
# the extension when its sources changed.
#
# Override TORCH_SPEC to pick another torch, or point VENV at an environment
# that already has the torch you want (a CUDA build, say): torch is only
# installed when the environment cannot import it.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
SOURCES := $(shell find csrc -type f) setup.py pyproject.toml

# CUDA checks, for Hopper unless TORCH_CUDA_ARCH_LIST says otherwise; neither needs a GPU.
#   cuda-compile  nvcc on every csrc/**/*.cu against the installed (CPU) torch's headers:
#                 seconds, no CUDA torch needed.
#   cuda-check    that, then the whole extension built against a CUDA build of torch in
#                 its own environment (about 5.5 GB), linked and imported (.ci/link_cuda.sh).
#                 CUDA_LINK=if-space skips the link, saying so, on a disk without that room.
CUDA_VENV ?= .venv-cuda
CUDA_TORCH_SPEC ?= torch==2.14.1
CUDA_VENV_MIN_FREE_GB ?= 7
CUDA_HOME ?= /usr/local/cuda
TORCH_CUDA_ARCH_LIST ?= 9.0
CUDA_BUILD_DIR := .build-cuda
CUDA_LINK ?= always

.PHONY: demo test bench cuda-compile cuda-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# pydensecrf2 (the crf extra) builds from its sdist with its own build requirements, so it is
# installed with build isolation before the project's own build, which has none.
$(VENV)/.deps: $(BIN)/python pyproject.toml
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install "$(TORCH_SPEC)"
	$(BIN)/pip install setuptools wheel ninja
	$(BIN)/pip install "pydensecrf2; python_version < '3.13'"
	touch $@

$(VENV)/.built: $(VENV)/.deps $(SOURCES) export/pyproject.toml
	$(BIN)/pip install --no-build-isolation -e ".[dev,crf]"
	touch $@

# The whole paper on the built-in synthetic set: seeds, then 5 EM steps; prints the
# Table 5 rows, writes outputs/demo/{table.csv,table.json,figures/,checkpoints/}.
demo: $(VENV)/.built
	$(BIN)/ial train --run.output_dir outputs/demo

test: $(VENV)/.built
	$(BIN)/python -m pytest tests

bench: $(VENV)/.built
	$(BIN)/python -m pytest benchmarks --benchmark-json=benchmarks/results.json
	$(BIN)/python benchmarks/report.py benchmarks/results.json

cuda-compile: $(VENV)/.deps
	CUDA_HOME=$(CUDA_HOME) TORCH_CUDA_ARCH_LIST="$(TORCH_CUDA_ARCH_LIST)" $(BIN)/python .ci/compile_cuda.py

cuda-check: cuda-compile
	CUDA_VENV=$(CUDA_VENV) CUDA_TORCH_SPEC="$(CUDA_TORCH_SPEC)" CUDA_VENV_MIN_FREE_GB=$(CUDA_VENV_MIN_FREE_GB) \
		CUDA_BUILD_DIR=$(CUDA_BUILD_DIR) CUDA_HOME=$(CUDA_HOME) TORCH_CUDA_ARCH_LIST="$(TORCH_CUDA_ARCH_LIST)" \
		PYTHON=$(PYTHON) CUDA_LINK=$(CUDA_LINK) bash .ci/link_cuda.sh

clean:
	rm -rf build $(CUDA_BUILD_DIR) ial_ext/*.so $(VENV)/.built
