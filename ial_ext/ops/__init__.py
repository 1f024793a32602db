"""Python faces of the compiled ops, with their float64 references."""
from .spn_scan import spn_scan
from .spn_scan_reference import spn_scan_reference
from .superpixel_pool import superpixel_pool, superpixel_unpool
from .superpixel_pool_reference import superpixel_pool_reference, superpixel_unpool_reference

__all__ = [
    "spn_scan",
    "spn_scan_reference",
    "superpixel_pool",
    "superpixel_pool_reference",
    "superpixel_unpool",
    "superpixel_unpool_reference",
]
