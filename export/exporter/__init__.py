"""ONNX export of a trained unary + pairwise model: ``ial_ext.export`` (needs torch).

Its source lives in export/exporter/ beside the torch-free runner (export/ial_export/), which
reads what this writes. The model runs in onnxruntime; ``ial-deploy`` segments images with it.

- ``export_checkpoint(checkpoint_path, onnx_path, *, opset=18, check=True) -> ExportReport``
- ``export_modules(unary, pairwise, onnx_path, *, class_names=None, ...) -> ExportReport``
"""
from .onnx_export import (
    DEFAULT_OPSET,
    ExportReport,
    custom_translation_table,
    export_checkpoint,
    export_modules,
    load_checkpoint_modules,
    non_standard_domains,
)

__all__ = [
    "DEFAULT_OPSET", "ExportReport", "custom_translation_table", "export_checkpoint", "export_modules",
    "load_checkpoint_modules", "non_standard_domains",
]
