"""Builds ial_ext._C from csrc/ against the torch already installed.

IAL_EXT_CUDA selects the CUDA kernels: "auto" (default) compiles them when the
installed torch is a CUDA build and nvcc is found, "1" requires them, "0" skips
them. TORCH_CUDA_ARCH_LIST picks the GPU architectures as usual for torch.

The wheel requires exactly the torch release it was compiled against (as
torchvision's do): the C++ ABI changes between releases.
"""
import glob
import importlib
import os
import sys
import sysconfig

from setuptools import find_packages, setup

TORCH_MISSING = (
    "ial_ext compiles its ops against the torch it will run with, and none is installed: "
    "install torch first (the README says how, for CPU and CUDA), then pip install --no-build-isolation ."
)
RUNTIME_REQUIREMENTS = [
    "numpy",
    "scikit-image",
    "pillow",
    "tqdm",
    "pycocotools",
    "onnx",
    "onnxscript",
    "onnxruntime",  # CPU; the gpu extra brings onnxruntime-gpu (see the README)
]


def _installed_torch():
    """The torch of the environment being installed into.

    Under pip's build isolation (the default) that environment's site-packages are hidden
    from this script; its torch is the one the extension must match, so it is looked up
    there and appended after the isolated build tools. Without a torch the build stops
    here, before pip resolves the dependencies (which would download one).
    """
    try:
        import torch

        return torch
    except ImportError as error:
        failure = error
    hidden = [folder for folder in (sysconfig.get_path("platlib"), sysconfig.get_path("purelib"))
              if folder not in sys.path and os.path.isfile(os.path.join(folder, "torch", "__init__.py"))]
    if hidden:
        sys.path.extend(dict.fromkeys(hidden))
        importlib.invalidate_caches()
        try:
            import torch

            return torch
        except ImportError as error:
            failure = error
    if isinstance(failure, ModuleNotFoundError) and failure.name == "torch":
        sys.exit(TORCH_MISSING)
    sys.exit(f"ial_ext: the installed torch does not import: {failure}")


torch = _installed_torch()
from torch.utils import cpp_extension  # noqa: E402  (needs the torch found above)


def _want_cuda() -> bool:
    mode = os.environ.get("IAL_EXT_CUDA", "auto").strip().lower()
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
    # export/ holds the ONNX exporter, ial_ext.export (torch), and the torch-free runner with what
    # training shares with it, ial_export; export/pyproject.toml installs the runner on its own.
    packages=find_packages(include=["ial_ext*"]) + ["ial_ext.export", "ial_export"],
    package_dir={"ial_ext.export": "export/exporter", "ial_export": "export/ial_export"},
    install_requires=[f"torch=={torch.__version__.split('+')[0]}"] + RUNTIME_REQUIREMENTS,
    ext_modules=[_extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension},
)
