"""The `ial` command: train (the EM loop), evaluate, infer, export, deploy.

Every setting of `ial_ext.train.config.Config` is an option ``--section.field``; a JSON
file given with ``--config`` is read first and the command line wins.
"""
from __future__ import annotations

import argparse
import sys
import typing

from .train.config import Config, apply_overrides, config_fields, load_settings


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="JSON file of settings (nested by section), read before the options")
    defaults = Config()
    for name, item, value in config_fields(defaults):
        section = getattr(defaults, name.split(".")[0])
        kind = typing.get_type_hints(type(section))[item.name]
        help_text = f"{item.metadata.get('help', '')} (default: {value})"
        if kind is bool:
            parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
            parser.add_argument(f"--{name}", type=base, default=None, metavar=base.__name__.upper(), help=help_text)


def config_from_arguments(arguments: argparse.Namespace) -> Config:
    """The defaults, then the --config file, then the options. `train --run.resume` starts
    from the run's saved settings instead of the defaults."""
    settings = load_settings(arguments.config) if arguments.config else {}
    settings.update(
        (name, getattr(arguments, name))
        for name, _, _ in config_fields(Config())
        if getattr(arguments, name, None) is not None
    )
    config = apply_overrides(Config(), settings)
    if getattr(arguments, "command", None) == "train" and config.run.resume:
        from .train.run_folder import resumed_config

        return resumed_config(config.run.output_dir, settings)
    return config


def _train(arguments: argparse.Namespace) -> int:
    from .train.em import run_em

    run_em(config_from_arguments(arguments))
    return 0


def _evaluate(arguments: argparse.Namespace) -> int:
    from .train.inference_cli import evaluate_checkpoint

    evaluate_checkpoint(arguments.checkpoint, config_from_arguments(arguments), arguments.split,
                        arguments.crf_iterations if arguments.crf else 0)
    return 0


def _infer(arguments: argparse.Namespace) -> int:
    from .train.inference_cli import infer_images

    infer_images(arguments.checkpoint, arguments.inputs, arguments.output, arguments.device,
                 arguments.crf_iterations if arguments.crf else 0)
    return 0


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
    parser.add_argument("--crf-iterations", type=int, default=10, help="mean-field iterations of that CRF")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ial", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="run the EM loop of Algorithm 1 (default: the synthetic demo)",
                                description="Runs the EM loop; --run.resume continues an interrupted run.")
    add_config_options(train)
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="mIoU of a checkpoint's unary and refined output")
    evaluate.add_argument("checkpoint", help="a step_<t>.pt written by `ial train`")
    evaluate.add_argument("--split", choices=["train", "val"], default="val", help="which split to score")
    add_crf_options(evaluate)
    add_config_options(evaluate)
    evaluate.set_defaults(handler=_evaluate)

    infer = commands.add_parser("infer", help="segment images with a checkpoint (PyTorch)")
    infer.add_argument("checkpoint", help="a step_<t>.pt written by `ial train`")
    infer.add_argument("inputs", nargs="+", help="image files or folders")
    infer.add_argument("--output", default="outputs/infer", help="folder for the label PNGs")
    infer.add_argument("--device", default="auto", help="auto | cpu | cuda")
    add_crf_options(infer)
    infer.set_defaults(handler=_infer)

    export = commands.add_parser("export", help="write a checkpoint's unary + pairwise model as ONNX")
    export.add_argument("checkpoint", help="a step_<t>.pt written by `ial train`")
    export.add_argument("--output", default="outputs/model.onnx", help="the ONNX file to write")
    export.add_argument("--opset", type=int, default=18, help="ONNX opset (18 or newer)")
    export.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                        help="run the file in onnxruntime once and compare with PyTorch")
    export.set_defaults(handler=_export)

    # Listed for --help only: main() hands everything after "deploy" to the runner.
    commands.add_parser("deploy", help="run an exported ONNX model with onnxruntime, the same runner as "
                        "`ial-deploy` (which needs no torch); `ial deploy --help` lists its options")
    return parser


def main(argv: typing.Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["deploy"]:
        from ial_export.deploy import main as deploy_main

        return deploy_main(argv[1:])
    arguments = build_parser().parse_args(argv)
    return arguments.handler(arguments)


if __name__ == "__main__":
    sys.exit(main())
