"""The synthetic data set, the shared data helpers and build_dataset."""
import hashlib

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ial_ext.data import (
    IMAGENET_MEAN, IMAGENET_STD, VOC_PALETTE, SyntheticDataset, build_dataset, normalize_image,
)
from ial_ext.data.preview import render_grid


def _bytes(dataset, index):
    rgb, mask = dataset.generate(index)
    return rgb.tobytes() + mask.tobytes()


def test_same_seed_same_bytes_in_any_order():
    first = SyntheticDataset("train", num_images=20, seed=3)
    second = SyntheticDataset("train", num_images=20, seed=3)
    forward = [_bytes(first, i) for i in range(20)]
    backward = [_bytes(second, i) for i in reversed(range(20))][::-1]
    assert forward == backward


def test_seed_and_split_change_the_images():
    base = SyntheticDataset("train", num_images=5, seed=0)
    other_seed = SyntheticDataset("train", num_images=5, seed=1)
    other_split = SyntheticDataset("val", num_images=5, seed=0)
    for i in range(5):
        assert _bytes(base, i) != _bytes(other_seed, i)
        assert _bytes(base, i) != _bytes(other_split, i)
    assert len({_bytes(base, i) for i in range(5)}) == 5


def test_golden_bytes():
    # Pixels are part of the contract (caches key on names): if this changes on purpose,
    # bump synthetic.GENERATOR_VERSION and update the digest.
    dataset = SyntheticDataset("train", num_images=3, seed=0)
    digest = hashlib.sha256(b"".join(_bytes(dataset, i) for i in range(3))).hexdigest()
    assert digest == GOLDEN_DIGEST


GOLDEN_DIGEST = "15a056a815bfbbb4dd4d31b692ab60b923f5cefbd07dd5766aa9065bd4aff2c3"


def test_sample_fields_shapes_and_dtypes():
    dataset = SyntheticDataset("val", num_images=4, image_size=80, num_object_classes=4, seed=2)
    assert dataset.num_classes == 5 and len(dataset.class_names) == 5
    assert dataset.class_names[0] == "background" and len(set(dataset.class_names)) == 5
    assert dataset.palette.shape == (256, 3)
    sample = dataset[1]
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, 80, 80)
    assert sample["rgb"].dtype == torch.uint8 and sample["rgb"].shape == (80, 80, 3)
    assert sample["mask"].dtype == torch.int64 and sample["mask"].shape == (80, 80)
    assert sample["class_labels"].dtype == torch.float32 and sample["class_labels"].shape == (5,)
    assert sample["index"] == 1 and isinstance(sample["name"], str)
    assert torch.equal(sample["image"], normalize_image(sample["rgb"].numpy()))
    assert dataset[-1]["index"] == 3
    with pytest.raises(IndexError):
        dataset[4]


def test_names_are_unique_and_carry_everything_that_changes_pixels():
    a = SyntheticDataset("train", num_images=3, seed=0)
    names = {a.name_of(i) for i in range(3)}
    names |= {SyntheticDataset("val", num_images=3).name_of(0)}
    names |= {SyntheticDataset("train", num_images=3, seed=1).name_of(0)}
    names |= {SyntheticDataset("train", num_images=3, image_size=64).name_of(0)}
    names |= {SyntheticDataset("train", num_images=3, num_object_classes=3).name_of(0)}
    assert len(names) == 7


def test_labels_match_masks_and_objects_are_visible():
    dataset = SyntheticDataset("train", num_images=60, seed=5)
    for i in range(len(dataset)):
        sample = dataset[i]
        mask = sample["mask"].numpy()
        present = set(np.unique(mask).tolist())
        assert present <= set(range(dataset.num_classes))  # no ignore pixels in synthetic masks
        expected = np.zeros(dataset.num_classes, np.float32)
        expected[list(present)] = 1
        expected[0] = 1
        assert np.array_equal(sample["class_labels"].numpy(), expected)
        assert 1 <= len(present - {0}) <= 3
        for c in present - {0}:  # every labelled class is really there, not a sliver
            assert (mask == c).sum() >= 0.006 * mask.size


def test_class_balance_over_200_images():
    dataset = SyntheticDataset("train", num_images=200, seed=0)
    presence = np.stack([dataset[i]["class_labels"].numpy() for i in range(200)])
    assert np.all(presence[:, 0] == 1)
    per_class = presence[:, 1:].sum(0)
    assert np.all(per_class > 0)
    assert per_class.min() >= 0.7 * per_class.mean() and per_class.max() <= 1.3 * per_class.mean()
    # Background must dominate the pixels, but objects cover a sizeable share.
    masks = np.stack([dataset.generate(i)[1] for i in range(200)])
    foreground = (masks > 0).mean()
    assert 0.08 < foreground < 0.4


def test_object_boundaries_are_strong_edges():
    # What the edge-aware propagation and superpixels rely on: the image changes most where the mask does.
    dataset = SyntheticDataset("train", num_images=30, seed=1)
    boundary_gradient, other_gradient = [], []
    for i in range(len(dataset)):
        rgb, mask = dataset.generate(i)
        rgb = rgb.astype(np.float32)
        gradient = np.abs(np.diff(rgb, axis=1)).sum(-1)
        changes = np.diff(mask.astype(np.int32), axis=1) != 0
        boundary_gradient.append(gradient[changes])
        other_gradient.append(gradient[~changes & (mask[:, 1:] == 0) & (mask[:, :-1] == 0)])
    assert np.median(np.concatenate(boundary_gradient)) > 4 * np.median(np.concatenate(other_gradient))


def test_no_single_pixel_colour_gives_the_class():
    # Every coarse colour bin that foreground pixels fall into also holds other classes or background.
    dataset = SyntheticDataset("train", num_images=100, seed=0)
    counts = np.zeros((8 ** 3, dataset.num_classes), np.int64)
    for i in range(len(dataset)):
        rgb, mask = dataset.generate(i)
        bins = (rgb // 32).astype(np.int64)
        np.add.at(counts, (bins[..., 0] * 64 + bins[..., 1] * 8 + bins[..., 2], mask), 1)
    foreground = counts[:, 1:].sum()
    purest = counts[:, 1:].max(1)  # pixels of the commonest class of each bin
    assert purest.sum() / foreground < 0.9
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    # Object colours re-used elsewhere: few foreground pixels sit in bins that are > 95% one class.
    pure_bins = share[:, 1:].max(1) > 0.95
    assert counts[pure_bins, 1:].sum() / foreground < 0.25


def test_sizes_and_class_counts_are_parameters():
    for size in (64, 128):
        sample = SyntheticDataset("train", num_images=2, image_size=size)[0]
        assert sample["rgb"].shape == (size, size, 3)
    dataset = SyntheticDataset("train", num_images=30, num_object_classes=3)
    assert dataset.num_classes == 4
    assert max(int(dataset[i]["mask"].max()) for i in range(30)) <= 3


def test_default_collate():
    loader = DataLoader(SyntheticDataset("train", num_images=6), batch_size=4)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 96, 96) and batch["mask"].shape == (4, 96, 96)
    assert batch["class_labels"].shape == (4, 6) and len(batch["name"]) == 4


def test_cache_returns_the_same_scene():
    dataset = SyntheticDataset("train", num_images=3, cache=True)
    assert dataset.generate(2) is dataset.generate(2)
    assert _bytes(dataset, 2) == _bytes(SyntheticDataset("train", num_images=3), 2)


@pytest.mark.parametrize("kwargs", [
    dict(split="test2"), dict(image_size=16), dict(num_object_classes=0), dict(seed=-1), dict(num_images=-1),
])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        SyntheticDataset(**kwargs)


def test_build_dataset():
    dataset = build_dataset("synthetic", "val", num_images=7, image_size=64)
    assert isinstance(dataset, SyntheticDataset) and len(dataset) == 7 and dataset.split == "val"
    with pytest.raises(ValueError, match="unknown data set"):
        build_dataset("imagenet", "train")
    with pytest.raises(ValueError, match="root"):
        build_dataset("voc", "train")


def test_normalize_image_and_palette():
    rgb = np.array([[[0, 128, 255], [255, 255, 255]]], dtype=np.uint8)
    out = normalize_image(rgb)
    assert out.shape == (3, 1, 2) and out.dtype == torch.float32
    expected = (rgb.astype(np.float64) / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert np.allclose(out.numpy(), expected.transpose(2, 0, 1), atol=1e-6)
    with pytest.raises(ValueError):
        normalize_image(rgb.astype(np.float32))
    assert VOC_PALETTE.shape == (256, 3) and VOC_PALETTE.dtype == np.uint8
    assert VOC_PALETTE[0].tolist() == [0, 0, 0] and VOC_PALETTE[1].tolist() == [128, 0, 0]
    assert VOC_PALETTE[15].tolist() == [192, 128, 128] and VOC_PALETTE[255].tolist() == [224, 224, 192]


def test_render_grid(tmp_path):
    dataset = SyntheticDataset("train", num_images=5, image_size=64)
    path = render_grid(dataset, range(5), str(tmp_path / "grid.png"), columns=3, scale=1)
    with Image.open(path) as image:
        width, height = image.size
    assert width == 3 * (2 * 64 + 2 + 4) + 4 and height == 2 * (64 + 14 + 4) + 4
