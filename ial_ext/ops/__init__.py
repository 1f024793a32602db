"""Python faces of the compiled ops, with their float64 references."""
from .spn_scan import spn_scan
from .spn_scan_reference import spn_scan_reference

__all__ = ["spn_scan", "spn_scan_reference"]
