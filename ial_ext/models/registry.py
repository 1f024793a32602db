"""Rebuilding a network from the ``{"class": ..., "kwargs": {...}}`` dict its ``spec()`` returns."""
from collections.abc import Mapping

from torch import nn

from .cam import CAMNetwork
from .pairwise import PairwiseNetwork
from .region import RegionConfidenceNetwork
from .unary import UnaryNetwork

NETWORK_CLASSES = {cls.__name__: cls for cls in
                   (CAMNetwork, UnaryNetwork, PairwiseNetwork, RegionConfidenceNetwork)}


def build_model(spec: Mapping) -> nn.Module:
    """``build_model(net.spec())`` makes a freshly initialised network of the same architecture."""
    if not isinstance(spec, Mapping) or "class" not in spec:
        raise ValueError(f"a model spec is a dict {{'class': name, 'kwargs': {{...}}}}, got {spec!r}")
    name = spec["class"]
    if name not in NETWORK_CLASSES:
        raise ValueError(f"unknown network class {name!r}; expected one of {sorted(NETWORK_CLASSES)}")
    kwargs = spec.get("kwargs", {})
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"the 'kwargs' of a {name} spec must be a dict, got {kwargs!r}")
    network_class = NETWORK_CLASSES[name]
    upgrade = getattr(network_class, "upgrade_spec_kwargs", None)
    kwargs = upgrade(dict(kwargs)) if upgrade is not None else kwargs
    try:
        return network_class(**kwargs)
    except TypeError as error:
        raise ValueError(f"cannot build {name} from kwargs {dict(kwargs)!r}: {error}") from error
