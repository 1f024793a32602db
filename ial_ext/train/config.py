"""The run configuration: plain dataclasses, one per concern, nested in `Config`.

Every field is reachable from the command line as ``--section.field value`` and from a
JSON file (``--config run.json``); the command line wins. Defaults are the demo: the
built-in synthetic data set, small networks, minutes on two CPU cores.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from ..models.backbone import BACKBONE_NAMES


def setting(default: Any, help: str, choices: Optional[tuple] = None, pattern: Optional[str] = None,
            minimum: Optional[float] = None):
    """A config field with the help text the command line shows; a value must be one of
    `choices`, match the regular expression `pattern`, or be at least `minimum`, when given."""
    return field(default=default, metadata={"help": help, "choices": choices, "pattern": pattern, "minimum": minimum})


@dataclass
class DataConfig:
    dataset: str = setting("synthetic", "the data set's layout", choices=("synthetic", "voc", "coco", "folder"))
    root: Optional[str] = setting(None, "data set directory (voc, coco, folder)")
    image_size: int = setting(64, "images are brought to image_size x image_size")
    train_images: int = setting(400, "training images of the synthetic set", minimum=1)
    val_images: int = setting(100, "validation images of the synthetic set", minimum=1)
    object_classes: int = setting(5, "object classes of the synthetic set (plus background)", minimum=1)
    train_split: Optional[str] = setting(None, "training split (default: train, train_aug for voc, train2014 for coco)")
    val_split: Optional[str] = setting(None, "validation split (default: val, val2014 for coco)")
    seed: int = setting(0, "seed of the synthetic set's content")


@dataclass
class ModelConfig:
    backbone: str = setting("small", "unary and region networks", choices=BACKBONE_NAMES)
    cam_backbone: str = setting(
        "small_local", "CAM network (small_local keeps CAMs local on small images)", choices=BACKBONE_NAMES
    )
    weights: Optional[str] = setting(
        None, "ImageNet state_dict of model.backbone (torchvision format for ResNets), also used by the CAM "
        "network when model.cam_backbone is the same"
    )
    pairwise_width: int = setting(16, "channels of the pairwise guidance CNN", minimum=1)
    pairwise_gates: str = setting(
        "similarity", "pairwise gates: similarity (edge-aware from the start) or direct (SPN's)",
        choices=("similarity", "direct"),
    )
    pairwise_gate_layout: str = setting(
        "shared", "pairwise affinity maps: shared (the paper's 12, for all classes) or per_class (12 per class)",
        choices=("shared", "per_class"),
    )
    pairwise_strength: bool = setting(
        True, "a learned propagation strength per class and direction on the pairwise gates (4C numbers)"
    )
    unary_scales: str = setting("1,1.5", "input scales the unary map is averaged over (DeepLab's inference)")
    unary_flip: bool = setting(True, "also average the unary map over the mirror image")

    def scales(self) -> tuple[float, ...]:
        try:
            return tuple(float(part) for part in self.unary_scales.split(","))
        except ValueError as error:
            raise ValueError(
                f"model.unary_scales must be comma-separated numbers, got {self.unary_scales!r}"
            ) from error


@dataclass
class OptimConfig:
    """SGD with momentum under the poly schedule of eq. (10), lr_k = lr (1 - k/K)^power, or
    the step schedule of eq. (11), lr_k = lr gamma^floor(k/S)."""

    iterations: int = setting(300, "training iterations K", minimum=0)
    batch_size: int = setting(8, "images per iteration (over all processes)", minimum=1)
    lr: float = setting(0.01, "base learning rate", minimum=0)
    momentum: float = setting(0.9, "SGD momentum", minimum=0)
    weight_decay: float = setting(1e-4, "SGD weight decay", minimum=0)
    poly_power: float = setting(0.9, "tau of the poly schedule, eq. (10)", minimum=0)
    schedule: str = setting("poly", "learning-rate schedule: poly (eq. 10) | step (eq. 11)", choices=("poly", "step"))
    step_size: int = setting(20000, "S of the step schedule: the rate is multiplied by gamma every S iterations", minimum=1)
    gamma: float = setting(0.1, "gamma of the step schedule, eq. (11)", minimum=0)


@dataclass
class SeedConfig:
    """CAM seeds, the PSA recipe: background score (1 - max_c CAM_c)^alpha."""

    # PSA uses 4 and 32 with its ResNet-38 CAMs on VOC; the small CAM network's maps
    # are flatter, and 0.5 / 4 (foreground above 0.62, background below 0.28 of the
    # class's peak) gave the best seeds on the synthetic set (mIoU 0.52, precision 0.90,
    # against 0.30 / 0.50 with 4 / 32).
    foreground_alpha: float = setting(0.5, "strong background: only confident foreground survives (PSA: 4)")
    background_alpha: float = setting(4.0, "weak background: only confident background survives (PSA: 32)")
    crf: bool = setting(False, "refine both background-score maps with the dense CRF first (PSA; the crf extra)")
    crf_iterations: int = setting(10, "mean-field iterations of that CRF", minimum=1)


@dataclass
class MiningConfig:
    """Section 3.3: superpixels, region samples, region confidence network."""

    sample_purity: float = setting(0.8, "a superpixel is a sample of c when > this share of it is c")
    confidence: float = setting(0.7, "re-scored superpixels above this keep their class")
    folds: int = setting(
        1, "1: the region network re-scores the images it was trained on (the paper); k > 1: each image "
        "is re-scored by a network trained on the other folds, so it cannot just echo the unary map",
        minimum=1,
    )
    pooling_stride: int = setting(1, "stride at which the region network pools features (1: image resolution)", minimum=1)
    superpixel_scale: float = setting(32.0, "Felzenszwalb scale (larger: larger superpixels)", minimum=0)
    superpixel_sigma: float = setting(0.5, "Felzenszwalb Gaussian smoothing", minimum=0)
    superpixel_min_size: int = setting(12, "Felzenszwalb minimum segment size (pixels)", minimum=1)
    cache_dir: Optional[str] = setting(None, "superpixel cache directory (default: <output_dir>/superpixels)")


@dataclass
class LoopConfig:
    """Algorithm 1 and its ablations."""

    steps: int = setting(5, "T, the number of EM steps after the seeds", minimum=0)
    warm_start: bool = setting(True, "each step starts from the previous step's networks")
    mining: bool = setting(True, "False: pairwise trained on the unary map (Table 6)")
    pairwise: bool = setting(True, "False: unary retrained on mined regions directly (Table 8)")
    smoothness: bool = setting(True, "region smoothness loss on the affinities (section 4.5.4)")
    smoothness_weight: float = setting(1.0, "weight of the region smoothness loss", minimum=0)
    class_balance: float = setting(
        0.5, "the unary cross-entropy weighs class c by (median frequency / frequency of c)^this; 0: unweighted"
    )
    refined_confidence: float = setting(
        0.0, "refined pixels below this probability are left unknown when they supervise the next unary network"
    )
    energy_images: int = setting(16, "training images (the first ones) on which the energy of Table 7 is averaged", minimum=0)


@dataclass
class RunConfig:
    output_dir: str = setting("outputs/run", "where checkpoints, tables and figures go")
    seed: int = setting(0, "seed of every random choice of the run")
    device: str = setting("auto", "auto, cpu, cuda or cuda:N", pattern=r"auto|cpu|cuda(:\d+)?")
    threads: int = setting(0, "torch CPU threads; 0 keeps torch's default", minimum=0)
    resume: bool = setting(
        False, "continue the run in output_dir from its last checkpoint, with its saved settings"
    )
    overwrite: bool = setting(False, "start a fresh run in an output_dir that already holds one (its results go)")
    checkpoint_minutes: float = setting(
        10.0, "also checkpoint inside a phase at most this many minutes apart (0: every 10 iterations)", minimum=0
    )
    workers: int = setting(-1, "DataLoader worker processes per process; -1: from the CPU count and device", minimum=-1)
    retained_heap_mib: int = setting(
        256, "on the CPU with glibc, freed blocks below this many MiB stay in the process for reuse instead of "
        "being returned to the OS and cleared again on the next iteration (0: glibc's own thresholds)", minimum=0
    )
    large_tensor_heap: bool = setting(
        True, "on the CPU (Linux), tensors of 1 MiB and more come from a heap of their own, which keeps the "
        "peak memory of a long run from creeping up as glibc's heap fragments (false: torch's allocator)"
    )
    figure_images: int = setting(4, "rows of the per-step figure", minimum=0)
    progress: bool = setting(True, "tqdm progress bars")
    precision: str = setting(
        "float32", "autocast of the networks (a gradient scaler with float16)",
        choices=("float32", "bfloat16", "float16"),
    )
    compile: bool = setting(
        False, "torch.compile the networks being trained (on the CPU with torch 2.13 the pairwise network's "
        "backward does not compile: benchmarks/RESULTS.md)"
    )


def _optim(**overrides: Any) -> OptimConfig:
    return OptimConfig(**overrides)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    seeds: SeedConfig = field(default_factory=SeedConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    run: RunConfig = field(default_factory=RunConfig)
    classifier: OptimConfig = field(default_factory=lambda: _optim(iterations=1000, lr=0.1))
    unary: OptimConfig = field(default_factory=lambda: _optim(iterations=600, lr=0.02))
    pairwise: OptimConfig = field(default_factory=lambda: _optim(iterations=150, lr=0.05))
    region: OptimConfig = field(default_factory=lambda: _optim(iterations=150, lr=0.02))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        config = cls()
        apply_overrides(config, _flatten(values))
        return config

    def save(self, path: str) -> None:
        """Written to a temporary file and renamed: a kill leaves the old file or the new one."""
        temporary = f"{path}.tmp-{os.getpid()}"
        with open(temporary, "w") as handle:
            json.dump(self.to_dict(), handle, indent=2)
        os.replace(temporary, path)


def load_config(path: str) -> Config:
    return apply_overrides(Config(), load_settings(path))


def load_settings(path: str) -> dict:
    """The settings a JSON file spells out, as dotted names ('unary.lr') -> values, each checked
    against its field (name, type, choices)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        with open(path) as handle:
            values = json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"config file {path} is not valid JSON: {error}") from error
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a JSON object of sections")
    settings = _flatten(values)
    try:
        apply_overrides(Config(), settings)
    except ValueError as error:
        raise ValueError(f"config file {path}: {error}") from None
    return settings


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def config_fields(config: Config):
    """Yields (dotted name, dataclass field, current value) for every setting."""
    for section in dataclasses.fields(config):
        group = getattr(config, section.name)
        for item in dataclasses.fields(group):
            yield f"{section.name}.{item.name}", item, getattr(group, item.name)


def setting_type(config: Config, name: str) -> tuple[type, bool]:
    """(bool, int, float or str; whether None is allowed) of the setting `name`."""
    section, key = name.split(".")
    kind = typing.get_type_hints(type(getattr(config, section)))[key]
    arguments = typing.get_args(kind)
    if type(None) in arguments:
        return next(t for t in arguments if t is not type(None)), True
    return kind, False


TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def checked_setting(config: Config, name: str, item: dataclasses.Field, value: Any) -> Any:
    """`value` as setting `name` holds it (an integer is a valid float); a ValueError naming the
    setting and what it expects otherwise."""
    kind, optional = setting_type(config, name)
    if (value is None and optional) or kind not in TYPE_WORDS:
        return value
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is float and numeric:
        value = float(value)
    elif not (isinstance(value, kind) and (kind is not int or not isinstance(value, bool))):
        expected = TYPE_WORDS[kind] + (" or null" if optional else "")
        raise ValueError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    choices, pattern = item.metadata.get("choices"), item.metadata.get("pattern")
    if choices is not None and value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    if pattern is not None and not re.fullmatch(pattern, value):
        raise ValueError(f"{name} must be {item.metadata['help']}, got {value!r}")
    minimum = item.metadata.get("minimum")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value!r}")
    return value


def apply_overrides(config: Config, overrides: dict) -> Config:
    """Sets dotted names ('unary.lr') to values, checking that each name exists and each
    value has the setting's type (and is one of its choices)."""
    known = {name: item for name, item, _ in config_fields(config)}
    for name, value in overrides.items():
        if name not in known:
            raise ValueError(f"unknown setting {name!r}; known: {', '.join(sorted(known))}")
        section, key = name.split(".")
        setattr(getattr(config, section), key, checked_setting(config, name, known[name], value))
    return config
