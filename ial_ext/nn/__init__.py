"""Modules built on the compiled ops."""
from .spatial_propagation import SpatialPropagation, normalize_gates

__all__ = ["SpatialPropagation", "normalize_gates"]
