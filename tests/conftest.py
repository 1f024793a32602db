import re

import pytest
import torch

import ial_ext  # noqa: F401  (registers the ops)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def cuda_available() -> bool:
    return torch.cuda.is_available() and ial_ext.built_with_cuda()


requires_cuda = pytest.mark.skipif(
    not cuda_available(), reason="needs a CUDA device and a CUDA build of ial_ext"
)


def assert_sanitizer_clean(tool: str, script: str) -> None:
    """Runs `script` in a fresh Python under compute-sanitizer's `tool`; fails on any report."""
    import os
    import subprocess
    import sys

    result = subprocess.run(
        ["compute-sanitizer", f"--tool={tool}", "--error-exitcode=1", sys.executable, "-c", script],
        capture_output=True, text=True, env=dict(os.environ), timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # memcheck and synccheck end with "ERROR SUMMARY: 0 errors", racecheck with
    # "RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)".
    assert re.search(r"ERROR SUMMARY: 0 errors|SUMMARY: 0 hazards displayed \(0 errors, 0 warnings\)", result.stdout), (
        result.stdout[-4000:]
    )
