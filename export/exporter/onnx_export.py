"""Writes a trained unary + pairwise model as one ONNX file of standard operators.

    export_checkpoint("runs/demo/checkpoints/step_3.pt", "model.onnx")
    export_modules(unary, pairwise, "model.onnx", class_names=[...])

Route: ``torch.onnx.export(dynamo=True)`` with ``torch.ops.ial.spn_scan``
translated by ``spn_onnx.spn_scan_onnx`` into an ONNX Scan; batch, height and
width are dynamic. The written file carries the class names, palette and
input normalisation in its metadata_props (see ``ial_export.metadata``), which is all
the torch-free runner needs.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
import onnx
import torch
from torch import nn

from ial_export import metadata
from ial_export.files import share_like_open
from ial_export.images import IMAGENET_MEAN, IMAGENET_STD
from ial_export.palette import voc_palette

from .deployment_model import DeploymentModel
from .spn_onnx import spn_scan_onnx

DEFAULT_OPSET = 18
# torch 2.13's exporter builds opset 18+ graphs; onnx's converter cannot take them down to
# 17 (the ReduceSum/ReduceMax axes inputs), so 18 is the floor.
MIN_OPSET = 18
# The traced example: any size the networks accept; batch 2 so torch.export does
# not specialise the batch dimension to 1.
EXAMPLE_SHAPE = (2, 3, 64, 80)
STANDARD_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class ExportReport:
    path: str
    opset: int
    num_classes: int
    refinement: str
    max_abs_probability_diff: Optional[float]  # onnxruntime vs eager on one random input; None if not checked


def custom_translation_table() -> dict:
    """What torch.onnx.export needs to translate the project's compiled ops."""
    return {torch.ops.ial.spn_scan.default: spn_scan_onnx}


def non_standard_domains(model: onnx.ModelProto) -> set[str]:
    """Domains of every node (subgraphs such as Scan bodies included) outside the standard ONNX ones."""
    found = {entry.domain for entry in model.opset_import if entry.domain not in STANDARD_DOMAINS}

    def visit(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            if node.domain not in STANDARD_DOMAINS:
                found.add(node.domain)
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    visit(attribute.g)
                for subgraph in attribute.graphs:
                    visit(subgraph)

    visit(model.graph)
    found.update(function.domain for function in model.functions)
    return found


def export_modules(
    unary: nn.Module,
    pairwise: Optional[nn.Module],
    onnx_path: str | os.PathLike,
    *,
    class_names: Optional[Sequence[str]] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    palette: Optional[np.ndarray] = None,
    opset: int = DEFAULT_OPSET,
    source: str = "",
    check: bool = True,
) -> ExportReport:
    """Exports ``DeploymentModel(unary, pairwise)`` to ``onnx_path`` (one file, weights inside).

    The modules are copied to CPU/float32/eval; the caller's modules are left as they were.
    ``class_names`` defaults to "background", "class_1", ...; ``mean``/``std`` to
    ImageNet's (what ``ial_ext.data.normalize_image`` uses); ``palette`` to VOC's.
    With ``check``, the written file is validated (onnx.checker, standard
    domains only) and run once in onnxruntime against PyTorch eager.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, got {opset}")
    model = DeploymentModel(_cpu_copy(unary), _cpu_copy(pairwise) if pairwise is not None else None).eval()
    example = torch.randn(EXAMPLE_SHAPE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        num_classes = model(example)[0].shape[1]
    if class_names is None:
        class_names = ["background"] + [f"class_{i}" for i in range(1, num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names given for a model with {num_classes} classes")
    if num_classes > 256:
        raise ValueError(f"label PNGs hold at most 256 classes, the model has {num_classes}")
    info = metadata.ModelInfo(
        class_names=tuple(class_names),
        palette=voc_palette() if palette is None else np.asarray(palette, dtype=np.uint8),
        mean=tuple(IMAGENET_MEAN if mean is None else mean),
        std=tuple(IMAGENET_STD if std is None else std),
        refinement="unary" if pairwise is None else "pairwise",
        source=source,
    )
    proto = _to_onnx(model, example, opset)
    for key, value in metadata.encode(info).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    _check_structure(proto, opset)
    _save_atomically(proto, os.fspath(onnx_path))
    difference = _parity_on(model, os.fspath(onnx_path)) if check else None
    return ExportReport(os.fspath(onnx_path), opset, num_classes, info.refinement, difference)


def load_checkpoint_modules(checkpoint_path: str | os.PathLike) -> tuple[nn.Module, Optional[nn.Module], dict]:
    """(unary, pairwise or None, checkpoint dict) from a trainer checkpoint (``ial_ext.checkpoint/1``);
    the unary module includes the multi-scale inference the trainer evaluated it with."""
    from ..train.checkpoint import load_segmenter

    return load_segmenter(os.fspath(checkpoint_path))


def export_checkpoint(
    checkpoint_path: str | os.PathLike, onnx_path: str | os.PathLike, *, opset: int = DEFAULT_OPSET,
    check: bool = True,
) -> ExportReport:
    """Exports the unary + pairwise networks of a trainer checkpoint (pairwise absent: unary only)."""
    unary, pairwise, state = load_checkpoint_modules(checkpoint_path)
    source = f"{os.path.basename(os.fspath(checkpoint_path))} (step {state.get('step', '?')})"
    return export_modules(
        unary, pairwise, onnx_path, class_names=state.get("class_names"), opset=opset, source=source, check=check
    )


def _cpu_copy(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module).to(device="cpu", dtype=torch.float32).eval()


@contextlib.contextmanager
def _quiet_exporter():
    """Mutes what torch.onnx prints on every export and that is not about this model
    ("torchvision is not installed", torch-internal FutureWarnings); errors still raise."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        registration.setLevel(level)


def _to_onnx(model: DeploymentModel, example: torch.Tensor, opset: int) -> onnx.ModelProto:
    # Dim.DYNAMIC accepts whatever bounds the networks imply (e.g. H >= 2) instead of
    # failing on a hand-written guess; the sizes stay symbolic in the graph.
    dynamic = torch.export.Dim.DYNAMIC
    with _quiet_exporter():
        program = _export_program(model, example, opset, dynamic)
    return program.model_proto


def _export_program(model: DeploymentModel, example: torch.Tensor, opset: int, dynamic):
    return torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        opset_version=opset,
        input_names=[metadata.INPUT_NAME],
        output_names=list(metadata.OUTPUT_NAMES),
        dynamic_shapes={"images": {0: dynamic, 2: dynamic, 3: dynamic}},
        custom_translation_table=custom_translation_table(),
        external_data=False,
        verbose=False,
    )


def _check_structure(proto: onnx.ModelProto, opset: int) -> None:
    onnx.checker.check_model(proto, full_check=True)
    foreign = non_standard_domains(proto)
    if foreign:
        raise RuntimeError(f"the exported graph uses non-standard ONNX domains {sorted(foreign)}")
    version = next(entry.version for entry in proto.opset_import if entry.domain in STANDARD_DOMAINS)
    if version != opset:
        raise RuntimeError(f"the exported graph has opset {version}, asked for {opset}")


def _save_atomically(proto: onnx.ModelProto, path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".onnx")
    share_like_open(handle)
    os.close(handle)
    try:
        onnx.save_model(proto, temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _parity_on(model: DeploymentModel, path: str) -> float:
    """Max |p_onnxruntime - p_eager| on a random input of a size other than the traced one."""
    import onnxruntime

    images = torch.randn(1, 3, 45, 59, generator=torch.Generator().manual_seed(1))
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (probabilities, _labels) = session.run(None, {metadata.INPUT_NAME: images.numpy()})
    with torch.no_grad():
        expected = model(images)[0].numpy()
    return float(np.abs(probabilities - expected).max())
