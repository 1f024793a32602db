"""The steps of Algorithm 1, one function each."""
from .classifier import generate_seeds, train_classifier
from .mining import mine_confident_regions, region_samples, rescore_regions, train_region_network
from .pairwise import refine_with_pairwise, train_pairwise
from .unary import predict_unary_labels, train_unary, unary_inference

__all__ = [
    "train_classifier",
    "generate_seeds",
    "train_unary",
    "predict_unary_labels",
    "unary_inference",
    "train_region_network",
    "mine_confident_regions",
    "region_samples",
    "rescore_regions",
    "train_pairwise",
    "refine_with_pairwise",
]
