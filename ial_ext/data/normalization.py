"""ImageNet normalisation shared by every data set and by the deployment runner's tests."""
import numpy as np
import torch

# RGB, on the 0-1 scale (torchvision's values, the ones ImageNet-pretrained weights expect).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_image(rgb) -> torch.Tensor:
    """uint8 RGB image (H, W, 3), numpy or torch -> float32 tensor (3, H, W), ImageNet-normalised."""
    array = rgb.numpy() if isinstance(rgb, torch.Tensor) else np.asarray(rgb)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(
            f"normalize_image expects a uint8 (H, W, 3) RGB image, got {array.dtype} {array.shape}"
        )
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
    std = np.asarray(IMAGENET_STD, dtype=np.float32)
    normalised = (array.astype(np.float32) / 255.0 - mean) / std
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))


def mean_rgb_uint8() -> tuple:
    """The ImageNet mean as a uint8 colour: padding with it normalises to ~0."""
    return tuple(int(round(255 * m)) for m in IMAGENET_MEAN)
