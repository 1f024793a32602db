"""Builds ial_ext._C from csrc/ against the torch already installed.

IAL_EXT_CUDA selects the CUDA kernels: "auto" (default) compiles them when the
installed torch is a CUDA build and nvcc is found, "1" requires them, "0" skips
them. TORCH_CUDA_ARCH_LIST picks the GPU architectures as usual for torch.
"""
import glob
import os
import sys

from setuptools import find_packages, setup
from torch.utils import cpp_extension


def _want_cuda() -> bool:
    mode = os.environ.get("IAL_EXT_CUDA", "auto").strip().lower()
    import torch

    available = torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
    if mode in ("0", "false", "no", "off"):
        return False
    if mode in ("1", "true", "yes", "on"):
        if not available:
            raise RuntimeError(
                "IAL_EXT_CUDA=1 but CUDA kernels cannot be built: "
                f"torch.version.cuda={torch.version.cuda!r}, CUDA_HOME={cpp_extension.CUDA_HOME!r}"
            )
        return True
    if mode != "auto":
        raise RuntimeError(f"IAL_EXT_CUDA must be auto, 0 or 1, got {mode!r}")
    return available


def _openmp_flags() -> list:
    """at::parallel_for is a header template: compiled without OpenMP it silently runs
    on one thread, whatever torch.set_num_threads says. GCC/Clang spelling, Linux only."""
    import torch

    if not sys.platform.startswith("linux") or "OpenMP" not in torch.__config__.parallel_info():
        return []
    return ["-fopenmp"]


def _extension():
    # setuptools wants paths relative to this file; torch picks the C++ standard.
    os.chdir(os.path.dirname(os.path.abspath(__file__)))
    sources = sorted(glob.glob(os.path.join("csrc", "**", "*.cpp"), recursive=True))
    openmp = _openmp_flags()
    cxx_flags = ["-O3"] + openmp
    link_flags = openmp
    if not _want_cuda():
        return cpp_extension.CppExtension(
            "ial_ext._C", sources, extra_compile_args={"cxx": cxx_flags}, extra_link_args=link_flags
        )
    sources += sorted(glob.glob(os.path.join("csrc", "**", "*.cu"), recursive=True))
    return cpp_extension.CUDAExtension(
        "ial_ext._C",
        sources,
        define_macros=[("IAL_WITH_CUDA", None)],
        extra_compile_args={
            "cxx": cxx_flags,
            "nvcc": ["-O3", "-lineinfo"] + [f"-Xcompiler={flag}" for flag in openmp],
        },
        extra_link_args=link_flags,
    )


setup(
    # export/ holds the ONNX exporter and the deployment runner; it installs as
    # ial_export, a package of its own so the runner can be imported without torch.
    packages=find_packages(include=["ial_ext*"]) + ["ial_export"],
    package_dir={"ial_export": "export"},
    ext_modules=[_extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension},
)
