"""The `folder` data set: your own images, a labels file and a class list; masks optional."""
import math
import os

import numpy as np
import pytest
from PIL import Image

from ial_ext.data import FolderDataset, build_dataset, check_files
from ial_ext.train.config import Config
from ial_ext.train.em import run_em

CLASSES = ["dog", "person", "dining table"]
HEIGHT, WIDTH = 12, 16


def write_folder(root, lines, masks=None, classes=CLASSES, images=("a.png", "b.jpg", "park/c.png", "d.png")):
    """A folder set: random images, classes.txt, train.csv (`lines`), masks {image: array}."""
    rng = np.random.default_rng(0)
    for name in images:
        path = root / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(path)
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    for name, mask in (masks or {}).items():
        path = root / "masks" / (os.path.splitext(name)[0] + ".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask.astype(np.uint8), mode="L").save(path)
    return root


GOOD_LINES = [
    "# image, classes",
    "a.png, dog",
    "",
    "b.jpg, dog, person",
    '"park/c.png", dining table, person',
    "d.png, background",
]


def test_labels_come_from_the_labels_file_and_masks_only_score(tmp_path):
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[2:6, 3:9] = 1
    mask[0] = 255
    write_folder(tmp_path, GOOD_LINES, masks={"a.png": mask})
    dataset = FolderDataset(str(tmp_path), "train")
    assert dataset.class_names == ["background", "dog", "person", "dining table"] and dataset.num_classes == 4
    assert dataset.images == ["a.png", "b.jpg", "park/c.png", "d.png"]
    labels = [np.flatnonzero(dataset[i]["class_labels"].numpy()).tolist() for i in range(4)]
    assert labels == [[0, 1], [0, 1, 2], [0, 2, 3], [0]]
    assert np.array_equal(dataset[0]["mask"].numpy(), mask)
    for index in (1, 2, 3):  # no mask: unknown everywhere, so no score counts the image
        assert np.all(dataset[index]["mask"].numpy() == 255)
    sample = dataset[2]
    decoded = np.asarray(Image.open(tmp_path / "images" / "park" / "c.png").convert("RGB"))
    assert np.array_equal(sample["rgb"].numpy(), decoded) and sample["name"] == "folder-park/c.png"
    assert check_files(dataset, progress=False) == []


def test_background_first_in_the_class_list_is_allowed(tmp_path):
    write_folder(tmp_path, GOOD_LINES, classes=["background"] + CLASSES)
    assert FolderDataset(str(tmp_path)).class_names == ["background"] + CLASSES


def test_split_may_name_a_labels_file_and_sizes_fit(tmp_path):
    write_folder(tmp_path, GOOD_LINES)
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "mine.csv").write_text("b.jpg, person\n")
    dataset = build_dataset("folder", "lists/mine.csv", root=str(tmp_path), image_size=8)
    assert len(dataset) == 1 and dataset[0]["image"].shape == (3, 8, 8)
    assert dataset[0]["name"] == "folder-b.jpg-px8crop"
    absolute = build_dataset("folder", str(tmp_path / "lists" / "mine.csv"), root=str(tmp_path))
    assert absolute.images == ["b.jpg"]


def test_every_problem_of_the_labels_file_is_named_in_one_error(tmp_path):
    write_folder(tmp_path, [
        "a.png, dog",
        "a.png, person",          # listed twice
        "b.jpg",                  # no classes
        "park/c.png, cat, dog",   # unknown class
        "missing.jpg, dog",       # no such image
    ])
    with pytest.raises(ValueError) as error:
        FolderDataset(str(tmp_path))
    lines = str(error.value).splitlines()
    assert lines[0].startswith("4 problem(s) in labels file") and "train.csv" in lines[0]
    assert "classes: dog, person, dining table" in lines[0]
    assert lines[1:] == [
        "  line 2: a.png is listed again (first on line 1)",
        "  line 3: b.jpg has no classes (write 'background' for an image without objects)",
        "  line 4: park/c.png names unknown classes ['cat']",
        f"  line 5: missing.jpg: image not found: {tmp_path / 'images' / 'missing.jpg'}",
    ]


@pytest.mark.parametrize("classes, message", [
    ([], "names no object class"),
    (["dog", "dog"], "more than once: ['dog']"),
    (["dog", "background"], "'background' may only be the first line"),
    ([f"c{k}" for k in range(255)], "255 object classes do not fit"),
])
def test_bad_class_lists(tmp_path, classes, message):
    write_folder(tmp_path, ["a.png, background"], classes=classes)
    with pytest.raises(ValueError, match="bad class list .*classes.txt") as error:
        FolderDataset(str(tmp_path))
    assert message in str(error.value)


def test_missing_pieces_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="data set folder not found"):
        FolderDataset(str(tmp_path / "nowhere"))
    write_folder(tmp_path, ["# only a comment"])
    with pytest.raises(ValueError, match="it lists no image"):
        FolderDataset(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"labels file not found: .*val\.csv"):
        FolderDataset(str(tmp_path), "val")
    os.remove(tmp_path / "classes.txt")
    with pytest.raises(FileNotFoundError, match="class list not found"):
        FolderDataset(str(tmp_path))


def test_bad_masks_are_reported_by_the_file_checks_and_on_loading(tmp_path):
    write_folder(tmp_path, GOOD_LINES, masks={"b.jpg": np.zeros((HEIGHT + 1, WIDTH)), "d.png": np.full((HEIGHT, WIDTH), 9)})
    dataset = FolderDataset(str(tmp_path))
    problems = check_files(dataset, progress=False)
    assert len(problems) == 1 and f"b.png is {WIDTH}x{HEIGHT + 1}" in problems[0]
    with pytest.raises(ValueError, match=r"b\.png"):
        dataset[1]
    with pytest.raises(ValueError, match=r"d\.png holds values \[9\]"):
        dataset[3]


def test_exif_orientation_is_applied_to_images_and_their_size(tmp_path):
    # Stored 16 wide x 12 high, EXIF orientation 6: shown (and read) 12 wide x 16 high.
    write_folder(tmp_path, ["a.png, dog", "rotated.jpg, person"], images=("a.png",))
    stored = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    stored[:, :4] = 255  # left band of the stored picture: the top band once turned
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "images" / "rotated.jpg", exif=exif, quality=100)
    mask = np.zeros((WIDTH, HEIGHT), np.uint8)  # drawn on the upright picture
    (tmp_path / "masks").mkdir()
    Image.fromarray(mask, mode="L").save(tmp_path / "masks" / "rotated.png")
    dataset = FolderDataset(str(tmp_path))
    rgb = dataset[1]["rgb"].numpy()
    assert rgb.shape == (WIDTH, HEIGHT, 3)
    assert rgb[:3].mean() > 200 and rgb[-3:].mean() < 50
    assert check_files(dataset, progress=False) == []


def write_folder_set(root):
    """8 training and 4 validation images of 3 classes; masks for val images 0 and 2 only."""
    from ial_ext.data import SyntheticDataset

    for split, count in (("train", 8), ("val", 4)):
        source = SyntheticDataset(split, num_images=count, image_size=32, num_object_classes=3)
        lines = []
        for index in range(count):
            sample = source[index]
            name = f"{split}_{index}.png"
            (root / "images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(sample["rgb"].numpy()).save(root / "images" / name)
            present = [source.class_names[c] for c in np.flatnonzero(sample["class_labels"].numpy()) if c]
            lines.append(", ".join([name] + present))
            if split == "val" and index % 2 == 0:
                (root / "masks").mkdir(exist_ok=True)
                Image.fromarray(sample["mask"].numpy().astype(np.uint8), mode="L").save(root / "masks" / f"{split}_{index}.png")
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("\n".join(source.class_names[1:]) + "\n")


def tiny_folder_config(root, output_dir) -> Config:
    config = Config()
    config.data.dataset, config.data.root, config.data.image_size = "folder", str(root), 32
    for optim in (config.classifier, config.unary, config.pairwise, config.region):
        optim.iterations, optim.batch_size = 2, 4
    config.loop.steps, config.loop.energy_images = 1, 2
    config.run.output_dir, config.run.progress, config.run.figure_images = str(output_dir), False, 2
    return config


def test_a_folder_set_trains_end_to_end(tmp_path):
    """The EM loop on a folder set where only half of the validation images have masks."""
    root = tmp_path / "data"
    write_folder_set(root)
    config = tiny_folder_config(root, tmp_path / "run")
    rows = run_em(config)
    assert [row["stage"] for row in rows] == ["seeds", "unary", "mined", "pairwise"]
    # No training image has a mask: nothing to score there. The two masked val images are scored.
    assert all(math.isnan(row["train_miou"]) for row in rows)
    assert 0 <= rows[-1]["val_miou"] <= 1


def test_bad_validation_files_stop_the_run_before_any_training(tmp_path):
    """A corrupt image and a mask of the wrong size in the val split: one error names both, and
    nothing is trained (no checkpoint written)."""
    root = tmp_path / "data"
    write_folder_set(root)
    (root / "images" / "val_1.png").write_bytes(b"not a png")
    Image.new("L", (16, 16)).save(root / "masks" / "val_2.png")
    with pytest.raises(ValueError, match="2 bad file") as error:
        run_em(tiny_folder_config(root, tmp_path / "run"))
    assert "val_1.png" in str(error.value) and "val_2.png" in str(error.value)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())
