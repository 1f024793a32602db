"""Resuming a run: after a SIGKILL inside a phase, with only the folder, spelled any way; and
what is refused (changed settings, a fresh run into a run) without touching the saved settings."""
import json
import os
import re
import signal
import subprocess
import sys

import pytest

from ial_ext.cli import main
from ial_ext.train.em import run_em
from .test_em_loop import tiny_config

# A tiny run whose unary phase is long enough to be killed inside (iterations differ from
# the defaults, so that a resume with the defaults would be refused).
TINY_OPTIONS = [
    "--data.image_size", "32", "--data.train_images", "8", "--data.val_images", "4",
    "--data.object_classes", "3", "--loop.steps", "2", "--loop.energy_images", "2",
    "--classifier.iterations", "20", "--unary.iterations", "80", "--region.iterations", "10",
    "--pairwise.iterations", "10", "--no-run.progress", "--run.threads", "1",
]
for _network in ("classifier", "unary", "region", "pairwise"):
    TINY_OPTIONS += [f"--{_network}.batch_size", "4"]
ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def train_command(*options: str) -> list:
    return [sys.executable, "-m", "ial_ext.cli", "train", *options]


def table(folder) -> list:
    return json.load(open(os.path.join(folder, "table.json")))


@pytest.mark.slow
def test_sigkill_inside_a_phase_then_resume_with_only_the_folder(tmp_path):
    uninterrupted = tmp_path / "uninterrupted"
    subprocess.run(train_command(*TINY_OPTIONS, "--run.output_dir", str(uninterrupted), "--run.workers", "0"),
                   check=True, capture_output=True, timeout=600, env=ENVIRONMENT)

    killed = tmp_path / "killed"
    run = subprocess.Popen(
        train_command(*TINY_OPTIONS, "--run.output_dir", str(killed), "--run.checkpoint_minutes", "0",
                      "--run.workers", "1"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENVIRONMENT,
    )
    seen = []
    for line in run.stdout:
        seen.append(line)
        if line.startswith("checkpoint: step 1, unary/1 at iteration 20"):
            run.send_signal(signal.SIGKILL)
            break
    run.wait(timeout=60)
    assert run.returncode == -signal.SIGKILL, "".join(seen)[-3000:]
    assert [row["step"] for row in table(killed)] == [0]  # killed inside step 1

    resumed = subprocess.run(train_command("--run.output_dir", str(killed), "--run.resume"),
                             capture_output=True, text=True, timeout=600, env=ENVIRONMENT)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    # It went on inside the unary phase, from the checkpoint at iteration 20 or a later one.
    assert "resuming inside step 1" in resumed.stdout
    assert "step 1: unary: resuming at iteration" in resumed.stdout
    assert table(killed) == table(uninterrupted)


def test_resume_with_only_the_folder_after_non_default_settings(tmp_path):
    folder = str(tmp_path / "run")
    options = [option for option in TINY_OPTIONS if option not in ("--run.threads", "1")]
    options[options.index("--loop.steps") + 1] = "1"
    main(["train", *options, "--run.output_dir", folder])
    first = table(folder)
    main(["train", "--run.output_dir", folder, "--run.resume"])  # the saved settings, nothing to add
    assert table(folder) == first
    main(["train", "--run.output_dir", folder, "--run.resume", "--loop.steps", "2"])  # one more step
    rows = table(folder)
    assert rows[: len(first)] == first and rows[-1]["step"] == 2
    assert json.load(open(os.path.join(folder, "config.json")))["unary"]["iterations"] == 80


def test_a_refused_resume_leaves_the_saved_settings_alone(tmp_path, capsys):
    run_em(tiny_config(tmp_path, steps=1))
    saved = (tmp_path / "config.json").read_bytes()
    assert main(["train", "--run.output_dir", str(tmp_path), "--run.resume", "--unary.lr", "0.5"]) == 2
    assert re.search(r"^ial: error: .*unary\.lr \(saved 0\.02\)$", capsys.readouterr().err, re.M)
    assert (tmp_path / "config.json").read_bytes() == saved


def test_a_fresh_run_into_a_run_is_refused_unless_overwriting(tmp_path):
    rows = run_em(tiny_config(tmp_path, steps=1))
    saved = (tmp_path / "config.json").read_bytes()
    with pytest.raises(FileExistsError, match="--run.resume.*--run.overwrite"):
        run_em(tiny_config(tmp_path, steps=1))
    assert (tmp_path / "config.json").read_bytes() == saved
    (tmp_path / "checkpoints" / "step_1.pt").write_bytes(b"from the old run")
    again = tiny_config(tmp_path, steps=1)
    again.run.overwrite = True
    assert run_em(again) == rows
    assert (tmp_path / "checkpoints" / "step_1.pt").read_bytes() != b"from the old run"
    assert (tmp_path / "superpixels").is_dir()  # the cache is keyed by content and survives


def test_the_same_folder_spelled_differently_resumes(tmp_path, monkeypatch):
    folder = tmp_path / "runs" / "a"
    run_em(tiny_config(folder, steps=1))
    link = tmp_path / "link"
    link.symlink_to(folder)
    monkeypatch.chdir(tmp_path)
    spellings = [str(link) + "/", os.path.join("runs", "a"), str(folder) + "/"]
    for steps, spelling in enumerate(spellings, start=2):
        main(["train", "--run.output_dir", spelling, "--run.resume", "--loop.steps", str(steps)])
        assert table(folder)[-1]["step"] == steps
    uninterrupted = run_em(tiny_config(tmp_path / "b", steps=len(spellings) + 1))
    assert table(folder) == uninterrupted


def test_results_do_not_depend_on_the_number_of_workers(tmp_path):
    results = {}
    for workers in (0, 2):
        config = tiny_config(tmp_path / f"workers{workers}", steps=1)
        config.run.workers = workers
        results[workers] = run_em(config)
        refined = tmp_path / f"workers{workers}" / "labels" / "step_1" / "refined"
        results[workers, "labels"] = [(refined / name).read_bytes() for name in sorted(os.listdir(refined))]
    assert results[0] == results[2]
    assert results[0, "labels"] == results[2, "labels"]


def test_a_run_saved_before_a_setting_existed_resumes_as_it_was_trained(tmp_path):
    from ial_ext.train.config import Config
    from ial_ext.train.run_folder import CONFIG_FILE, resumed_config

    values = Config().to_dict()
    del values["model"]["pairwise_gate_layout"], values["model"]["pairwise_strength"]
    (tmp_path / CONFIG_FILE).write_text(json.dumps(values))
    config = resumed_config(str(tmp_path), {})
    assert config.model.pairwise_gate_layout == "per_class" and config.model.pairwise_strength is False
    Config().save(str(tmp_path / CONFIG_FILE))  # a run of today's defaults keeps them
    config = resumed_config(str(tmp_path), {})
    assert config.model.pairwise_gate_layout == "shared" and config.model.pairwise_strength is True
