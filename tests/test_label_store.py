"""The label store: atomic writes, reading back, continuing a pass, and memory that does not grow
with the data set."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from ial_ext.train.label_store import COMPLETE, LabelStore, LabelStoreError
from ial_ext.train.passes import label_pass
from ial_ext.train.runtime import Runtime


def labels_of(index: int, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(index)
    labels = rng.integers(0, 21, (size, size), dtype=np.uint8)
    labels[: size // 4] = 255
    return labels


def test_written_labels_read_back_exactly(tmp_path):
    store = LabelStore(str(tmp_path / "unary"))
    store.prepare("networks-a")
    for index in (0, 3, 1234567):
        store.write(index, labels_of(index))
    for index in (0, 3, 1234567):
        assert np.array_equal(store.read(index), labels_of(index))
    assert store.read_if_present(1) is None
    with pytest.raises(LabelStoreError, match="0000001.png"):
        store.read(1)
    with pytest.raises(ValueError, match="uint8"):
        store.write(2, labels_of(2).astype(np.int64))
    assert not store.complete
    with pytest.raises(LabelStoreError, match="incomplete"):
        store.summary()
    store.finish({"class_pixels": [1, 2]})
    assert store.complete and store.summary() == {"class_pixels": [1, 2]}


def test_a_truncated_file_is_no_labels_and_other_networks_start_over(tmp_path):
    store = LabelStore(str(tmp_path / "mined"))
    store.prepare("networks-a")
    store.write(0, labels_of(0))
    store.write(1, labels_of(1))
    whole = open(store.path(1), "rb").read()
    with open(store.path(1), "wb") as handle:
        handle.write(whole[: len(whole) // 2])  # as a machine crash could leave it
    assert store.read_if_present(1) is None
    store.prepare("networks-a")  # the same networks continue: what they wrote stays
    assert np.array_equal(store.read(0), labels_of(0))
    store.prepare("networks-b")  # other networks: nothing of the old labels may be taken for theirs
    assert store.read_if_present(0) is None and sorted(os.listdir(store.directory)) == ["key.txt"]


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from ial_ext.train.label_store import LabelStore
    sys.path.insert(0, sys.argv[2])
    from test_label_store import labels_of
    store = LabelStore(sys.argv[1])
    store.prepare("k")
    print("ready", flush=True)
    index = 0
    while True:
        store.write(index, labels_of(index, 256))
        index += 1
""")


def test_a_killed_writer_leaves_whole_files_or_none(tmp_path):
    directory = str(tmp_path / "store")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, directory, os.path.dirname(__file__)],
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    store = LabelStore(directory)
    written = sorted(int(name[:-4]) for name in os.listdir(directory) if name.endswith(".png"))
    assert len(written) > 5
    assert written == list(range(len(written)))  # in order, no gap, nothing half-named
    for index in written:
        assert np.array_equal(store.read(index), labels_of(index, 256))


class ConstantImages(torch.utils.data.Dataset):
    """N images of one size, cheap to make: a pass over them costs what the pass itself keeps."""

    num_classes = 3

    def __init__(self, size: int, side: int = 64):
        self.size, self.side = size, side

    def __len__(self):
        return self.size

    def __getitem__(self, key):
        index = key[0] if isinstance(key, tuple) else key
        mask = torch.full((self.side, self.side), index % 3, dtype=torch.int64)
        return {"image": torch.zeros(3, self.side, self.side), "class_labels": torch.ones(3), "mask": mask,
                "index": index}


def test_a_pass_writes_every_image_and_scores_per_batch(tmp_path):
    runtime = Runtime(device=torch.device("cpu"), progress=False)
    store = LabelStore(str(tmp_path / "pass"))
    dataset = ConstantImages(37, side=16)
    predict = lambda batch: (batch["index"] % 2)[:, None, None].expand(-1, 16, 16)  # noqa: E731
    result = label_pass(runtime, dataset, predict, 3, "pass", store, key="k")
    assert store.complete and json.load(open(os.path.join(store.directory, COMPLETE)))["confusion"]
    for index in range(37):
        assert (store.read(index) == index % 2).all()
    # truth index % 3 against prediction index % 2, counted pixel by pixel
    expected = torch.zeros(3, 4, dtype=torch.int64)
    for index in range(37):
        expected[index % 3, index % 2] += 16 * 16
    assert torch.equal(result.confusion.counts, expected)
    assert result.class_pixels.tolist() == [19 * 256, 18 * 256, 0]
    # A second pass by the same networks reads the labels back instead of predicting them.
    again = label_pass(runtime, dataset, lambda batch: pytest.fail("predicted again"), 3, "pass", store, key="k")
    assert torch.equal(again.confusion.counts, expected)


PASS_MEMORY = textwrap.dedent("""
    import resource, sys, torch
    sys.path.insert(0, sys.argv[3])
    from test_label_store import ConstantImages
    from ial_ext.train.label_store import LabelStore
    from ial_ext.train.passes import label_pass
    from ial_ext.train.runtime import Runtime
    runtime = Runtime(device=torch.device("cpu"), progress=False)
    dataset = ConstantImages(int(sys.argv[2]))
    predict = lambda batch: torch.zeros(len(batch["index"]), 64, 64, dtype=torch.long)
    label_pass(runtime, dataset, predict, 3, "pass", LabelStore(sys.argv[1]), key="k")
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
""")


@pytest.mark.slow
def test_a_pass_keeps_nothing_the_size_of_the_data_set(tmp_path):
    """Peak RSS of a pass over 300 and over 3,000 images of 64 x 64: the labels go to disk,
    so it must not grow by anything like the (N, H, W) uint8 map (1 byte per pixel)."""
    peaks = {}
    for images in (300, 3000):
        result = subprocess.run(
            [sys.executable, "-c", PASS_MEMORY, str(tmp_path / f"store{images}"), str(images),
             os.path.dirname(__file__)], capture_output=True, text=True, timeout=300,
            env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert result.returncode == 0, result.stderr[-2000:]
        peaks[images] = int(result.stdout.split()[-1])
    growth_per_pixel = (peaks[3000] - peaks[300]) / (2700 * 64 * 64)
    assert growth_per_pixel < 0.25, f"peak RSS grew by {growth_per_pixel:.2f} bytes per pixel"
