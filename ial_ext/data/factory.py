"""build_dataset: one entry point from a name, as the trainer's config spells it."""
from .synthetic import SyntheticDataset

DATASET_NAMES = ("synthetic", "voc", "coco", "folder")


def build_dataset(name: str, split: str, root: str | None = None, **kwargs):
    """"synthetic" (root unused), "voc", "coco" or "folder" (root required) -> a Dataset of the contract."""
    if name == "synthetic":
        return SyntheticDataset(split=split, **kwargs)
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown data set {name!r}; expected one of {DATASET_NAMES}")
    if root is None:
        raise ValueError(f"data set {name!r} needs root=<directory holding it>")
    if name == "voc":
        from .voc import VOCSegmentation
        return VOCSegmentation(root, split=split, **kwargs)
    if name == "coco":
        from .coco import COCOSegmentation
        return COCOSegmentation(root, split=split, **kwargs)
    from .folder import FolderDataset
    return FolderDataset(root, split=split, **kwargs)
