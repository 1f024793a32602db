"""The networks of the EM loop: CAM seeds, unary f, pairwise g, region confidence.

Every network has ``spec()`` -> ``{"class": ..., "kwargs": {...}}`` and
``build_model(spec)`` rebuilds it (weights then come from a checkpoint's state_dict).
"""
from .backbone import BACKBONE_NAMES, build_backbone
from .cam import CAMNetwork
from .multiscale import MultiScaleUnary
from .pairwise import PairwiseNetwork
from .region import RegionConfidenceNetwork
from .registry import NETWORK_CLASSES, build_model
from .resnet import ResNet
from .small_backbone import SmallBackbone
from .unary import UnaryNetwork
from .weights import load_backbone_weights

__all__ = [
    "BACKBONE_NAMES",
    "CAMNetwork",
    "MultiScaleUnary",
    "NETWORK_CLASSES",
    "PairwiseNetwork",
    "RegionConfidenceNetwork",
    "ResNet",
    "SmallBackbone",
    "UnaryNetwork",
    "build_backbone",
    "build_model",
    "load_backbone_weights",
]
