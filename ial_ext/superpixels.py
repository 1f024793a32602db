"""Felzenszwalb superpixels for mining confident regions and the smoothness loss.

The paper (section 3.3) segments every training image into superpixels with
Felzenszwalb and Huttenlocher's graph method and reuses them at every EM step,
so they are computed once per image and cached on disk (``SuperpixelCache``).
The region confidence network pools backbone features per superpixel at the
backbone's stride: ``downsample_labels`` brings a label map there.

Choosing the parameters. ``scale`` and ``min_size`` are in pixels of the image
as given (scikit-image's convention): ``scale`` sets the preferred component
size (larger = fewer, bigger segments), ``min_size`` merges away anything
smaller. The defaults (100, 0.8, 20) give a few hundred segments on a 321x321
natural image (200-500 on scikit-image's sample pictures resized to 321x321)
and 50-90 on the 96x96 synthetic images. The count grows more slowly than the
image area, and scaling ``scale`` and ``min_size`` by the area ratio does not
keep it constant (scaled from 321x321 down to 96x96 they give 440-1350
segments on the samples instead of 200-500), so pick the parameters per image
size and check the counts with ``felzenszwalb_superpixels(...).max() + 1``.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from ial_export.files import share_like_open
from torch import Tensor

__all__ = ["SuperpixelParams", "felzenszwalb_superpixels", "downsample_labels", "SuperpixelCache"]


@dataclass(frozen=True)
class SuperpixelParams:
    """Parameters of ``skimage.segmentation.felzenszwalb`` (see the module notes).

    Attributes:
        scale: preferred component size in pixels; larger gives fewer segments.
        sigma: width of the Gaussian smoothing applied before segmenting.
        min_size: smallest segment in pixels (smaller ones are merged).
    """

    scale: float = 100.0
    sigma: float = 0.8
    min_size: int = 20

    def __post_init__(self):
        if not self.scale > 0:
            raise ValueError(f"SuperpixelParams.scale must be > 0, got {self.scale}")
        if not self.sigma >= 0:
            raise ValueError(f"SuperpixelParams.sigma must be >= 0, got {self.sigma}")
        if int(self.min_size) != self.min_size or self.min_size < 1:
            raise ValueError(f"SuperpixelParams.min_size must be an integer >= 1, got {self.min_size}")

    def key(self) -> str:
        """A short stable digest of the parameters (part of every cache key)."""
        text = repr(sorted((name, float(value)) for name, value in asdict(self).items()))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _check_rgb(rgb) -> np.ndarray:
    if isinstance(rgb, torch.Tensor):
        rgb = rgb.detach().cpu().numpy()
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be a uint8 array of shape (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"rgb must not be empty, got shape {rgb.shape}")
    return rgb


def felzenszwalb_superpixels(rgb, params: SuperpixelParams = SuperpixelParams()) -> np.ndarray:
    """Superpixels of one image.

    Args:
        rgb: uint8 (H, W, 3) array (or tensor).
        params: the segmentation parameters.

    Returns:
        int64 (H, W) ids, contiguous 0..K-1 numbered in order of first
        appearance in raster order; deterministic for a given image.
    """
    from skimage.segmentation import felzenszwalb  # heavy import, only where needed

    rgb = _check_rgb(rgb)
    raw = felzenszwalb(rgb, scale=params.scale, sigma=params.sigma, min_size=int(params.min_size))
    _, first, inverse = np.unique(raw.ravel(), return_index=True, return_inverse=True)
    # Renumber by first appearance so ids do not depend on skimage's numbering.
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inverse].reshape(raw.shape)


def downsample_labels(labels: Tensor, stride: int) -> Tensor:
    """Brings a label map to a feature map's stride by majority vote.

    Args:
        labels: (B, H, W) int64 segment ids, -1 = ignored.
        stride: cell side in pixels (the feature map's output stride).

    Returns:
        (B, ceil(H / stride), ceil(W / stride)) int64: each cell takes the id
        of most of its pixels, -1 ignored (ties go to the smaller id); a cell
        with no labelled pixel is -1. Border cells cover the pixels left over.
    """
    if not isinstance(labels, torch.Tensor) or labels.dim() != 3 or labels.dtype != torch.int64:
        raise ValueError(
            f"labels must be an int64 tensor (B, H, W), got "
            f"{getattr(labels, 'dtype', type(labels))} {tuple(getattr(labels, 'shape', ()))}"
        )
    if int(stride) != stride or stride < 1:
        raise ValueError(f"stride must be an integer >= 1, got {stride}")
    if (labels < -1).any():
        raise ValueError("labels must be -1 (ignored) or >= 0")
    b, h, w = labels.shape
    oh, ow = -(-h // stride), -(-w // stride)
    if stride == 1:
        return labels.clone()
    padded = labels.new_full((b, oh * stride, ow * stride), -1)
    padded[:, :h, :w] = labels
    cells = padded.view(b, oh, stride, ow, stride).permute(0, 1, 3, 2, 4).reshape(b, oh, ow, stride * stride)
    values, _ = cells.sort(dim=-1)
    # Length of the run of equal ids ending at each position of the sorted cell.
    position = torch.arange(values.shape[-1], device=labels.device).expand_as(values)
    starts = torch.ones_like(values, dtype=torch.bool)
    starts[..., 1:] = values[..., 1:] != values[..., :-1]
    run_start = torch.where(starts, position, torch.zeros_like(position)).cummax(dim=-1).values
    run_length = torch.where(values >= 0, position - run_start + 1, torch.zeros_like(position))
    # argmax takes the first maximum: among tied ids the smaller one (sorted order).
    best = run_length.argmax(dim=-1, keepdim=True)
    out = values.gather(-1, best).squeeze(-1)
    return torch.where(run_length.gather(-1, best).squeeze(-1) > 0, out, torch.full_like(out, -1))


_MAGIC = b"IALSPX1\n"
_DIGEST = 32  # sha256 of the payload


class SuperpixelCache:
    """Superpixels computed once per image and kept in ``directory``.

    An entry's file name holds the image name (sanitised), a digest of its
    pixels and a digest of the parameters, so a changed image or new
    parameters never hit an old entry. Files are written to a temporary file
    in the same directory and moved into place with ``os.replace`` (atomic):
    a reader never sees half a file, and two processes computing the same
    entry both write the same content, the last rename wins. Every read checks
    a checksum, the shape and the ids; an entry that fails (truncated,
    garbage, from another image) is recomputed and rewritten, never trusted.

    Attributes:
        hits, misses: counts of ``get`` calls served from disk / computed.
    """

    def __init__(self, directory, params: SuperpixelParams = SuperpixelParams()):
        self.directory = Path(directory)
        self.params = params
        self.directory.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    def path(self, name: str, rgb) -> Path:
        """Where the entry of image ``name`` with pixels ``rgb`` lives."""
        rgb = _check_rgb(rgb)
        pixels = hashlib.sha256()
        pixels.update(repr(rgb.shape).encode())
        pixels.update(np.ascontiguousarray(rgb).tobytes())
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name))[:80] or "image"
        return self.directory / f"{safe}-{pixels.hexdigest()[:16]}-{self.params.key()}.spx"

    def get(self, name: str, rgb) -> np.ndarray:
        """The superpixels of image ``name`` (int64 (H, W), ids 0..K-1)."""
        rgb = _check_rgb(rgb)
        path = self.path(name, rgb)
        labels = self._read(path, rgb.shape[:2])
        if labels is not None:
            self.hits += 1
            return labels
        self.misses += 1
        labels = felzenszwalb_superpixels(rgb, self.params)
        self._write(path, labels)
        return labels

    @staticmethod
    def _read(path: Path, shape) -> np.ndarray | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        head = len(_MAGIC) + _DIGEST
        if len(data) <= head or not data.startswith(_MAGIC):
            return None
        payload = data[head:]
        if hashlib.sha256(payload).digest() != data[len(_MAGIC):head]:
            return None
        try:
            labels = np.frombuffer(payload, dtype="<i4")
        except ValueError:
            return None
        if labels.size != shape[0] * shape[1]:
            return None
        labels = labels.astype(np.int64).reshape(shape)
        if labels.min() != 0 or np.unique(labels).size != labels.max() + 1:
            return None
        return labels

    def _write(self, path: Path, labels: np.ndarray) -> None:
        payload = labels.astype("<i4").tobytes()
        handle = tempfile.NamedTemporaryFile(dir=self.directory, prefix=".tmp-", suffix=".spx", delete=False)
        try:
            with handle:
                handle.write(_MAGIC)
                handle.write(hashlib.sha256(payload).digest())
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
                share_like_open(handle.fileno())  # NamedTemporaryFile makes it 0600
            os.replace(handle.name, path)
        except BaseException:
            try:
                os.unlink(handle.name)
            except FileNotFoundError:
                pass
            raise
