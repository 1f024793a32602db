"""The `ial` command as a user meets it: settings from the checkpoint, one-line errors, exit statuses."""
import json
import os
import re

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


# ---------------------------------------------------------------- errors and exit statuses


def error_lines(capsys) -> list:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_bad_input_is_one_line_and_status_2(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    cases = [
        ["train", "--data.dataset", "voc", "--data.root", str(tmp_path / "missing"), "--run.output_dir", str(tmp_path)],
        ["evaluate", str(corrupt)],
        ["evaluate", str(tmp_path / "missing.pt")],
        ["infer", str(corrupt), str(tmp_path)],
        ["export", str(corrupt), "--output", str(tmp_path / "m.onnx")],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        lines = error_lines(capsys)
        assert len(lines) == 1 and lines[0].startswith("ial: error: "), (argv, lines)
        assert "Traceback" not in lines[0]


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    assert main(["evaluate", str(corrupt), "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("IAL_DEBUG", "1")
    assert main(["evaluate", str(corrupt)]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_a_failure_is_status_1_with_its_type(monkeypatch, tmp_path, capsys):
    import ial_ext.train.em as em

    def broken(config):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(em, "run_em", broken)
    assert main(["train", "--run.output_dir", str(tmp_path)]) == 1
    (line,) = error_lines(capsys)
    assert line.startswith("ial: error: RuntimeError: out of memory") and "--debug" in line


def test_ctrl_c_names_the_resume_command(monkeypatch, tmp_path, capsys):
    import ial_ext.train.em as em

    def interrupted(config):
        raise KeyboardInterrupt

    monkeypatch.setattr(em, "run_em", interrupted)
    assert main(["train", "--run.output_dir", str(tmp_path / "my run")]) == 130
    (line,) = error_lines(capsys)
    assert line == f"ial: interrupted; continue with: ial train --run.output_dir '{tmp_path / 'my run'}' --run.resume"


# ---------------------------------------------------------------- options


def usage_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    (line,) = error_lines(capsys)
    assert line.startswith("ial: error: ") or line.startswith("ial-deploy: error: ")
    return line


def test_no_abbreviations_and_checked_values(capsys):
    assert "unrecognized arguments: --unary.iteration" in usage_error(["train", "--unary.iteration", "5"], capsys)
    assert "--data.roo" in usage_error(["evaluate", "x.pt", "--data.roo", "/d"], capsys)
    assert "--out" in usage_error(["infer", "x.pt", "img", "--out", "d"], capsys)
    assert "run.device must be auto, cpu, cuda or cuda:N, got 'gpu0'" in usage_error(
        ["train", "--run.device", "gpu0"], capsys)
    assert "data.dataset must be one of synthetic, voc, coco, folder" in usage_error(
        ["train", "--data.dataset", "vocc"], capsys)
    assert "loop.steps must be an integer" in usage_error(["train", "--loop.steps", "two"], capsys)
    assert "unary.batch_size must be at least 1, got 0" in usage_error(["train", "--unary.batch_size", "0"], capsys)
    assert "pairwise.iterations must be at least 0, got -5" in usage_error(
        ["train", "--pairwise.iterations", "-5"], capsys)
    assert "model.pairwise_width must be at least 1, got 0" in usage_error(
        ["train", "--model.pairwise_width", "0"], capsys)
    assert "invalid choice: 'gpu'" in usage_error(["infer", "x.pt", "img", "--device", "gpu"], capsys)
    assert "--devic" in usage_error(["deploy", "m.onnx", "img", "--devic", "cpu"], capsys)
    from ial_ext.train.config import Config, apply_overrides

    assert apply_overrides(Config(), {"run.device": "cuda:1"}).run.device == "cuda:1"


def test_config_file_values_are_type_checked(tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"loop": {"steps": "5"}}))
    assert main(["train", "--config", str(path), "--run.output_dir", str(tmp_path / "out")]) == 2
    (line,) = error_lines(capsys)
    assert line == f"ial: error: config file {path}: loop.steps must be an integer, got '5' (str)"
    path.write_text(json.dumps({"unary": {"lr": 1}, "model": {"pairwise_gates": "direct"}}))
    from ial_ext.train.config import load_config

    config = load_config(str(path))
    assert config.unary.lr == 1.0 and isinstance(config.unary.lr, float)
    assert not os.path.exists(tmp_path / "out")


def test_help_gives_one_default_per_option(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    options = re.split(r"\n  (?=--)", text.split("\noptions:\n")[1])[1:]
    settings = [block for block in options if "." in block.split()[0]]
    assert len(settings) > 60
    for block in settings:
        assert " ".join(block.split()).count("(default:") == 1, block
    assert "(default: <output_dir>/superpixels)" in " ".join(text.split())
    for command in ("infer", "export"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "(default: outputs/" in text
    with pytest.raises(SystemExit):
        main(["deploy", "--help"])
    assert capsys.readouterr().out.startswith("usage: ial deploy ")


# ---------------------------------------------------------------- ial infer


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two scenes of the synthetic set (one not square) and a broken file that sorts first."""
    import numpy as np
    from PIL import Image

    from ial_ext.data import SyntheticDataset

    folder = tmp_path_factory.mktemp("images")
    samples = SyntheticDataset("val", num_images=2, image_size=48, num_object_classes=3)
    Image.fromarray(samples[0]["rgb"].numpy()).save(folder / "scene.png")
    Image.fromarray(np.ascontiguousarray(samples[1]["rgb"].numpy()[:, :40])).save(folder / "tall.png")
    (folder / "a_broken.png").write_bytes(b"not an image")
    return folder


def test_infer_skips_unreadable_images_and_reports_them(run, images, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    output = tmp_path / "labels"
    status = main(["infer", step_path(str(run / "checkpoints"), 2), str(images), "--output", str(output),
                   "--overlay", "--no-progress"])
    err = capsys.readouterr().err
    assert status == 1
    assert f"ial infer: skipping {images / 'a_broken.png'}: cannot read image" in err
    assert f"ial infer: wrote 2 of 3 label maps to {output}" in err
    assert sorted(os.listdir(output)) == ["scene.png", "scene_overlay.png", "tall.png", "tall_overlay.png"]
    tall = Image.open(output / "tall.png")
    assert tall.mode == "P" and tall.size == (40, 48)
    overlay = Image.open(output / "tall_overlay.png")
    assert overlay.width == 40 and overlay.height > 48  # the legend is below the picture
    assert np.asarray(overlay)[48:].min() < 255  # swatches and names drawn there


def test_infer_max_size_segments_scaled_and_returns_the_images_size(run, images, tmp_path):
    import numpy as np
    from PIL import Image

    from ial_ext.data import normalize_image
    from ial_ext.train.checkpoint import load_segmenter
    from ial_ext.train.inference_cli import infer_images
    from ial_ext.train.segmenter import Segmenter

    checkpoint = step_path(str(run / "checkpoints"), 2)
    (written,) = infer_images(checkpoint, [str(images / "scene.png")], str(tmp_path), device="cpu", max_size=24,
                              progress=False)
    labels = np.asarray(Image.open(written))
    assert labels.shape == (48, 48)
    # The same as segmenting the image at 24 px and taking every label twice.
    small = np.asarray(Image.open(images / "scene.png").convert("RGB").resize((24, 24), Image.BILINEAR))
    segmenter = Segmenter(*load_segmenter(checkpoint)[:2]).eval()
    with __import__("torch").no_grad():
        expected = segmenter.labels(normalize_image(small)[None])[0].numpy()
    assert np.array_equal(labels, expected.repeat(2, 0).repeat(2, 1))


def test_infer_and_ial_deploy_give_the_same_labels(run, images, tmp_path, capsys):
    """The same pixels, except where two classes' probabilities tie to float precision: PyTorch and
    onnxruntime sum in different orders (last-bit differences of ~1e-7)."""
    import numpy as np
    import onnxruntime
    from PIL import Image

    from ial_ext.data import normalize_image

    checkpoint = step_path(str(run / "checkpoints"), 2)
    model = tmp_path / "model.onnx"
    assert main(["export", checkpoint, "--output", str(model)]) == 0
    inputs = [str(images / "scene.png"), str(images / "tall.png")]
    assert main(["infer", checkpoint, *inputs, "--output", str(tmp_path / "torch"), "--no-progress"]) == 0
    assert main(["deploy", str(model), *inputs, "--output", str(tmp_path / "onnx"), "--no-progress",
                 "--device", "cpu"]) == 0
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    for name in ("scene.png", "tall.png"):
        ours = np.asarray(Image.open(tmp_path / "torch" / name))
        theirs = np.asarray(Image.open(tmp_path / "onnx" / name))
        differ = ours != theirs
        if differ.any():
            rgb = np.asarray(Image.open(images / name).convert("RGB"))
            probabilities = session.run(None, {"images": normalize_image(rgb)[None].numpy()})[0][0]
            top_two = np.sort(probabilities, axis=0)[-2:]
            assert (top_two[1] - top_two[0])[differ].max() < 1e-5
        assert differ.mean() < 1e-3


# ---------------------------------------------------------------- figures and file modes


def test_every_step_has_a_figure_with_its_scores_and_a_legend(run):
    from PIL import Image

    figures = sorted(os.listdir(run / "figures"))
    assert figures == ["step_0.png", "step_1.png", "step_2.png"]
    seeds, step = Image.open(run / "figures" / "step_0.png"), Image.open(run / "figures" / "step_2.png")
    assert seeds.width < step.width  # image, seeds, truth against image, seeds, unary, mined, refined, truth


def test_figure_layout_captions_and_legend(tmp_path):
    import numpy as np
    from PIL import Image

    from ial_ext.data import VOC_PALETTE
    from ial_ext.train.figures import save_step_figure, stage_caption
    from ial_export.legend import present_classes

    rgb = np.zeros((2, 16, 16, 3), np.uint8)
    labels = np.zeros((2, 16, 16), np.uint8)
    labels[0, :4] = 2
    labels[1, :2] = 255
    names = ["background", "cat", "dog"]
    assert [name for name, _ in present_classes([labels], names, VOC_PALETTE)] == ["background", "dog", "unknown"]
    assert stage_caption({"train_miou": 0.5, "train_precision": 0.25, "coverage": None}) == [
        "mIoU 50.0", "precision 25.0"]
    plain = Image.open(save_step_figure(str(tmp_path / "a.png"), rgb, {"seeds": labels}, VOC_PALETTE))
    full = Image.open(save_step_figure(str(tmp_path / "b.png"), rgb, {"seeds": labels}, VOC_PALETTE,
                                       class_names=names, heading="step 0: the seeds",
                                       captions={"seeds": ["mIoU 50.0", "precision 25.0"]}))
    assert full.height == plain.height + 3 * 12 and full.width == plain.width
    # The legend's swatches are the classes' colours.
    colours = {tuple(pixel) for pixel in np.asarray(full)[-20:].reshape(-1, 3)}
    assert tuple(VOC_PALETTE[2]) in colours and tuple(VOC_PALETTE[1]) not in colours


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_checkpoints_and_exported_models_are_created_as_open_would(run, tmp_path, umask):
    from ial_ext.train.checkpoint import save_checkpoint

    previous = os.umask(umask)
    try:
        save_checkpoint(str(tmp_path / "c.pt"), {"step": 0})
        assert main(["export", step_path(str(run / "checkpoints"), 2), "--output", str(tmp_path / "m.onnx"),
                     "--no-check"]) == 0
    finally:
        os.umask(previous)
    for name in ("c.pt", "m.onnx"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o666 & ~umask, name
    assert os.stat(run / "checkpoints" / "step_2.pt").st_mode & 0o777 == 0o666 & ~previous
    cached = list((run / "superpixels").rglob("*.spx"))
    assert cached and all(os.stat(path).st_mode & 0o777 == 0o666 & ~previous for path in cached)


def test_a_data_set_with_bad_files_lists_them_under_the_error_line(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "classes.txt").write_text("dog\n")
    Image.new("RGB", (8, 8)).save(root / "images" / "good.png")
    (root / "images" / "bad.png").write_bytes(b"not an image")
    (root / "train.csv").write_text("good.png, dog\nbad.png, dog\n")
    (root / "val.csv").write_text("good.png, dog\n")
    status = main(["train", "--data.dataset", "folder", "--data.root", str(root), "--no-run.progress",
                   "--run.output_dir", str(tmp_path / "run")])
    lines = error_lines(capsys)
    assert status == 2 and lines[0].startswith("ial: error: 1 bad file(s)")
    assert len(lines) == 2 and "bad.png" in lines[1]
