"""Loading a local ImageNet state_dict (torchvision format) into a backbone.

Nothing is downloaded: the user names a file. The backbone's parameters and
buffers must all be present with matching shapes (strict); the classifier
(``fc.*``) is ignored, and ``num_batches_tracked`` counters may be absent
(torchvision's published files have none). A backbone whose layers differ from
torchvision's (VGG16's fc6/fc7 as convolutions) converts the file's state with its
``from_imagenet_state_dict``.
"""
import os
from collections.abc import Mapping

import torch
from torch import Tensor, nn

IGNORED_PREFIXES = ("fc.",)
OPTIONAL_SUFFIXES = ("num_batches_tracked",)
MAX_LISTED_KEYS = 8


def _listed(keys) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:MAX_LISTED_KEYS])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > MAX_LISTED_KEYS else "")


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Reads a state_dict file (a mapping of names to tensors) without running pickled code."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises several types for a non-checkpoint file
        raise ValueError(f"{path} is not a readable PyTorch state_dict file: {error}") from error
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in loaded.items()
    ):
        summary = (f"a mapping with keys {_listed(map(str, loaded.keys()))}"
                   if isinstance(loaded, Mapping) else type(loaded).__name__)
        raise ValueError(
            f"{path} does not hold a state_dict (a mapping of parameter names to tensors, as "
            f"torchvision saves them); found {summary}"
        )
    return dict(loaded)


def load_backbone_weights(backbone: nn.Module, path: str | os.PathLike) -> None:
    """Copies the weights in ``path`` into ``backbone``; errors name every mismatch.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a state_dict, or missing/unexpected keys or wrong shapes.
    """
    given = read_state_dict(path)
    convert = getattr(backbone, "from_imagenet_state_dict", None)
    if convert is not None:
        try:
            given = convert(given)
        except ValueError as error:
            raise ValueError(f"weights in {os.fspath(path)} do not fit the {type(backbone).__name__} backbone: {error}") from error
    given = {k: v for k, v in given.items() if not k.startswith(IGNORED_PREFIXES)}
    expected = backbone.state_dict()
    missing = {k for k in expected if k not in given and not k.endswith(OPTIONAL_SUFFIXES)}
    unexpected = set(given) - set(expected)
    wrong_shapes = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in sorted(given.items()) if k in expected and v.shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listed(unexpected)}")
    if wrong_shapes:
        problems.append(f"shape mismatches: {_listed(wrong_shapes)}")
    if problems:
        raise ValueError(
            f"weights in {os.fspath(path)} do not fit the {type(backbone).__name__} backbone "
            f"({'; '.join(problems)})"
        )
    merged = {k: given.get(k, v) for k, v in expected.items()}
    backbone.load_state_dict(merged, strict=True)
