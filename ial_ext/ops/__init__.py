"""Python faces of the compiled ops, with their float64 references."""
from . import autocast  # noqa: F401  (registers the ops' autocast policy)
from .gate_normalization import normalize_gates, normalize_guidance
from .spn_propagate import spn_propagate
from .similarity_gates import similarity_gates
from .similarity_gates_reference import similarity_gates_reference
from .spn_propagate_reference import spn_propagate_reference
from .spn_scan import spn_scan
from .spn_scan_reference import spn_scan_reference
from .superpixel_pool import superpixel_pool, superpixel_unpool
from .superpixel_pool_reference import superpixel_pool_reference, superpixel_unpool_reference
from .upsampled_softmax import upsampled_softmax
from .upsampled_softmax_reference import upsampled_softmax_reference

__all__ = [
    "normalize_gates",
    "normalize_guidance",
    "similarity_gates",
    "similarity_gates_reference",
    "spn_propagate",
    "spn_propagate_reference",
    "spn_scan",
    "spn_scan_reference",
    "superpixel_pool",
    "superpixel_pool_reference",
    "superpixel_unpool",
    "superpixel_unpool_reference",
    "upsampled_softmax",
    "upsampled_softmax_reference",
]
