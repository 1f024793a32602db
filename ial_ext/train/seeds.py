"""Object seeds Y0 from class activation maps (the PSA recipe, Ahn and Kwak 2018)."""
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = 255


def normalize_cams(cams: Tensor, eps: float = 1e-5) -> Tensor:
    """Each class map divided by its maximum over the image, so values lie in [0, 1]."""
    peak = cams.flatten(2).amax(dim=2).clamp_min(eps)
    return cams / peak[:, :, None, None]


def seeds_from_cams(
    cams: Tensor,
    class_labels: Tensor,
    foreground_alpha: float = 4.0,
    background_alpha: float = 32.0,
) -> Tensor:
    """Seeds (B, H, W) int64 from foreground CAMs (B, C-1, H, W) at image resolution.

    class_labels is (B, C) multi-hot with background (index 0) set. The background
    score (1 - max_c CAM_c)^alpha competes with the present classes' normalised CAMs:
    with foreground_alpha (small, strong background) only confident foreground wins,
    with background_alpha (large, weak background) only confident background does.
    Pixels the two disagree on are unknown (255); absent classes never appear.
    """
    if cams.dim() != 4 or class_labels.dim() != 2 or cams.shape[1] + 1 != class_labels.shape[1]:
        raise ValueError(
            f"seeds_from_cams expects cams (B, C-1, H, W) and class_labels (B, C), "
            f"got {tuple(cams.shape)} and {tuple(class_labels.shape)}"
        )
    present = class_labels[:, 1:, None, None] > 0
    foreground = normalize_cams(cams) * present
    peak = foreground.amax(dim=1, keepdim=True)

    def argmax_with_background(alpha: float) -> Tensor:
        background = (1 - peak).clamp_min(0) ** alpha
        return torch.cat([background, foreground], dim=1).argmax(dim=1)

    confident_foreground = argmax_with_background(foreground_alpha)
    confident_background = argmax_with_background(background_alpha)
    seeds = torch.full_like(confident_foreground, IGNORE_INDEX)
    agree = confident_foreground == confident_background
    seeds[agree] = confident_foreground[agree]
    return seeds


def upsample_cams(cams: Tensor, size) -> Tensor:
    return F.interpolate(cams, size=size, mode="bilinear", align_corners=False)


def crf_seeds_from_cams(
    cams: Tensor, class_labels: Tensor, rgb: Tensor, foreground_alpha: float, background_alpha: float,
    iterations: int,
) -> Tensor:
    """PSA's seeds with its CRF step: each of the two background-score maps over an image's own
    classes is refined by the dense CRF (ial_ext.crf, the `crf` extra) before its argmax.
    cams (B, C-1, H, W) at image resolution, class_labels (B, C), rgb (B, H, W, 3) uint8."""
    from ..crf import dense_crf

    seeds = torch.full(cams.shape[:1] + cams.shape[2:], IGNORE_INDEX, dtype=torch.int64)
    normalized = normalize_cams(cams).float().cpu().numpy()
    for k in range(len(cams)):
        present = (class_labels[k, 1:] > 0).nonzero().flatten().cpu().numpy()
        foreground = normalized[k][present]
        peak = foreground.max(axis=0, initial=0.0)
        classes = torch.from_numpy(np.concatenate([[0], present + 1]))  # channel -> class id
        image = rgb[k].cpu().numpy()

        def refined_argmax(alpha: float) -> Tensor:
            scores = np.concatenate([np.clip(1 - peak, 0, None)[None] ** alpha, foreground])
            return classes[torch.from_numpy(dense_crf(scores, image, iterations=iterations).argmax(axis=0))]

        confident_foreground, confident_background = refined_argmax(foreground_alpha), refined_argmax(background_alpha)
        agree = confident_foreground == confident_background
        seeds[k][agree] = confident_foreground[agree]
    return seeds.to(cams.device)
