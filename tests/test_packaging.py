"""How the project installs: the torch-free runner package, its boundaries and what each install pulls in."""
import ast
import importlib.metadata
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import torch

import ial_export
from ial_ext import data
from ial_export import images, palette

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUNNER_SOURCES = sorted((ROOT / "export" / "ial_export").glob("*.py"))


def imported_top_level_names(path: pathlib.Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_runner_package_imports_neither_torch_nor_ial_ext():
    assert RUNNER_SOURCES, "export/ial_export/ holds the runner"
    for path in RUNNER_SOURCES:
        imported = imported_top_level_names(path)
        assert not imported & {"torch", "ial_ext", "onnx", "onnxscript"}, (path.name, imported)


def test_training_uses_the_runners_image_reading_palette_and_normalisation():
    assert data.image_io.read_rgb is images.read_rgb
    np.testing.assert_array_equal(data.VOC_PALETTE, palette.voc_palette())
    assert (data.IMAGENET_MEAN, data.IMAGENET_STD) == (images.IMAGENET_MEAN, images.IMAGENET_STD)
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert torch.equal(data.normalize_image(rgb), torch.from_numpy(images.normalize(rgb)))
    assert torch.equal(data.normalize_image(torch.from_numpy(rgb)), data.normalize_image(rgb))


def test_the_exporter_is_part_of_ial_ext_and_lives_in_export():
    from ial_ext import export

    assert pathlib.Path(export.__file__).parent.name in ("exporter", "export")
    assert callable(export.export_checkpoint) and callable(export.export_modules)


def test_the_main_package_requires_its_torch_and_the_cpu_runtime():
    requirements = importlib.metadata.requires("ial_ext")
    release = torch.__version__.split("+")[0]
    assert f"torch=={release}" in requirements
    assert "onnxruntime" in requirements
    gpu = [r for r in requirements if r.startswith("onnxruntime-gpu")]
    assert gpu and all('extra == "gpu"' in r for r in gpu), requirements


def test_the_runner_distribution_holds_the_runner_only(tmp_path):
    # Built from a copy of its pyproject and package alone: it needs nothing else of the tree.
    source = tmp_path / "export"
    shutil.copytree(ROOT / "export" / "ial_export", source / "ial_export", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "export" / "pyproject.toml", source)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
         str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("ial_deploy-*.whl")
    assert wheel.name.startswith(f"ial_deploy-{ial_export.__version__}-py3-none-any")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    packages = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert packages == {"ial_export"}
    modules = {os.path.basename(name) for name in names if name.startswith("ial_export/")}
    assert modules == {path.name for path in RUNNER_SOURCES}
    requires = [line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist: ")]
    unconditional = sorted(r for r in requires if "extra ==" not in r)
    assert unconditional == ["numpy", "onnxruntime", "pillow"]
    assert 'onnxruntime-gpu; extra == "gpu"' in requires
    assert "ial-deploy = ial_export.deploy:main" in entry_points


def test_building_without_a_torch_stops_at_once_with_the_remedy():
    # setup.py in an interpreter where importing torch fails, as in a fresh environment.
    script = textwrap.dedent("""
        import runpy, sys

        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "torch":
                    raise ModuleNotFoundError("No module named 'torch'", name="torch")

        sys.meta_path.insert(0, NoTorch())
        sys.argv = ["setup.py", "--version"]
        runpy.run_path("setup.py", run_name="__main__")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "install torch first" in lines[0] and "--no-build-isolation" in lines[0]
