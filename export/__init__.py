"""ONNX export of a trained unary + pairwise model, and a torch-free deployment runner.

Installed as the package ``ial_export``. Importing it must not import torch: the
deployment runner runs where only numpy, Pillow and onnxruntime are.

- ``ial_export.onnx_export``: ``export_checkpoint``, ``export_modules`` (needs torch and ial_ext).
- ``ial_export.deploy``: the ``ial-deploy`` runner, ``main(argv)`` (numpy, Pillow, onnxruntime only).
- ``ial_export.metadata``, ``ial_export.palette``: shared by both, torch-free.
"""
