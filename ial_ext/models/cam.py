"""The CAM network that produces the seeds Y0 (class activation maps, Zhou et al. 2016)."""
import os

import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import build_backbone, resolved_freeze_batchnorm
from .memory_format import convolution_input, standard_layout
from .spec import RebuildableNetwork, check_num_classes


class CAMNetwork(RebuildableNetwork):
    """Multi-label classifier over the foreground classes 1..num_classes-1.

    backbone -> 1x1 conv without bias (one map per foreground class) -> global
    average pooling. Pooling after the linear classifier equals classifying the
    pooled features, and makes the class maps ``cams()`` exactly the quantities
    whose average is the logit. Train with BCE-with-logits on ``class_labels[:, 1:]``.
    """

    def __init__(self, num_classes: int, backbone: str = "small", weights: str | os.PathLike | None = None,
                 output_stride: int = 8, freeze_batchnorm: bool | None = None):
        super().__init__()
        check_num_classes(num_classes)
        self.num_classes = num_classes
        self.backbone = build_backbone(backbone, output_stride, weights, freeze_batchnorm)
        self.output_stride = output_stride
        self.classifier = nn.Conv2d(self.backbone.out_channels, num_classes - 1, 1, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.01)
        self._remember_kwargs(num_classes=num_classes, backbone=backbone, weights=None,
                              output_stride=output_stride,
                              freeze_batchnorm=resolved_freeze_batchnorm(backbone, weights, freeze_batchnorm))

    def class_maps(self, images: Tensor) -> Tensor:
        """Raw (signed) class maps (B, num_classes-1, h, w) at feature resolution."""
        return standard_layout(self.classifier(self.backbone(convolution_input(images))))

    def forward(self, images: Tensor) -> Tensor:
        """Logits (B, num_classes-1) of the foreground classes."""
        return self.class_maps(images).mean(dim=(2, 3))

    def cams(self, images: Tensor) -> Tensor:
        """Class activation maps (B, num_classes-1, ceil(H/os), ceil(W/os)), ReLU'd."""
        return F.relu(self.class_maps(images))
