"""The PASCAL VOC 2012 (+ SBD train_aug) reader on a tiny fixture in the standard layout."""
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ial_ext.data import VOC_PALETTE, build_dataset, check_files, verify_datasets
from ial_ext.data.normalization import mean_rgb_uint8
from ial_ext.data.voc import VOC_CLASS_NAMES, VOCSegmentation

HEIGHT, WIDTH = 20, 30


def write_annotation(path, objects):
    """A VOC XML annotation naming `objects` (class names), as the devkit writes them."""
    entries = "".join(
        f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated>"
        f"<difficult>{k % 2}</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"
        + ("<part><name>head</name></part>" if name == "person" else "") + "</object>"
        for k, name in enumerate(objects)
    )
    path.write_text(f"<annotation><folder>VOC2012</folder><filename>{path.stem}.jpg</filename>"
                    f"<size><width>{WIDTH}</width><height>{HEIGHT}</height><depth>3</depth></size>"
                    f"{entries}</annotation>")


def _block_mask(seed):
    # 2x2 blocks, so a 2x nearest-neighbour downscale has one right answer.
    rng = np.random.default_rng(seed)
    blocks = rng.choice([0, 3, 15, 20, 255], size=(HEIGHT // 2, WIDTH // 2), p=[0.4, 0.2, 0.2, 0.1, 0.1])
    return np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1).astype(np.uint8)


@pytest.fixture
def voc_root(tmp_path):
    base = tmp_path / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "Annotations", "SegmentationClass", "SegmentationClassAug", "ImageSets/Segmentation"):
        (base / folder).mkdir(parents=True)
    names = ["2007_000032", "2007_000039", "2008_000002"]
    rng = np.random.default_rng(0)
    masks = {}
    for k, name in enumerate(names):
        rgb = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(base / "JPEGImages" / f"{name}.jpg", quality=95)
        masks[name] = _block_mask(k)
        # The XML names the classes of the mask (the usual case; the tests below tell them apart).
        present = sorted(set(np.unique(masks[name]).tolist()) - {0, 255})
        write_annotation(base / "Annotations" / f"{name}.xml", [VOC_CLASS_NAMES[c] for c in present])
        palette_png = Image.fromarray(masks[name], mode="P")
        palette_png.putpalette(VOC_PALETTE.flatten().tolist())
        palette_png.save(base / "SegmentationClass" / f"{name}.png")
        # SBD's converted masks: grey PNGs; give them different content to tell the folders apart.
        aug_mask = Image.fromarray(np.flipud(masks[name]).copy(), mode="L")
        aug_mask.save(base / "SegmentationClassAug" / f"{name}.png")
    lists = base / "ImageSets" / "Segmentation"
    (lists / "train.txt").write_text("2007_000032\n2007_000039\n")
    (lists / "val.txt").write_text("2008_000002\n\n")
    (lists / "train_aug.txt").write_text(
        "/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png\n2008_000002\n"
    )
    return tmp_path, base, masks


def test_reads_masks_pixel_exactly_and_labels_from_them(voc_root):
    root, base, masks = voc_root
    dataset = VOCSegmentation(str(root), split="train")
    assert len(dataset) == 2 and dataset.num_classes == 21 and dataset.class_names[15] == "person"
    sample = dataset[1]
    assert sample["name"] == "voc-2007_000039" and sample["index"] == 1
    assert sample["mask"].dtype == torch.int64
    assert np.array_equal(sample["mask"].numpy(), masks["2007_000039"])
    decoded = np.asarray(Image.open(base / "JPEGImages" / "2007_000039.jpg").convert("RGB"))
    assert np.array_equal(sample["rgb"].numpy(), decoded)
    present = set(np.unique(masks["2007_000039"]).tolist()) - {255}
    expected = np.zeros(21, np.float32)
    expected[list(present | {0})] = 1
    assert np.array_equal(sample["class_labels"].numpy(), expected)
    assert sample["image"].shape == (3, HEIGHT, WIDTH)


def test_train_aug_uses_the_sbd_masks_and_deeplab_style_lists(voc_root):
    root, base, masks = voc_root
    dataset = VOCSegmentation(str(root), split="train_aug")
    assert dataset.names == ["2007_000032", "2008_000002"]
    assert np.array_equal(dataset[0]["mask"].numpy(), np.flipud(masks["2007_000032"]))
    assert np.array_equal(dataset[1]["mask"].numpy(), np.flipud(masks["2008_000002"]))


@pytest.mark.parametrize("level", ["", "VOCdevkit", "VOCdevkit/VOC2012"])
def test_root_may_point_at_any_level(voc_root, level):
    root, _, masks = voc_root
    dataset = build_dataset("voc", "val", root=os.path.join(str(root), level))
    assert np.array_equal(dataset[0]["mask"].numpy(), masks["2008_000002"])


def test_image_size_crop_resizes_the_shorter_side_and_centre_crops(voc_root):
    root, _, masks = voc_root
    sample = VOCSegmentation(str(root), split="val", image_size=10)[0]
    assert sample["rgb"].shape == (10, 10, 3) and sample["mask"].shape == (10, 10)
    # 20x30 -> 10x15 (one label per 2x2 block), then columns 2..11 of the 15.
    expected = masks["2008_000002"][::2, ::2][:, 2:12]
    assert np.array_equal(sample["mask"].numpy(), expected)
    assert sample["name"] == "voc-2008_000002-px10crop"


def test_image_size_pad_resizes_the_longer_side_and_pads_with_ignore(voc_root):
    root, _, masks = voc_root
    sample = VOCSegmentation(str(root), split="val", image_size=15, fit="pad")[0]
    mask, rgb = sample["mask"].numpy(), sample["rgb"].numpy()
    assert mask.shape == (15, 15)
    # 20x30 -> 10x15, centred: 2 padded rows above, 3 below.
    assert np.all(mask[:2] == 255) and np.all(mask[12:] == 255)
    assert np.array_equal(mask[2:12], masks["2008_000002"][::2, ::2])
    assert np.all(rgb[:2] == np.array(mean_rgb_uint8())) and np.all(rgb[12:] == np.array(mean_rgb_uint8()))
    assert float(sample["image"][:, :2].abs().max()) < 0.02  # padding normalises to ~0


def test_fixed_size_batches_collate(voc_root):
    root, _, _ = voc_root
    batch = next(iter(DataLoader(VOCSegmentation(str(root), split="train", image_size=16), batch_size=2)))
    assert batch["image"].shape == (2, 3, 16, 16) and batch["class_labels"].shape == (2, 21)


def test_unknown_split_names_the_root(voc_root):
    root, _, _ = voc_root
    with pytest.raises(ValueError, match="test") as error:
        VOCSegmentation(str(root), split="test")
    assert str(root) in str(error.value)


@pytest.mark.parametrize("kwargs", [dict(image_size=0), dict(image_size=16, fit="stretch")])
def test_bad_resize_options(voc_root, kwargs):
    with pytest.raises(ValueError):
        VOCSegmentation(str(voc_root[0]), split="val", **kwargs)


def test_missing_files_are_named(voc_root, tmp_path):
    root, base, _ = voc_root
    with pytest.raises(FileNotFoundError, match="nowhere"):
        VOCSegmentation(str(tmp_path / "nowhere"), split="val")
    os.remove(base / "JPEGImages" / "2007_000039.jpg")
    dataset = VOCSegmentation(str(root), split="train")
    with pytest.raises(FileNotFoundError, match="2007_000039.jpg"):
        dataset[1]
    os.remove(base / "SegmentationClass" / "2007_000032.png")
    with pytest.raises(FileNotFoundError, match=r"SegmentationClass.2007_000032\.png"):
        dataset[0]
    os.remove(base / "ImageSets" / "Segmentation" / "train_aug.txt")
    with pytest.raises(FileNotFoundError, match="train_aug.txt"):
        VOCSegmentation(str(root), split="train_aug")


def test_bad_masks_are_named(voc_root):
    root, base, _ = voc_root
    path = base / "SegmentationClass" / "2008_000002.png"
    values = np.full((HEIGHT, WIDTH), 30, np.uint8)
    Image.fromarray(values, mode="L").save(path)
    with pytest.raises(ValueError, match=r"2008_000002\.png.*\[30\]"):
        VOCSegmentation(str(root), split="val")[0]
    Image.fromarray(np.zeros((HEIGHT, WIDTH, 3), np.uint8)).save(path)
    with pytest.raises(ValueError, match=r"2008_000002\.png.*mode 'RGB'"):
        VOCSegmentation(str(root), split="val")[0]
    Image.fromarray(np.zeros((HEIGHT, WIDTH + 2), np.uint8), mode="L").save(path)
    with pytest.raises(ValueError, match=r"2008_000002\.png"):
        VOCSegmentation(str(root), split="val")[0]
    path.write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"2008_000002\.png"):
        VOCSegmentation(str(root), split="val")[0]


def test_image_labels_come_from_the_xml_not_the_mask(voc_root):
    root, base, masks = voc_root
    # Objects the mask does not show (a difficult bottle; the person's "head" part is no class).
    write_annotation(base / "Annotations" / "2007_000039.xml", ["bottle", "person", "bottle"])
    labels = VOCSegmentation(str(root), split="train")[1]["class_labels"].numpy()
    assert np.flatnonzero(labels).tolist() == [0, 5, 15]


def test_training_needs_no_masks(voc_root):
    root, base, _ = voc_root
    shutil.rmtree(base / "SegmentationClassAug")
    dataset = VOCSegmentation(str(root), split="train_aug", image_size=8)
    sample = dataset[0]
    assert np.all(sample["mask"].numpy() == 255) and sample["mask"].shape == (8, 8)
    assert sample["class_labels"][0] == 1 and sample["class_labels"].sum() > 1
    assert check_files(dataset, progress=False) == []


def test_bad_annotations_are_all_named_in_one_error(voc_root):
    root, base, _ = voc_root
    (base / "Annotations" / "2007_000032.xml").write_text("<annotation><object><name>dog</name>")
    write_annotation(base / "Annotations" / "2007_000039.xml", ["dog", "unicorn"])
    with pytest.raises(ValueError) as error:
        VOCSegmentation(str(root), split="train")
    message = str(error.value)
    assert "2 bad VOC annotation(s)" in message
    assert "malformed XML annotation" in message and "2007_000032.xml" in message
    assert "2007_000039.xml names unknown classes ['unicorn']" in message
    os.remove(base / "Annotations" / "2008_000002.xml")
    with pytest.raises(ValueError, match=r"image labels not found: .*2008_000002\.xml"):
        VOCSegmentation(str(root), split="val")


def test_file_checks_report_every_bad_file_together(voc_root):
    root, base, _ = voc_root
    train, val = VOCSegmentation(str(root), split="train"), VOCSegmentation(str(root), split="val")
    assert check_files(train, progress=False) == [] and check_files(val, progress=False) == []
    verify_datasets(train, val, progress=False)
    os.remove(base / "JPEGImages" / "2007_000032.jpg")
    Image.fromarray(np.zeros((HEIGHT, WIDTH, 3), np.uint8)).save(base / "SegmentationClass" / "2007_000039.png")
    (base / "JPEGImages" / "2008_000002.jpg").write_bytes(b"no jpeg at all")
    with pytest.raises(ValueError) as error:
        verify_datasets(train, val, progress=False)
    lines = str(error.value).splitlines()
    assert lines[0] == "3 bad file(s) in the data sets:"
    assert "image not found" in lines[1] and "2007_000032.jpg" in lines[1]
    assert "2007_000039.png has mode 'RGB'" in lines[2]
    assert "cannot read image" in lines[3] and "2008_000002.jpg" in lines[3]
    Image.fromarray(np.zeros((HEIGHT, WIDTH + 1), np.uint8), mode="L").save(
        base / "SegmentationClass" / "2007_000039.png")
    assert check_files(train, progress=False)[1].endswith(f"is {WIDTH + 1}x{HEIGHT}, its image "
                                                          f"{base / 'JPEGImages' / '2007_000039.jpg'} is {WIDTH}x{HEIGHT}")
    os.remove(base / "SegmentationClass" / "2007_000039.png")
    assert "label mask not found" in check_files(train, progress=False)[1]
