"""Modules built on the compiled ops."""
from .region_smoothness import RegionSmoothnessLoss
from .spatial_propagation import SpatialPropagation, normalize_gates, normalize_guidance

__all__ = ["RegionSmoothnessLoss", "SpatialPropagation", "normalize_gates", "normalize_guidance"]
