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

# The CUDA compile check: nvcc on every csrc/**/*.cu against the installed torch's
# headers, for Hopper unless TORCH_CUDA_ARCH_LIST says otherwise. It needs nvcc but
# neither a GPU nor a (multi-GB) CUDA build of torch.
CUDA_HOME ?= /usr/local/cuda
TORCH_CUDA_ARCH_LIST ?= 9.0

.PHONY: demo test bench cuda-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.deps: $(BIN)/python pyproject.toml
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install "$(TORCH_SPEC)"
	$(BIN)/pip install setuptools wheel pybind11 ninja
	touch $@

$(VENV)/.built: $(VENV)/.deps $(SOURCES)
	$(BIN)/pip install --no-build-isolation -e ".[dev]"
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

cuda-check: $(VENV)/.deps
	CUDA_HOME=$(CUDA_HOME) TORCH_CUDA_ARCH_LIST="$(TORCH_CUDA_ARCH_LIST)" $(BIN)/python .ci/compile_cuda.py

clean:
	rm -rf build ial_ext/*.so $(VENV)/.built
