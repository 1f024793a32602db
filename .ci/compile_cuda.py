"""Compiles every CUDA source in csrc/ with nvcc against the installed torch's headers.

A CPU build of torch ships the ATen/c10 CUDA headers but not the CUDA libraries, so
this proves in seconds that the kernels compile (to SASS for TORCH_CUDA_ARCH_LIST,
default 9.0) on a machine without a GPU or a multi-GB CUDA torch. Linking is
`make cuda-check`'s next step, running them benchmarks/gpu_run.sh's on a GPU machine.
The flags mirror those torch's BuildExtension gives nvcc in setup.py.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils import cpp_extension

ROOT = Path(__file__).resolve().parent.parent


def cuda_home() -> Path:
    home = os.environ.get("CUDA_HOME") or cpp_extension.CUDA_HOME or "/usr/local/cuda"
    if not (Path(home) / "include" / "cuda_runtime_api.h").is_file():
        sys.exit(f"no CUDA toolkit headers under CUDA_HOME={home}: set CUDA_HOME to the toolkit root")
    return Path(home)


def arch_flags() -> list:
    """TORCH_CUDA_ARCH_LIST entries such as "9.0" or "8.6+PTX" as -gencode flags."""
    flags = []
    for entry in re.split(r"[ ;]+", os.environ.get("TORCH_CUDA_ARCH_LIST", "9.0").strip()):
        match = re.fullmatch(r"(\d+)\.(\d+)([a-z]?)(\+PTX)?", entry)
        if not match:
            sys.exit(f"TORCH_CUDA_ARCH_LIST entry {entry!r} is not like 9.0 or 8.6+PTX")
        arch = match.group(1) + match.group(2) + match.group(3)
        flags.append(f"-gencode=arch=compute_{arch},code=sm_{arch}")
        if match.group(4):
            flags.append(f"-gencode=arch=compute_{arch},code=compute_{arch}")
    return flags


def write_cmake_macros_shim(build: Path) -> Path:
    """The one CUDA header a CPU torch lacks is CMake-generated; in a CUDA torch it holds
    just this define (torch's libraries are always shared)."""
    header = build / "shim" / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
    header.parent.mkdir(parents=True)
    header.write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
    return build / "shim"


def nvcc_command(nvcc: str, home: Path, shim: Path, source: Path, obj: Path) -> list:
    # The shim comes last so that a torch that has the real header uses it.
    includes = [str(ROOT / "csrc"), str(home / "include")] + cpp_extension.include_paths() + [str(shim)]
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    return (
        [nvcc, "-c", str(source), "-o", str(obj), "-std=c++17", "-O3", "-lineinfo"]
        + [f"-I{path}" for path in includes]
        + cpp_extension.COMMON_NVCC_FLAGS
        + arch_flags()
        + ["-Xptxas", "-v", "--compiler-options", "-fPIC", "-DIAL_WITH_CUDA", "-DTORCH_API_INCLUDE_EXTENSION_H",
           "-DTORCH_EXTENSION_NAME=_C", f"-D_GLIBCXX_USE_CXX11_ABI={abi}"]
    )


def compiled_kernels(ptxas_report: str) -> list:
    """[architecture, registers] for each entry function ptxas compiled to SASS:
    a source without any has compiled no device code."""
    kernels = []
    for line in ptxas_report.splitlines():
        entry = re.search(r"Compiling entry function '\S+' for '(sm_\w+)'", line)
        if entry:
            kernels.append([entry.group(1), None])
        registers = re.search(r"Used (\d+) registers", line)
        if registers and kernels and kernels[-1][1] is None:
            kernels[-1][1] = int(registers.group(1))
    return kernels


def main() -> None:
    home = cuda_home()
    nvcc = shutil.which("nvcc") or str(home / "bin" / "nvcc")
    sources = sorted((ROOT / "csrc").rglob("*.cu"))
    if not sources:
        sys.exit("no .cu sources under csrc/")
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    print(f"nvcc: {version.strip().splitlines()[-1]}; torch headers {torch.__version__}; {' '.join(arch_flags())}")
    with tempfile.TemporaryDirectory() as build:
        shim = write_cmake_macros_shim(Path(build))
        for source in sources:
            obj = Path(build) / (source.stem + ".o")
            compiled = subprocess.run(nvcc_command(nvcc, home, shim, source, obj), capture_output=True, text=True)
            if compiled.returncode != 0:
                sys.stderr.write(compiled.stdout + compiled.stderr)
                sys.exit(f"nvcc failed on {source.relative_to(ROOT)}")
            kernels = compiled_kernels(compiled.stdout + compiled.stderr)
            if not kernels:
                sys.exit(f"{source.relative_to(ROOT)} compiled without any device kernel")
            registers = sorted(count for _, count in kernels if count is not None)
            register_range = f"{registers[0]}-{registers[-1]} registers" if registers else "registers unreported"
            print(f"  {source.relative_to(ROOT)}: {len(kernels)} kernels for "
                  f"{', '.join(sorted({arch for arch, _ in kernels}))}, {register_range}, "
                  f"{obj.stat().st_size // 1024} KiB")
    print(f"CUDA compile OK: {len(sources)} sources")


if __name__ == "__main__":
    main()
