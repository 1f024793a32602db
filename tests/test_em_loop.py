"""The EM loop end to end on a tiny synthetic set: tables, checkpoints, figures, resume, DDP."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ial_ext.crf import crf_available
from ial_ext.train.checkpoint import load_checkpoint, step_path
from ial_ext.train.config import Config
from ial_ext.train.em import run_em
from ial_ext.train.label_store import LabelStore


def tiny_config(output_dir, steps=2, **loop) -> Config:
    config = Config()
    config.data.image_size = 32
    config.data.train_images = 8
    config.data.val_images = 4
    config.data.object_classes = 3
    for optim in (config.classifier, config.unary, config.pairwise, config.region):
        optim.iterations = 2
        optim.batch_size = 4
    config.loop.steps = steps
    config.loop.energy_images = 2
    config.run.output_dir = str(output_dir)
    config.run.progress = False
    config.run.figure_images = 2
    for key, value in loop.items():
        setattr(config.loop, key, value)
    return config


def stages(rows):
    return [(row["step"], row["stage"]) for row in rows]


def test_two_step_loop_writes_table_checkpoints_and_figures(tmp_path):
    rows = run_em(tiny_config(tmp_path))
    assert stages(rows) == [
        (0, "seeds"),
        (1, "unary"), (1, "mined"), (1, "pairwise"),
        (2, "unary"), (2, "mined"), (2, "pairwise"),
    ]
    for row in rows:
        assert 0 <= row["train_miou"] <= 1 and 0 <= row["train_precision"] <= 1
    for row in rows:
        if row["stage"] == "pairwise":
            assert 0 <= row["val_miou"] <= 1 and row["energy"] is not None
    assert rows[0]["coverage"] < 1  # seeds leave unknown pixels
    assert json.load(open(tmp_path / "table.json")) == rows
    assert (tmp_path / "table.csv").read_text().startswith("step,stage,train_miou")
    for step in (1, 2):
        assert (tmp_path / "figures" / f"step_{step}.png").is_file()
    state = load_checkpoint(step_path(str(tmp_path / "checkpoints"), 2))
    assert set(state["models"]) == {"unary", "region", "pairwise"}
    # The checkpoint names the labels that supervise step 3; they are on disk, one PNG per image.
    assert state["labels"] == os.path.join("labels", "step_2", "refined")
    store = LabelStore(str(tmp_path / state["labels"]))
    assert store.complete and store.read(7).shape == (32, 32) and store.read(7).dtype == np.uint8


def test_resume_gives_the_uninterrupted_result(tmp_path):
    uninterrupted = run_em(tiny_config(tmp_path / "a"))
    run_em(tiny_config(tmp_path / "b", steps=1))
    resumed_config = tiny_config(tmp_path / "b")
    resumed_config.run.resume = True
    assert run_em(resumed_config) == uninterrupted


def test_resume_refuses_changed_settings(tmp_path):
    run_em(tiny_config(tmp_path, steps=1))
    changed = tiny_config(tmp_path)
    changed.run.resume = True
    changed.unary.lr = 0.5
    with pytest.raises(ValueError, match="unary.lr"):
        run_em(changed)


def test_ablations_change_the_stages(tmp_path):
    no_mining = run_em(tiny_config(tmp_path / "m", steps=1, mining=False))
    assert stages(no_mining) == [(0, "seeds"), (1, "unary"), (1, "pairwise")]
    no_pairwise = run_em(tiny_config(tmp_path / "p", steps=1, pairwise=False))
    assert stages(no_pairwise) == [(0, "seeds"), (1, "unary"), (1, "mined")]
    assert no_pairwise[1]["val_miou"] is not None  # the unary network is the final output there


def test_cross_fitted_mining_scores_every_image(tmp_path):
    config = tiny_config(tmp_path, steps=1)
    config.mining.folds = 2
    # No confidence exceeds 1: every image must come out all unknown. An image that no
    # fold's network scored would keep the zeros (background) it starts with.
    config.mining.confidence = 1.0
    mined = run_em(config)[2]
    assert mined["stage"] == "mined" and mined["coverage"] == 0


@pytest.mark.slow
def test_two_processes_with_torchrun(tmp_path):
    """The same command under torchrun: DDP over gloo, rank 0 writes the results."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
        "-m", "ial_ext.cli", "train",
        "--data.image_size", "32", "--data.train_images", "8", "--data.val_images", "4",
        "--data.object_classes", "3", "--loop.steps", "1", "--loop.energy_images", "2",
        "--run.output_dir", str(tmp_path), "--no-run.progress", "--run.threads", "1",
    ]
    for network in ("classifier", "unary", "pairwise", "region"):
        command += [f"--{network}.iterations", "2", f"--{network}.batch_size", "4"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.load(open(tmp_path / "table.json"))
    assert stages(rows) == [(0, "seeds"), (1, "unary"), (1, "mined"), (1, "pairwise")]
    assert result.stdout.count("step  stage") == 2  # rank 0 alone printed the table, after steps 0 and 1
    # Each process wrote the labels of its own shard: together, every image.
    store = LabelStore(str(tmp_path / "labels" / "step_1" / "refined"))
    assert store.complete and all(store.read(index).shape == (32, 32) for index in range(8))


def test_processes_exchange_score_counts_only(tmp_path, monkeypatch):
    """The only collectives of the loop are sums of score counts, (C, C + 1) at most: no
    label map of the data set travels between processes."""
    from ial_ext.train.runtime import Runtime

    sizes = []
    original = Runtime.all_reduce

    def recording(self, tensor):
        sizes.append(tensor.numel())
        return original(self, tensor)

    monkeypatch.setattr(Runtime, "all_reduce", recording)
    run_em(tiny_config(tmp_path, steps=1))
    assert sizes and max(sizes) <= 4 * 5  # 4 classes: the (4, 5) confusion matrix


def test_ial_infer_writes_palette_label_maps(tmp_path):
    import numpy as np
    from PIL import Image

    from ial_ext.data import SyntheticDataset
    from ial_ext.train.inference_cli import infer_images

    run_em(tiny_config(tmp_path / "run", steps=1))
    images = tmp_path / "images"
    images.mkdir()
    sample = SyntheticDataset("val", num_images=1, image_size=40, num_object_classes=3)[0]
    Image.fromarray(sample["rgb"].numpy()).save(images / "scene.png")
    written = infer_images(str(step_path(str(tmp_path / "run" / "checkpoints"), 1)), [str(images)],
                           str(tmp_path / "labels"), device="cpu")
    assert written == [str(tmp_path / "labels" / "scene.png")]
    labels = Image.open(written[0])
    assert labels.mode == "P" and labels.size == (40, 40)
    assert np.asarray(labels).max() < 4  # background + 3 object classes
    with pytest.raises(Exception, match="no such image or folder"):
        infer_images(str(step_path(str(tmp_path / "run" / "checkpoints"), 1)), [str(images / "missing.png")],
                     str(tmp_path / "labels"))


@pytest.mark.skipif(not crf_available(), reason='needs pydensecrf2 (pip install "ial_ext[crf]")')
def test_the_dense_crf_on_seeds_evaluation_and_infer(tmp_path, capsys):
    from PIL import Image

    from ial_ext.data import SyntheticDataset
    from ial_ext.train.inference_cli import evaluate_checkpoint, infer_images

    config = tiny_config(tmp_path / "run", steps=1)
    config.seeds.crf, config.seeds.crf_iterations = True, 3
    rows = run_em(config)
    assert stages(rows)[0] == (0, "seeds")
    checkpoint = str(step_path(str(tmp_path / "run" / "checkpoints"), 1))
    scores = evaluate_checkpoint(checkpoint, config, "val", crf_iterations=3)
    assert set(scores) == {"unary_miou", "pairwise_miou"} and all(0 <= v <= 1 for v in scores.values())
    images = tmp_path / "images"
    images.mkdir()
    sample = SyntheticDataset("val", num_images=1, image_size=40, num_object_classes=3)[0]
    Image.fromarray(sample["rgb"].numpy()).save(images / "scene.png")
    written = infer_images(checkpoint, [str(images)], str(tmp_path / "labels"), device="cpu", crf_iterations=3)
    labels = np.asarray(Image.open(written[0]))
    assert labels.shape == (40, 40) and labels.max() < 4
