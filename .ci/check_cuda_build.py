"""Checks that the installed ial_ext was built with CUDA kernels for every op.

Runs without a GPU: importing the extension resolves every CUDA symbol it links
against, and the dispatcher lists a CUDA kernel for each registered op.
"""
import sys

import torch

import ial_ext

if not ial_ext.built_with_cuda():
    sys.exit("ial_ext was built without its CUDA kernels")
ops = [name for name in torch._C._dispatch_get_all_op_names() if name.startswith("ial::")]
missing = [op for op in ops if not torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA")]
if not ops or missing:
    sys.exit(f"ops without a CUDA kernel: {missing or 'no ial ops registered'}")
print(f"CUDA build OK: torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"{len(ops)} ops with CUDA kernels: {', '.join(sorted(ops))}; GPU present: {torch.cuda.is_available()}")
