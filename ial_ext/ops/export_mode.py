"""Whether a model is being traced for export, where modules run the ops' torch-op composites."""
import torch


def exporting() -> bool:
    """Whether a model is being traced for export (torch.export or torch.onnx.export)."""
    return torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()
