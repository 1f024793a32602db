"""The unary network f of the paper (DeepLab-style segmentation network)."""
import os
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .aspp import ASPP
from .backbone import build_backbone, resolved_freeze_batchnorm
from .layers import ConvNormAct
from .memory_format import convolution_input, standard_layout
from .spec import RebuildableNetwork, check_num_classes

# DeepLab v3's rates (6, 12, 18) are for output stride 16 on 513 px crops
# (33 px maps); the small backbone sees ~96 px images (12 px maps at stride 8),
# where rates beyond ~6 would sample mostly padding.
DEFAULT_RATES_AT_STRIDE_16 = {"small": (1, 2, 3), "resnet": (6, 12, 18)}
DEFAULT_ASPP_CHANNELS = {"small": 64, "resnet": 256}
HEADS = ("aspp", "largefov")


def default_head(backbone: str) -> str:
    return "largefov" if backbone == "vgg16" else "aspp"


def default_aspp_rates(backbone: str, output_stride: int) -> tuple[int, ...]:
    """Rates scale with 16 / output_stride so they span the same image distance."""
    base = DEFAULT_RATES_AT_STRIDE_16["small" if backbone.startswith("small") else "resnet"]
    return tuple(r * 16 // output_stride for r in base)


class UnaryNetwork(RebuildableNetwork):
    """Backbone + head + classifier; logits upsampled bilinearly to the input size.

    head "aspp" (DeepLab v3: ASPP and a 3x3 conv before the 1x1 classifier) or "largefov"
    (DeepLab-LargeFOV: the 1x1 classifier, fc8, right on the backbone, whose fc6/fc7 already
    give the large field of view); the default is "largefov" for vgg16, "aspp" otherwise.
    forward(images (B, 3, H, W)) -> logits (B, num_classes, H, W). Softmax gives the unary
    probabilities alpha_u the pairwise network refines.
    """

    def __init__(self, num_classes: int, backbone: str = "small", weights: str | os.PathLike | None = None,
                 output_stride: int = 8, freeze_batchnorm: bool | None = None,
                 aspp_channels: int | None = None, aspp_rates: Sequence[int] | None = None,
                 head: str | None = None):
        super().__init__()
        check_num_classes(num_classes)
        head = default_head(backbone) if head is None else head
        if head not in HEADS:
            raise ValueError(f"unary head must be one of {HEADS}, got {head!r}")
        self.num_classes = num_classes
        self.backbone = build_backbone(backbone, output_stride, weights, freeze_batchnorm)
        self.output_stride = output_stride
        if head == "aspp":
            if aspp_channels is None:
                aspp_channels = DEFAULT_ASPP_CHANNELS["small" if backbone.startswith("small") else "resnet"]
            if aspp_rates is None:
                aspp_rates = default_aspp_rates(backbone, output_stride)
            aspp_rates = [int(r) for r in aspp_rates]
            self.aspp = ASPP(self.backbone.out_channels, aspp_channels, aspp_rates)
            self.head = ConvNormAct(aspp_channels, aspp_channels)
            features = aspp_channels
        else:
            if aspp_channels is not None or aspp_rates is not None:
                raise ValueError("aspp_channels and aspp_rates apply to the aspp head only")
            self.aspp, self.head = nn.Identity(), nn.Identity()
            features = self.backbone.out_channels
        self.classifier = nn.Conv2d(features, num_classes, 1)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)
        self._remember_kwargs(num_classes=num_classes, backbone=backbone, weights=None,
                              output_stride=output_stride,
                              freeze_batchnorm=resolved_freeze_batchnorm(backbone, weights, freeze_batchnorm),
                              aspp_channels=aspp_channels, aspp_rates=aspp_rates, head=head)

    def coarse_logits(self, images: Tensor) -> Tensor:
        """The logits at the output stride, before forward's resize to the input size."""
        return standard_layout(self.classifier(self.head(self.aspp(self.backbone(convolution_input(images))))))

    def forward(self, images: Tensor) -> Tensor:
        return F.interpolate(self.coarse_logits(images), size=images.shape[-2:], mode="bilinear", align_corners=False)
