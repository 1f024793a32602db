"""The `ial` command: train (the EM loop), evaluate, infer, export, deploy.

Every setting of `ial_ext.train.config.Config` is an option ``--section.field`` of `ial train`;
a JSON file given with ``--config`` is read first and the command line wins. `evaluate` takes
the settings of the checkpoint's run, and offers only the few that may differ there.
Errors are one line (exit status 2: bad input, 1: a failure), as in `ial_export.command`.
"""
from __future__ import annotations

import argparse
import re
import shlex
import sys
import typing

from ial_export.command import DEBUG_HELP, CommandParser, Interrupted, UsageError, run_command
from ial_export.deploy import DEFAULT_MAX_SIZE, DeployError

from .train.config import TYPE_WORDS, Config, apply_overrides, checked_setting, config_fields, load_settings, setting_type

# What `ial evaluate` may change from the checkpoint's run: where the data is, and the machine.
EVALUATE_SETTINGS = (
    "data.dataset", "data.root", "data.image_size", "data.train_split", "data.val_split",
    "run.device", "run.threads", "run.progress",
)
# Taken from the checkpoint unless given; the machine's settings (device, progress) are not.
CHECKPOINT_SETTINGS = ("data.dataset", "data.root", "data.image_size", "data.train_split", "data.val_split",
                       "run.threads")
# Errors that mean the input was wrong (exit status 2), not the program.
BAD_INPUT = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError,
             DeployError)


def add_config_options(parser: argparse.ArgumentParser, names: typing.Optional[tuple] = None) -> None:
    """--section.field for every setting (or those of `names`), typed and checked like a config
    file's values; their help gives one default: the checkpoint's for CHECKPOINT_SETTINGS when
    `names` is given."""
    defaults = Config()
    for name, item, value in config_fields(defaults):
        if names is not None and name not in names:
            continue
        kind, _ = setting_type(defaults, name)
        help_text = item.metadata.get("help", "")
        if names is not None and name in CHECKPOINT_SETTINGS:
            help_text = re.sub(r" \(default: [^)]*\)", "", help_text) + " (default: the checkpoint's)"
        elif "(default:" not in help_text:
            help_text += f" (default: {value})"
        help_text = help_text.replace("%", "%%")
        if kind is bool:
            parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        choices = item.metadata.get("choices")
        if choices:
            metavar = "{" + ",".join(choices) + "}"
        else:
            metavar = item.name.upper() if item.metadata.get("pattern") else kind.__name__.upper()
        parser.add_argument(f"--{name}", type=_option_type(defaults, name, item, kind), default=None,
                            metavar=metavar, help=help_text)


def _option_type(defaults: Config, name: str, item, kind: type):
    """The argparse type of a setting: its type, then the checks of a config file's value."""
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {TYPE_WORDS.get(kind, kind.__name__)}, got {text!r}")
        try:
            return checked_setting(defaults, name, item, value)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error))

    convert.__name__ = kind.__name__
    return convert


def given_settings(arguments: argparse.Namespace) -> dict:
    """The settings given on the command line, as dotted names -> values."""
    return {
        name: getattr(arguments, name) for name, _, _ in config_fields(Config())
        if getattr(arguments, name, None) is not None
    }


def config_from_arguments(arguments: argparse.Namespace) -> Config:
    """The defaults, then the --config file, then the options. `train --run.resume` starts
    from the run's saved settings instead of the defaults."""
    settings = load_settings(arguments.config) if getattr(arguments, "config", None) else {}
    settings.update(given_settings(arguments))
    config = apply_overrides(Config(), settings)
    if getattr(arguments, "command", None) == "train" and config.run.resume:
        from .train.run_folder import resumed_config

        return resumed_config(config.run.output_dir, settings)
    return config


def resume_command(output_dir: str) -> str:
    return f"ial train --run.output_dir {shlex.quote(output_dir)} --run.resume"


def _train(arguments: argparse.Namespace) -> int:
    from .train.em import run_em

    config = config_from_arguments(arguments)
    try:
        run_em(config)
    except KeyboardInterrupt:
        raise Interrupted(f"continue with: {resume_command(config.run.output_dir)}") from None
    return 0


def _evaluate(arguments: argparse.Namespace) -> int:
    from .train.inference_cli import evaluate_checkpoint

    evaluate_checkpoint(arguments.checkpoint, None, arguments.split, arguments.crf_iterations if arguments.crf else 0,
                        overrides=given_settings(arguments), json_path=arguments.json)
    return 0


def _infer(arguments: argparse.Namespace) -> int:
    from ial_export.deploy import report_failures

    from .train.inference_cli import infer_images

    if not 0.0 <= arguments.overlay_alpha <= 1.0:
        raise UsageError(f"--overlay-alpha must be within 0..1, got {arguments.overlay_alpha}")
    if arguments.max_size < 0:
        raise UsageError(f"--max-size must be >= 0, got {arguments.max_size}")
    failures = []
    written = infer_images(arguments.checkpoint, arguments.inputs, arguments.output, arguments.device,
                           arguments.crf_iterations if arguments.crf else 0,
                           overlay_alpha=arguments.overlay_alpha if arguments.overlay else None,
                           max_size=arguments.max_size, failures=failures, progress=arguments.progress)
    return report_failures("ial infer", "label maps", len(written) + len(failures), failures, arguments.output)


def _export(arguments: argparse.Namespace) -> int:
    from .export import export_checkpoint

    report = export_checkpoint(arguments.checkpoint, arguments.output, opset=arguments.opset, check=arguments.check)
    checked = (
        f", onnxruntime vs PyTorch max |p| difference {report.max_abs_probability_diff:.1e}"
        if report.max_abs_probability_diff is not None
        else ""
    )
    print(f"wrote {report.path} (opset {report.opset}, {report.num_classes} classes, {report.refinement}{checked})")
    return 0


def add_crf_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--crf", action="store_true",
                        help="refine the final probabilities with the dense CRF (needs the crf extra)")
    parser.add_argument("--crf-iterations", type=int, default=10,
                        help="mean-field iterations of that CRF (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    common = CommandParser(add_help=False)
    common.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser = CommandParser(prog="ial", description=__doc__.splitlines()[0], parents=[common])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="run the EM loop of Algorithm 1 (default: the synthetic demo)",
                                description="Runs the EM loop; --run.resume continues an interrupted run.",
                                parents=[common])
    train.add_argument("--config", help="JSON file of settings (nested by section), read before the options")
    add_config_options(train)
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser(
        "evaluate", help="mIoU and per-class IoU of a checkpoint's unary and refined output", parents=[common],
        description="Scores a checkpoint on the data set of its run, with the run's settings (image size, "
        "splits, unary scales); the options below change them.",
    )
    evaluate.add_argument("checkpoint", help="a step_<t>.pt written by `ial train`")
    evaluate.add_argument("--split", choices=["train", "val"], default="val",
                          help="which split to score (default: %(default)s)")
    evaluate.add_argument("--json", metavar="FILE", help="also write the scores, per-class IoU and confusion "
                          "matrices to FILE")
    add_crf_options(evaluate)
    add_config_options(evaluate, EVALUATE_SETTINGS)
    evaluate.set_defaults(handler=_evaluate)

    infer = commands.add_parser("infer", help="segment images with a checkpoint (PyTorch)", parents=[common])
    infer.add_argument("checkpoint", help="a step_<t>.pt written by `ial train`")
    infer.add_argument("inputs", nargs="+", help="image files or folders")
    infer.add_argument("--output", default="outputs/infer", help="folder for the label PNGs (default: %(default)s)")
    infer.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                       help="where the networks run (default: %(default)s)")
    infer.add_argument("--overlay", action="store_true",
                       help="also write <name>_overlay.png: the image with the classes coloured, and their legend")
    infer.add_argument("--overlay-alpha", type=float, default=0.5, metavar="A",
                       help="opacity of the class colours in the overlay, 0..1 (default: %(default)s)")
    infer.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE, metavar="PX",
                       help="larger images are segmented scaled down to this longest side and their label maps "
                       "scaled back (nearest) to the image's size, as ial-deploy does; 0: always at the image's size "
                       "(default: %(default)s)")
    infer.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                       help="a progress bar (default: %(default)s)")
    add_crf_options(infer)
    infer.set_defaults(handler=_infer)

    export = commands.add_parser("export", help="write a checkpoint's unary + pairwise model as ONNX",
                                 parents=[common])
    export.add_argument("checkpoint", help="a step_<t>.pt written by `ial train`")
    export.add_argument("--output", default="outputs/model.onnx", help="the ONNX file to write (default: %(default)s)")
    export.add_argument("--opset", type=int, default=18, help="ONNX opset, 18 or newer (default: %(default)s)")
    export.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                        help="run the file in onnxruntime once and compare with PyTorch (default: %(default)s)")
    export.set_defaults(handler=_export)

    # Listed for --help only: main() hands everything after "deploy" to the runner.
    commands.add_parser("deploy", help="run an exported ONNX model with onnxruntime, the same runner as "
                        "`ial-deploy` (which needs no torch); `ial deploy --help` lists its options")
    return parser


def main(argv: typing.Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["deploy"]:
        from ial_export.deploy import main as deploy_main

        return deploy_main(argv[1:], prog="ial deploy")

    def command() -> int:
        arguments = build_parser().parse_args(argv)
        return arguments.handler(arguments)

    return run_command("ial", command, argv, BAD_INPUT)


if __name__ == "__main__":
    sys.exit(main())
