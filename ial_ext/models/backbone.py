"""The backbone factory: every network builds its feature extractor here."""
import os

from torch import nn

from .resnet import RESNET_LAYOUTS, ResNet
from .small_backbone import SmallBackbone
from .vgg import VGG16LargeFOV
from .weights import load_backbone_weights

SMALL_BACKBONES = ("small", "small_local")
VGG_BACKBONES = ("vgg16",)
BACKBONE_NAMES = (*SMALL_BACKBONES, *VGG_BACKBONES, *RESNET_LAYOUTS)


def build_backbone(name: str, output_stride: int = 8, weights: str | os.PathLike | None = None,
                   freeze_batchnorm: bool | None = None) -> nn.Module:
    """A feature extractor (B, 3, H, W) -> (B, out_channels, ceil(H/os), ceil(W/os)).

    Args:
        name: "small" (fast CPU variant), "small_local" (the same without dilation, for
            sharper CAMs on small images), "vgg16" (DeepLab-LargeFOV's trunk, see vgg.py) or
            "resnet18" / "resnet34" / "resnet50" / "resnet101".
        output_stride: 8 or 16 (and 4 for the small backbones).
        weights: a local state_dict file. For ResNets and VGG16, torchvision's ImageNet
            format (the ImageNet classifier ignored); for "small", this backbone's own state_dict.
        freeze_batchnorm: ResNets only: keep BatchNorm on ImageNet statistics
            (see ResNet). Default: frozen exactly when ``weights`` are given
            (random statistics are not worth keeping).

    The result has attributes ``out_channels`` and ``output_stride``.
    """
    if name not in BACKBONE_NAMES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {list(BACKBONE_NAMES)}")
    if name not in RESNET_LAYOUTS and freeze_batchnorm:
        raise ValueError(f"freeze_batchnorm applies to ResNet backbones (ImageNet statistics), not to {name!r}")
    if name in SMALL_BACKBONES:
        backbone = SmallBackbone(output_stride, dilated=name == "small")
    elif name in VGG_BACKBONES:
        backbone = VGG16LargeFOV(output_stride)
    else:
        if freeze_batchnorm is None:
            freeze_batchnorm = weights is not None
        backbone = ResNet(name, output_stride, freeze_batchnorm=freeze_batchnorm)
    if weights is not None:
        load_backbone_weights(backbone, weights)
    return backbone


def resolved_freeze_batchnorm(name: str, weights, freeze_batchnorm: bool | None) -> bool | None:
    """The value build_backbone settles on, so a rebuilt network behaves the same without the file."""
    if name not in RESNET_LAYOUTS:
        return None
    return (weights is not None) if freeze_batchnorm is None else bool(freeze_batchnorm)
