"""The built-in synthetic weakly-labelled data set (the library's default and demo)."""
import numpy as np
from torch.utils.data import Dataset

from .palette import VOC_PALETTE
from .sample import labels_from_mask, make_sample
from .synthetic_scene import class_appearances, render_scene

# Bumped whenever render_scene changes its pixels, so caches keyed by `name` never mix versions.
GENERATOR_VERSION = 1
# Each split draws from its own seed stream: no image is shared between splits.
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
DEFAULT_NUM_IMAGES = {"train": 1000, "val": 250, "test": 250}


class SyntheticDataset(Dataset):
    """Scenes with 1-3 objects of `num_object_classes` classes on cluttered textured backgrounds.

    Image i of a split is generated on demand from (seed, split, i) alone, so any index is
    reproducible by itself, in any order and in any DataLoader worker. `class_labels` (the weak
    label) is what training may use; `mask` is the ground truth, for evaluation only.
    cache=True keeps generated images in memory (about 3 * image_size**2 bytes each, per worker).
    """

    def __init__(
        self,
        split: str = "train",
        num_images: int | None = None,
        image_size: int = 96,
        num_object_classes: int = 5,
        seed: int = 0,
        cache: bool = False,
    ):
        if split not in SPLIT_STREAMS:
            raise ValueError(f"unknown synthetic split {split!r}; expected one of {list(SPLIT_STREAMS)}")
        if num_images is None:
            num_images = DEFAULT_NUM_IMAGES[split]
        if num_images < 0:
            raise ValueError(f"num_images must be >= 0, got {num_images}")
        if image_size < 32:
            raise ValueError(f"image_size must be >= 32, got {image_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.split = split
        self.num_images = int(num_images)
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.appearances = class_appearances(num_object_classes)
        self.num_classes = num_object_classes + 1
        self.class_names = ["background"] + [a.name for a in self.appearances]
        self.palette = VOC_PALETTE
        self._cache = {} if cache else None

    def __len__(self) -> int:
        return self.num_images

    def generate(self, index: int):
        """(rgb uint8 (S, S, 3), mask uint8 (S, S)) of image `index`, as numpy arrays."""
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        entropy = [GENERATOR_VERSION, self.seed, SPLIT_STREAMS[self.split], int(index)]
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))
        scene = render_scene(rng, self.image_size, self.appearances)
        if self._cache is not None:
            self._cache[index] = scene
        return scene

    def name_of(self, index: int) -> str:
        # Everything that changes the pixels is in the name (superpixel caches key on it).
        return (
            f"synthetic-v{GENERATOR_VERSION}-{self.split}-seed{self.seed}"
            f"-k{self.num_classes - 1}-px{self.image_size}-{index:06d}"
        )

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if index < 0:
            index += self.num_images
        rgb, mask = self.generate(index)
        # The generator draws the objects it paints: here the labels are the mask's classes.
        labels = labels_from_mask(mask, self.num_classes)
        return make_sample(rgb, mask, labels, index, self.name_of(index))
