"""The paper's recipes in configs/: each parses (file and command line alike), holds section 4.2's
schedules, and starts on a small VOC-layout set with torchvision-format ImageNet weights."""
import glob
import math
import os

import pytest
import torch

from benchmarks.voc_layout import write_voc_layout
from ial_ext.cli import build_parser, config_from_arguments
from ial_ext.train.config import Config, OptimConfig, apply_overrides, load_config
from ial_ext.train.em import run_em
from ial_ext.train.optim import ScheduledSGD, step_learning_rate
from tests.test_models import torchvision_style_file, torchvision_vgg16_state_dict

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
RECIPES = {"voc_vgg16.json": "vgg16", "voc_resnet101.json": "resnet101", "coco_resnet101.json": "resnet101"}
TORCHVISION_FILES = {"vgg16": "vgg16-397923af.pth", "resnet101": "resnet101-63fe2227.pth"}


def recipe_path(name: str) -> str:
    return os.path.join(CONFIGS, name)


def test_configs_folder_holds_the_recipes():
    assert sorted(os.path.basename(p) for p in glob.glob(os.path.join(CONFIGS, "*.json"))) == sorted(RECIPES)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_holds_section_4_2(name):
    config = load_config(recipe_path(name))
    backbone = RECIPES[name]
    assert config.data.dataset == name.split("_")[0]
    assert config.data.image_size == 321
    assert config.model.backbone == config.model.cam_backbone == backbone
    assert os.path.basename(config.model.weights) == TORCHVISION_FILES[backbone]
    assert (config.seeds.foreground_alpha, config.seeds.background_alpha) == (4.0, 32.0)
    unary, pairwise, region = config.unary, config.pairwise, config.region
    assert (unary.schedule, unary.lr, unary.poly_power, unary.iterations, unary.momentum) == ("poly", 1e-3, 0.9, 20000, 0.9)
    assert (pairwise.schedule, pairwise.lr, pairwise.poly_power, pairwise.iterations, pairwise.momentum) == (
        "poly", 1e-5, 0.5, 20000, 0.9)
    assert (region.schedule, region.lr, region.gamma, region.step_size, region.momentum) == ("step", 1e-3, 0.1, 20000, 0.9)
    assert region.iterations > region.step_size  # eq. 11's decay takes effect within the phase


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_loads_through_the_command_line_and_options_win(name):
    arguments = build_parser().parse_args(["train", "--config", recipe_path(name), "--unary.iterations", "7"])
    config = config_from_arguments(arguments)
    expected = load_config(recipe_path(name))
    expected.unary.iterations = 7
    assert config == expected


def test_step_schedule_is_equation_11():
    assert step_learning_rate(1e-3, 0, 20000, 0.1) == 1e-3
    assert step_learning_rate(1e-3, 19999, 20000, 0.1) == 1e-3
    assert step_learning_rate(1e-3, 20000, 20000, 0.1) == pytest.approx(1e-4)
    assert step_learning_rate(1e-3, 45000, 20000, 0.1) == pytest.approx(1e-5)
    config = OptimConfig(iterations=7, lr=1.0, schedule="step", step_size=3, gamma=0.5)
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = ScheduledSGD([weight], config)
    rates = [optimizer.step((weight * 0).sum()) for _ in range(7)]
    assert rates == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]


def test_schedule_resumes_at_its_iteration():
    config = OptimConfig(iterations=10, lr=0.1, poly_power=0.5)
    weight = torch.nn.Parameter(torch.ones(1))
    run = ScheduledSGD([weight], config)
    rates = [run.step((weight**2).sum()) for _ in range(10)]
    weight2 = torch.nn.Parameter(torch.ones(1))
    first = ScheduledSGD([weight2], config)
    for _ in range(4):
        first.step((weight2**2).sum())
    resumed = ScheduledSGD([weight2], config)
    resumed.load_state_dict(first.state_dict())
    assert resumed.iteration == 4
    assert [resumed.step((weight2**2).sum()) for _ in range(6)] == rates[4:]
    torch.testing.assert_close(weight2, weight, rtol=0, atol=0)


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="schedule must be one of"):
        ScheduledSGD([torch.nn.Parameter(torch.zeros(1))], OptimConfig(schedule="cosine"))


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    write_voc_layout(str(root), train_images=4, val_images=2, min_side=60, max_side=90, classes=3)
    return str(root)


@pytest.fixture(scope="module")
def imagenet_weights(tmp_path_factory):
    """Randomly initialised ImageNet state_dicts in torchvision's format, one per backbone."""
    folder = tmp_path_factory.mktemp("weights")
    vgg16 = folder / TORCHVISION_FILES["vgg16"]
    torch.save(torchvision_vgg16_state_dict(), vgg16)
    _, resnet101 = torchvision_style_file(folder, "resnet101")
    return {"vgg16": str(vgg16), "resnet101": str(resnet101)}


def started(name: str, voc_root: str, output_dir, weights: str) -> Config:
    """The recipe cut to one iteration per network and one step on 64-px images of `voc_root`
    (the COCO recipe too: only its data set is swapped for the VOC layout)."""
    config = load_config(recipe_path(name))
    overrides = {
        "data.dataset": "voc", "data.root": voc_root, "data.train_split": "train", "data.image_size": 64,
        "model.weights": weights, "loop.steps": 1, "loop.energy_images": 1,
        "run.output_dir": str(output_dir), "run.progress": False, "run.figure_images": 1, "run.threads": 1,
    }
    for section in ("classifier", "unary", "pairwise", "region"):
        overrides[f"{section}.iterations"] = 1
        overrides[f"{section}.batch_size"] = 2
    return apply_overrides(config, overrides)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_starts_with_torchvision_weights(name, voc_root, imagenet_weights, tmp_path):
    config = started(name, voc_root, tmp_path / "run", imagenet_weights[RECIPES[name]])
    rows = run_em(config)
    assert [(row["step"], row["stage"]) for row in rows] == [(0, "seeds"), (1, "unary"), (1, "mined"), (1, "pairwise")]
    assert all(math.isfinite(row["train_miou"]) for row in rows)
    assert os.path.isfile(tmp_path / "run" / "checkpoints" / "step_1.pt")


def test_missing_weights_file_stops_the_run_before_training(voc_root, tmp_path):
    config = started("voc_vgg16.json", voc_root, tmp_path / "run", str(tmp_path / "vgg16-397923af.pth"))
    with pytest.raises(FileNotFoundError, match="backbone weights file not found: .*vgg16-397923af.pth"):
        run_em(config)
    assert not os.path.exists(tmp_path / "run" / "timings.json")  # no phase finished
