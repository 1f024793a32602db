"""What an exported model tells the runner about itself: ONNX ``metadata_props`` (string pairs).

Shared by the exporter (writes) and the runner (reads); torch-free.
"""
import json
from dataclasses import dataclass

import numpy as np

from .palette import voc_palette

FORMAT = "ial_ext.onnx/1"
INPUT_NAME = "images"
OUTPUT_NAMES = ("probabilities", "labels")

FORMAT_KEY = "ial_ext.format"
CLASS_NAMES_KEY = "ial_ext.class_names"
PALETTE_KEY = "ial_ext.palette"
MEAN_KEY = "ial_ext.normalization.mean"
STD_KEY = "ial_ext.normalization.std"
REFINEMENT_KEY = "ial_ext.refinement"
SOURCE_KEY = "ial_ext.source"


class ModelMetadataError(ValueError):
    """The ONNX file is readable but is not an ial_ext segmentation model."""


@dataclass(frozen=True)
class ModelInfo:
    """How to feed the model and draw its output.

    Images go in as float32 (N, 3, H, W): RGB on the 0-1 scale, minus ``mean``, over ``std``
    (per channel), with ``ial_export.images.normalize``, which training uses too.
    """

    class_names: tuple
    palette: np.ndarray  # (256, 3) uint8, row l is label l's colour
    mean: tuple
    std: tuple
    refinement: str  # "pairwise" (unary + SPN refinement) or "unary"
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def encode(info: ModelInfo) -> dict:
    """ModelInfo -> {key: string} for onnx metadata_props."""
    return {
        FORMAT_KEY: FORMAT,
        CLASS_NAMES_KEY: json.dumps(list(info.class_names)),
        PALETTE_KEY: json.dumps(np.asarray(info.palette, dtype=np.uint8).tolist()),
        MEAN_KEY: json.dumps([float(v) for v in info.mean]),
        STD_KEY: json.dumps([float(v) for v in info.std]),
        REFINEMENT_KEY: info.refinement,
        SOURCE_KEY: info.source,
    }


def decode(props: dict, where: str) -> ModelInfo:
    """{key: string} read from a model -> ModelInfo; ModelMetadataError naming ``where`` if not ours."""
    if props.get(FORMAT_KEY) != FORMAT:
        raise ModelMetadataError(
            f"{where} is not an ial_ext segmentation model: metadata {FORMAT_KEY!r} is "
            f"{props.get(FORMAT_KEY)!r}, expected {FORMAT!r} (export it with `ial export`)"
        )
    try:
        class_names = tuple(json.loads(props[CLASS_NAMES_KEY]))
        # A model without a palette is drawn with VOC's, the project's default.
        palette = np.asarray(json.loads(props[PALETTE_KEY]), dtype=np.uint8) if PALETTE_KEY in props else voc_palette()
        mean = tuple(float(v) for v in json.loads(props[MEAN_KEY]))
        std = tuple(float(v) for v in json.loads(props[STD_KEY]))
    except (KeyError, ValueError, TypeError) as error:
        raise ModelMetadataError(f"{where}: ial_ext metadata is incomplete or malformed: {error!r}") from error
    if palette.shape != (256, 3) or len(mean) != 3 or len(std) != 3 or not class_names:
        raise ModelMetadataError(
            f"{where}: ial_ext metadata has a palette of shape {palette.shape} (expected (256, 3)), "
            f"{len(mean)} mean and {len(std)} std values (expected 3 each), {len(class_names)} class names"
        )
    return ModelInfo(class_names, palette, mean, std, props.get(REFINEMENT_KEY, "?"), props.get(SOURCE_KEY, ""))
