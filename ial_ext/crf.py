"""Optional fully connected CRF (Kraehenbuehl and Koltun 2011) over class scores, as PSA and IRN refine CAMs.

Needs the `crf` extra (`pip install "ial_ext[crf]"`: pydensecrf2, built from source with a C++
compiler). It is imported only when called, so everything else works without it.
"""
from __future__ import annotations

import numpy as np

# IRN's settings (misc/imutils.py): an appearance-free smoothness kernel and a colour kernel.
GAUSSIAN_SXY = 3.0
GAUSSIAN_COMPAT = 3.0
BILATERAL_SXY = 50.0
BILATERAL_SRGB = 5.0
BILATERAL_COMPAT = 10.0
ITERATIONS = 10
# Scores are clipped here before -log: a class scored 0 gets a large but finite cost.
SCORE_FLOOR = 1e-5
MISSING = 'the dense CRF needs pydensecrf2: pip install "ial_ext[crf]" (a C++ compiler builds it; Python 3.10-3.12)'


def crf_available() -> bool:
    try:
        _densecrf()
    except ImportError:
        return False
    return True


def require_crf() -> None:
    """Raises ImportError with the install line when pydensecrf2 is missing: before a long pass,
    not at its first image."""
    _densecrf()


def _densecrf():
    try:
        import pydensecrf.densecrf as densecrf
    except ImportError as error:
        raise ImportError(MISSING) from error
    return densecrf


def dense_crf(
    scores,
    rgb,
    *,
    iterations: int = ITERATIONS,
    gaussian_sxy: float = GAUSSIAN_SXY,
    gaussian_compat: float = GAUSSIAN_COMPAT,
    bilateral_sxy: float = BILATERAL_SXY,
    bilateral_srgb: float = BILATERAL_SRGB,
    bilateral_compat: float = BILATERAL_COMPAT,
) -> np.ndarray:
    """(C, H, W) non-negative class scores and the uint8 (H, W, 3) image -> (C, H, W) float32 marginals.

    The unary cost of class c at a pixel is -log(score): probabilities, or PSA's background and
    CAM scores, which need not sum to 1 (a per-pixel factor does not change the result). Pass
    only the classes that may occur (an image's labels) to keep the others out entirely; the
    cost grows linearly with C. sxy are in pixels, srgb in 0-255 colour units.
    """
    densecrf = _densecrf()
    scores = np.asarray(scores, dtype=np.float32)
    rgb = np.asarray(rgb)
    if scores.ndim != 3 or rgb.shape != scores.shape[1:] + (3,) or rgb.dtype != np.uint8:
        raise ValueError(
            f"dense_crf expects scores (C, H, W) and a uint8 image (H, W, 3) of the same size, "
            f"got {scores.shape} and {rgb.dtype} {rgb.shape}"
        )
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    classes, height, width = scores.shape
    crf = densecrf.DenseCRF2D(width, height, classes)
    unary = -np.log(np.clip(scores, SCORE_FLOOR, None)).reshape(classes, -1)
    crf.setUnaryEnergy(np.ascontiguousarray(unary))
    crf.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat)
    # pydensecrf takes a writable buffer only (np.asarray of a Pillow image is read-only).
    crf.addPairwiseBilateral(sxy=bilateral_sxy, srgb=bilateral_srgb, rgbim=np.array(rgb, order="C"),
                             compat=bilateral_compat)
    return np.asarray(crf.inference(iterations), dtype=np.float32).reshape(classes, height, width)
