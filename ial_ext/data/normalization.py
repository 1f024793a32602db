"""ImageNet normalisation of training images: the runner's numpy normalisation, as a tensor."""
import numpy as np
import torch
from ial_export.images import IMAGENET_MEAN, IMAGENET_STD, mean_rgb_uint8, normalize

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "mean_rgb_uint8", "normalize_image"]


def normalize_image(rgb) -> torch.Tensor:
    """uint8 RGB image (H, W, 3), numpy or torch -> float32 tensor (3, H, W), ImageNet-normalised."""
    return torch.from_numpy(normalize(rgb.numpy() if isinstance(rgb, torch.Tensor) else np.asarray(rgb)))
