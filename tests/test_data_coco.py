"""The COCO 2014 reader: polygon / RLE decoding (pycocotools) and the painting rules, on hand-made fixtures."""
import json
import os

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from ial_ext.data import build_dataset
from ial_ext.data.coco import COCOSegmentation
from ial_ext.data.coco_masks import polygons_to_mask, rle_to_mask
from ial_ext.data.files import check_files
from pycocotools import mask as coco_mask

# The 80 COCO category ids (with their gaps); they must map to classes 1..80 in id order.
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
H, W = 6, 8


def _instances():
    categories = [{"id": i, "name": f"cat{i}", "supercategory": "x"} for i in COCO_IDS]
    categories[0]["name"] = "person"
    images = [  # out of id order on purpose: the reader sorts by id
        {"id": 42, "file_name": "COCO_val2014_000000000042.jpg", "height": H, "width": W},
        {"id": 7, "file_name": "COCO_val2014_000000000007.jpg", "height": H, "width": W},
        {"id": 9, "file_name": "COCO_val2014_000000000009.jpg", "height": H, "width": W},
    ]
    annotations = [
        # person, polygon: the rectangle x in [0, 4), y in [0, 3) -> rows 0-2, cols 0-3 (area 12)
        {"id": 1, "image_id": 42, "category_id": 1, "iscrowd": 0, "segmentation": [[0, 0, 4, 0, 4, 3, 0, 3]]},
        # car (id 3), uncompressed RLE, column-major: rows 2-4 of columns 2-3 (area 6), smaller: wins
        {"id": 2, "image_id": 42, "category_id": 3, "iscrowd": 0,
         "segmentation": {"counts": [14, 3, 3, 3, 25], "size": [H, W]}},
        # toothbrush (id 90 -> 80), compressed RLE "Z16" = runs [42, 6]: all of column 7 (area 6)
        {"id": 3, "image_id": 42, "category_id": 90, "iscrowd": 0,
         "segmentation": {"counts": "Z16", "size": [H, W]}},
        # stop sign (id 13 -> 12), two polygons of 3 pixels each: rows 3-5 of columns 6 and 7 (area 6,
        # as large as the toothbrush and later in the file: it wins on column 7)
        {"id": 4, "image_id": 42, "category_id": 13, "iscrowd": 0,
         "segmentation": [[6, 3, 7, 3, 7, 6, 6, 6], [7, 3, 8, 3, 8, 6, 7, 6]]},
        # crowd of persons, rows 2-5 of columns 0-1: ignore, except where the person instance lies
        {"id": 5, "image_id": 42, "category_id": 1, "iscrowd": 1,
         "segmentation": {"counts": [2, 4, 2, 4, 36], "size": [H, W]}},
        # image 9 holds only a crowd region
        {"id": 6, "image_id": 9, "category_id": 18, "iscrowd": 1,
         "segmentation": {"counts": [0, 48], "size": [H, W]}},
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def _expected_mask_42():
    mask = np.zeros((H, W), np.uint8)
    mask[3:6, 0:2] = 255
    mask[0:3, 0:4] = 1
    mask[2:5, 2:4] = 3
    mask[:, 7] = 80
    mask[3:6, 6:8] = 12
    return mask


def _write(root, content, split="val2014"):
    (root / "annotations").mkdir(exist_ok=True)
    path = root / "annotations" / f"instances_{split}.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.fixture
def coco_root(tmp_path):
    (tmp_path / "val2014").mkdir()
    rng = np.random.default_rng(0)
    for image in _instances()["images"]:
        pixels = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "val2014" / image["file_name"])
    _write(tmp_path, _instances())
    return tmp_path


def test_compressed_rle_strings_decode_as_written_by_hand():
    # "Z16" = runs [42, 6]: 42 = 10 + 1 * 32 ('Z' is 10 | 0x20, then '1'), then 6: the last column.
    expected = np.zeros((H, W), bool)
    expected[:, 7] = True
    assert np.array_equal(rle_to_mask({"counts": "Z16", "size": [H, W]}, H, W), expected)
    # From the 4th count on, deltas to the count two earlier: "5320O" = runs [5, 3, 2, 3, 1] of 14 pixels.
    runs = rle_to_mask({"counts": "5320O", "size": [2, 7]}, 2, 7)
    assert np.array_equal(runs.T.reshape(-1), np.repeat([0, 1, 0, 1, 0], [5, 3, 2, 3, 1]).astype(bool))
    # What pycocotools encodes decodes back, bytes or str.
    random = np.asfortranarray(np.random.default_rng(0).random((37, 23)) < 0.3, dtype=np.uint8)
    encoded = coco_mask.encode(random)
    assert np.array_equal(rle_to_mask(encoded, 37, 23), random.astype(bool))
    assert np.array_equal(rle_to_mask({**encoded, "counts": encoded["counts"].decode()}, 37, 23), random.astype(bool))


def test_rle_is_column_major_and_polygons_cover_pixel_centres():
    rle = rle_to_mask({"counts": [1, 2, 9], "size": [3, 4]}, 3, 4)
    expected = np.zeros((3, 4), bool)
    expected[1:3, 0] = True  # first column, rows 1-2
    assert np.array_equal(rle, expected)
    assert np.array_equal(rle_to_mask({"counts": "129", "size": [3, 4]}, 3, 4), expected)
    square = polygons_to_mask([[1, 1, 3, 1, 3, 3, 1, 3]], 4, 5)  # 2x2 pixels at rows/cols 1-2
    expected = np.zeros((4, 5), bool)
    expected[1:3, 1:3] = True
    assert np.array_equal(square, expected)


def test_label_map_follows_the_painting_rules(coco_root):
    dataset = COCOSegmentation(str(coco_root), split="val2014")
    assert dataset.num_classes == 81 and dataset.class_names[:2] == ["background", "person"]
    assert dataset.class_names[80] == "cat90" and dataset.class_names[12] == "cat13"
    assert [im["id"] for im in dataset.images] == [7, 9, 42]
    sample = dataset[2]
    assert np.array_equal(sample["mask"].numpy(), _expected_mask_42())
    labels = np.zeros(81, np.float32)
    labels[[0, 1, 3, 12, 80]] = 1
    assert np.array_equal(sample["class_labels"].numpy(), labels)
    assert sample["name"] == "coco-val2014-42" and sample["rgb"].shape == (H, W, 3)
    decoded = np.asarray(Image.open(coco_root / "val2014" / "COCO_val2014_000000000042.jpg").convert("RGB"))
    assert np.array_equal(sample["rgb"].numpy(), decoded)


def test_images_without_instances(coco_root):
    dataset = COCOSegmentation(str(coco_root), split="val2014")
    empty, crowd_only = dataset[0], dataset[1]
    assert np.all(empty["mask"].numpy() == 0)
    assert np.all(crowd_only["mask"].numpy() == 255)
    for sample in (empty, crowd_only):
        assert sample["class_labels"].sum() == 1 and sample["class_labels"][0] == 1
    kept = COCOSegmentation(str(coco_root), split="val2014", skip_unlabelled=True)
    assert [im["id"] for im in kept.images] == [42]


def test_image_size_and_collate(coco_root):
    dataset = build_dataset("coco", "val2014", root=str(coco_root), image_size=4, fit="pad")
    batch = next(iter(DataLoader(dataset, batch_size=3)))
    assert batch["image"].shape == (3, 3, 4, 4) and batch["mask"].shape == (3, 4, 4)
    assert batch["class_labels"].shape == (3, 81)
    # 6x8 -> 3x4, padded to 4x4 with ignore: a row of 255 below.
    assert np.all(batch["mask"][2, 3].numpy() == 255) and batch["name"][2] == "coco-val2014-42-px4pad"


def test_unknown_split_and_missing_files_are_named(coco_root, tmp_path):
    with pytest.raises(ValueError, match="train2017") as error:
        COCOSegmentation(str(coco_root), split="train2017")
    assert str(coco_root) in str(error.value)
    with pytest.raises(FileNotFoundError, match="train2014"):
        COCOSegmentation(str(coco_root), split="train2014")
    (coco_root / "train2014").mkdir()
    with pytest.raises(FileNotFoundError, match="instances_train2014.json"):
        COCOSegmentation(str(coco_root), split="train2014")
    os.remove(coco_root / "val2014" / "COCO_val2014_000000000042.jpg")
    with pytest.raises(FileNotFoundError, match="COCO_val2014_000000000042.jpg"):
        COCOSegmentation(str(coco_root), split="val2014")[2]


@pytest.mark.parametrize("break_it, pattern", [
    (lambda c: '{"images": [', "instances_val2014.json"),
    (lambda c: c.pop("categories"), "categories"),
    (lambda c: c["annotations"][0].update(category_id=12), "unknown category id 12"),
    (lambda c: c["annotations"][0].update(image_id=1000), "unknown image id 1000"),
])
def test_malformed_annotation_files_are_named(coco_root, break_it, pattern):
    content = _instances()
    broken = break_it(content)
    path = _write(coco_root, broken if isinstance(broken, str) else content)
    with pytest.raises(ValueError, match=pattern) as error:
        COCOSegmentation(str(coco_root), split="val2014")
    assert str(path) in str(error.value)


@pytest.mark.parametrize("segmentation, pattern", [
    ([[0, 0, 4, 0, 4]], "polygon"),
    ({"counts": [14, 3, 3, 3, 20], "size": [H, W]}, "43 pixels"),
    ({"counts": [48], "size": [W, H]}, "RLE size"),
    ({"counts": "Z1 6", "size": [H, W]}, "malformed compressed RLE"),
    ({"counts": "Z1", "size": [H, W]}, "do not re-encode"),  # 42 of the 48 pixels
    ({"counts": [14, 3, -3, 3, 31], "size": [H, W]}, "non-negative"),
    ([[0, 0, 4, 0]], "polygon"),  # pycocotools would read 4 numbers as a box
    ("not a segmentation", "polygon list or an RLE dict"),
])
def test_malformed_segmentations_are_named(coco_root, segmentation, pattern):
    content = _instances()
    content["annotations"][1]["segmentation"] = segmentation
    path = _write(coco_root, content)
    dataset = COCOSegmentation(str(coco_root), split="val2014")
    with pytest.raises(ValueError, match=pattern) as error:
        dataset[2]
    message = str(error.value)
    assert str(path) in message and "annotation 2 " in message and "000000000042.jpg" in message


def test_image_size_disagreeing_with_the_json_is_named(coco_root):
    content = _instances()
    content["images"][0]["height"] = H + 1
    _write(coco_root, content)
    with pytest.raises(ValueError, match="000000000042.jpg"):
        COCOSegmentation(str(coco_root), split="val2014")[2]


def test_image_labels_are_the_non_crowd_instances_classes(coco_root):
    content = _instances()
    # A sliver that covers no pixel centre: no pixel in the mask, but the image holds a bicycle.
    content["annotations"].append({"id": 7, "image_id": 42, "category_id": 2, "iscrowd": 0,
                                   "segmentation": [[5.1, 0.1, 5.3, 0.1, 5.3, 0.3]]})
    _write(coco_root, content)
    sample = COCOSegmentation(str(coco_root), split="val2014")[2]
    assert 2 not in np.unique(sample["mask"].numpy())
    assert np.flatnonzero(sample["class_labels"].numpy()).tolist() == [0, 1, 2, 3, 12, 80]


def test_file_checks_compare_images_with_the_annotation_file(coco_root):
    dataset = COCOSegmentation(str(coco_root), split="val2014")
    assert check_files(dataset, progress=False) == []
    Image.fromarray(np.zeros((H + 1, W, 3), np.uint8)).save(coco_root / "val2014" / "COCO_val2014_000000000007.jpg")
    os.remove(coco_root / "val2014" / "COCO_val2014_000000000009.jpg")
    problems = check_files(dataset, progress=False)
    assert len(problems) == 2
    assert f"is {W}x{H + 1} but {coco_root / 'annotations' / 'instances_val2014.json'} says {W}x{H}" in problems[0]
    assert problems[1].startswith("image not found") and "000000000009.jpg" in problems[1]
