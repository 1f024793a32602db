"""ONNX export of a trained unary + pairwise model, and a torch-free deployment runner.

Installed as the package ``ial_export``. Importing it must not import torch: the
deployment runner (``ial_export.deploy``) runs where only numpy and onnxruntime are.
"""
