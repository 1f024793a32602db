"""The region confidence network of section 3.3 (Fast R-CNN with mask pooling)."""
import os

import math

import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import superpixel_pool
from .backbone import build_backbone, resolved_freeze_batchnorm
from .memory_format import convolution_input, standard_layout
from .spec import RebuildableNetwork, check_num_classes


class RegionConfidenceNetwork(RebuildableNetwork):
    """Classifies every superpixel of an image in one pass.

    backbone features -> mean over each segment (``ial_ext.ops.superpixel_pool``)
    -> two fully connected layers (as Fast R-CNN's fc6/fc7, with dropout) -> a
    linear classifier over all num_classes (background included). Softmax of
    the logits gives the confidence scores the miner thresholds (0.7).
    """

    def __init__(self, num_classes: int, backbone: str = "small", weights: str | os.PathLike | None = None,
                 output_stride: int = 8, freeze_batchnorm: bool | None = None, hidden: int = 256,
                 dropout: float = 0.3, pooling_stride: int | None = None):
        super().__init__()
        check_num_classes(num_classes)
        self.num_classes = num_classes
        self.backbone = build_backbone(backbone, output_stride, weights, freeze_batchnorm)
        self.output_stride = output_stride
        # Superpixels smaller than a feature cell vanish at the backbone's stride; pooling
        # bilinearly upsampled features at a finer stride keeps them on small images.
        self.pooling_stride = output_stride if pooling_stride is None else pooling_stride
        if not isinstance(self.pooling_stride, int) or not 1 <= self.pooling_stride <= output_stride:
            raise ValueError(f"pooling_stride must be an int in [1, {output_stride}], got {pooling_stride!r}")
        self.classifier = nn.Sequential(
            nn.Linear(self.backbone.out_channels, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self._remember_kwargs(num_classes=num_classes, backbone=backbone, weights=None,
                              output_stride=output_stride,
                              freeze_batchnorm=resolved_freeze_batchnorm(backbone, weights, freeze_batchnorm),
                              hidden=hidden, dropout=dropout, pooling_stride=self.pooling_stride)

    def forward(self, images: Tensor, segments: Tensor, num_segments: int) -> Tensor:
        """Logits (B, num_segments, num_classes).

        Args:
            images: (B, 3, H, W).
            segments: (B, ceil(H/s), ceil(W/s)) int64 segment ids at the pooling
                stride s (the output stride unless ``pooling_stride`` is given; see
                ``ial_ext.superpixels.downsample_labels``), -1 = ignored pixel. A
                segment without pixels pools to zero features (its logits are then
                meaningless: mask it out).
            num_segments: K, ids lie in [0, K).
        """
        features = standard_layout(self.backbone(convolution_input(images)))
        if self.pooling_stride != self.output_stride:
            size = [math.ceil(extent / self.pooling_stride) for extent in images.shape[-2:]]
            features = F.interpolate(features, size=size, mode="bilinear", align_corners=False)
        expected = (features.shape[0], *features.shape[-2:])
        if segments.dim() != 3 or tuple(segments.shape) != expected:
            raise ValueError(
                f"segments must have shape (B, ceil(H/{self.pooling_stride}), ceil(W/{self.pooling_stride})) "
                f"= {expected} for images {tuple(images.shape)}, got {tuple(segments.shape)}"
            )
        return self.classifier(superpixel_pool(features, segments, num_segments))
