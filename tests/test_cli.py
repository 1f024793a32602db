"""The `ial` command as a user meets it: settings from the checkpoint, one-line errors, exit statuses."""
import json
import os

import pytest

from ial_ext.cli import main
from ial_ext.train.checkpoint import step_path
from ial_ext.train.em import run_em
from ial_ext.train.report import CSV_CLASS_PREFIX

from .test_em_loop import tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A two-step run on the tiny synthetic set; not the defaults (image size 32, 4 val images)."""
    folder = tmp_path_factory.mktemp("run")
    config = tiny_config(folder, steps=2)
    config.data.val_images = 5
    config.run.threads = 1
    run_em(config)
    return folder


def printed_figures(text: str) -> dict:
    return {line.split(":")[0]: line.split(":")[1].strip() for line in text.splitlines() if line.startswith("val ")}


def test_evaluate_without_options_prints_the_val_figures_of_the_runs_table(run, capsys):
    rows = json.load(open(run / "table.json"))
    assert main(["evaluate", step_path(str(run / "checkpoints"), 2), "--no-run.progress"]) == 0
    text = capsys.readouterr().out
    final = rows[-1]
    assert (final["step"], final["stage"]) == (2, "pairwise")
    assert printed_figures(text)["val pairwise_miou"] == f"{100 * final['val_miou']:.1f}"
    assert "5 images, 32 px" in text  # the run's data set, not the defaults (100 images, 64 px)
    # Per-class IoU, printed and in the table files, and the confusion matrix.
    names = list(final["val_class_iou"])
    assert len(names) == 4 and names[0] == "background"
    iou_lines = text.split("per-class IoU")[1].splitlines()
    for name in names:
        assert any(line.split()[:1] == [name] for line in iou_lines)
    assert "confusion matrix of the pairwise output" in text
    header = (run / "table.csv").read_text().splitlines()[0].split(",")
    assert header[:7] == ["step", "stage", "train_miou", "train_precision", "coverage", "val_miou", "energy"]
    assert header[7:] == [CSV_CLASS_PREFIX + name for name in names]


def test_evaluate_figures_are_exactly_the_tables(run, tmp_path):
    from ial_ext.train.inference_cli import evaluate_checkpoint

    rows = json.load(open(run / "table.json"))
    output = tmp_path / "scores.json"
    scores = evaluate_checkpoint(step_path(str(run / "checkpoints"), 2), overrides={"run.progress": False},
                                 json_path=str(output))
    assert scores["pairwise_miou"] == rows[-1]["val_miou"]
    saved = json.load(open(output))["outputs"]["pairwise"]
    assert saved["class_iou"] == rows[-1]["val_class_iou"]
    assert len(saved["confusion"]) == 4 and len(saved["confusion"][0]) == 5


def test_evaluate_options_override_the_checkpoint(run, capsys):
    assert main(["evaluate", step_path(str(run / "checkpoints"), 2), "--no-run.progress",
                 "--data.image_size", "40"]) == 0
    assert "5 images, 40 px" in capsys.readouterr().out


def test_evaluate_help_lists_only_what_matters_there(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = capsys.readouterr().out
    for name in ("--data.root", "--data.dataset", "--data.image_size", "--run.device", "--no-run.progress",
                 "--crf", "--crf-iterations", "--split", "--debug"):
        assert name in text
    assert "--unary.lr" not in text and "--loop.steps" not in text
    assert len(text.splitlines()) < 60
