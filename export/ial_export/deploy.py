"""ial-deploy: segment images with an exported ial_ext ONNX model (numpy + Pillow + onnxruntime; no torch).

    ial-deploy model.onnx photos/ extra.jpg --output labels/ --overlay --device auto

For each image it writes <output>/<name>.png, a palette PNG whose pixel values are
the class indices (0 = background) coloured with the model's palette (VOC's), and
with --overlay <output>/<name>_overlay.png, the image with the classes drawn over it and
a legend of them.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import metadata
from .command import DEBUG_HELP, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CommandParser, command_name, run_command
from .images import IMAGE_SUFFIXES, normalize, read_rgb
from .legend import present_classes, with_legend

__all__ = ["main", "run", "load_model", "find_images", "output_names", "read_rgb", "save_label_png", "save_overlay",
           "fit_to_max_size", "labels_at_size", "report_failures", "DeployError"]
DEVICES = ("auto", "cpu", "cuda")
EXIT_IMAGE_ERRORS = EXIT_FAILURE
# Longest side images are segmented at: memory grows with the pixels (a 3-megapixel photo took
# 4.5 GB at its own size); 1024 keeps the detail of PASCAL VOC and COCO images (500 and 640 px).
DEFAULT_MAX_SIZE = 1024
OVERLAY_SUFFIX = "_overlay"

EPILOG = """\
errors:
  A missing, unreadable or non-ial_ext model, a missing input path, an empty
  folder, two inputs that would write the same output name, or --device cuda
  without a usable CUDA provider stop the run at once (exit status 2; nothing
  is written). An image that cannot be read or segmented is reported on
  stderr with its path and skipped; the other images are still processed and
  the exit status is 1 at the end. Exit status 0: every image was written;
  130: interrupted (Ctrl-C). --debug (or IAL_DEBUG=1) adds tracebacks.

images:
  Read with Pillow, EXIF orientation applied (label maps match the image as
  displayed), converted to RGB. Output files are named after the input files.
  An image whose longest side exceeds --max-size is segmented scaled down to
  it; its label map is scaled back to the image's size. The overlay has a
  legend of the classes it shows.

the model:
  Write one with `ial export CHECKPOINT --output model.onnx`. It takes a
  float32 batch (N, 3, H, W) of RGB images normalised with the mean and std
  stored in its metadata (those of training) and returns class probabilities
  (N, C, H, W) and labels (N, H, W). Any image size works; images of one size
  are batched together (--batch-size).
"""


class DeployError(Exception):
    """A problem that stops the whole run (bad model, bad arguments); the message names the path."""


@dataclass
class LoadedModel:
    session: "object"  # onnxruntime.InferenceSession
    info: metadata.ModelInfo
    provider: str
    path: str


# ---------------------------------------------------------------- model and device


def available_providers() -> list[str]:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def shadowed_gpu_runtime() -> bool:
    """True when onnxruntime-gpu is installed but the CPU package onnxruntime is too and its files
    won: both install into the same folder, so the one written last decides the providers."""
    from importlib import metadata as distributions

    try:
        distributions.distribution("onnxruntime-gpu")
        distributions.distribution("onnxruntime")
    except distributions.PackageNotFoundError:
        return False
    return "CUDAExecutionProvider" not in available_providers()


SHADOWED_GPU_FIX = (
    "onnxruntime-gpu is installed but the CPU package onnxruntime overwrote its files; "
    "`pip install --force-reinstall --no-deps onnxruntime-gpu` puts the GPU build back"
)


def load_model(path: str, device: str = "auto", threads: int = 0, spinning: bool = True) -> LoadedModel:
    """Opens ``path`` with onnxruntime on the execution provider ``device`` asks for.

    auto: CUDA when onnxruntime-gpu is installed and a GPU works, else CPU.
    cuda: CUDA or a DeployError. cpu: CPU.
    """
    import onnxruntime

    if device not in DEVICES:
        raise DeployError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    if not os.path.isfile(path):
        raise DeployError(f"model not found: {path}")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # onnxruntime's own warnings (e.g. no GPU) go through our message
    wants_cuda = device in ("auto", "cuda") and "CUDAExecutionProvider" in available_providers()
    if device == "cuda" and not wants_cuda:
        remedy = SHADOWED_GPU_FIX if shadowed_gpu_runtime() else "install onnxruntime-gpu or use --device cpu"
        raise DeployError(
            "--device cuda: this onnxruntime has no CUDAExecutionProvider "
            f"(available: {', '.join(available_providers())}); {remedy}"
        )
    providers = (["CUDAExecutionProvider"] if wants_cuda else []) + ["CPUExecutionProvider"]
    if device == "auto":
        # A failed CUDA start is expected here (we fall back and say so): keep onnxruntime's
        # process-wide logger from printing it as an error, and restore its default after.
        onnxruntime.set_default_logger_severity(4)
    try:
        session = onnxruntime.InferenceSession(path, options, providers=providers)
    except Exception as error:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
        raise DeployError(f"cannot load ONNX model {path}: {error}") from error
    finally:
        onnxruntime.set_default_logger_severity(2)
    used = session.get_providers()[0]
    if device == "cuda" and used != "CUDAExecutionProvider":
        raise DeployError(
            "--device cuda: onnxruntime could not start its CUDA provider (no GPU or CUDA libraries "
            "missing); use --device cpu or --device auto"
        )
    props = dict(session.get_modelmeta().custom_metadata_map)
    try:
        info = metadata.decode(props, path)
    except metadata.ModelMetadataError as error:
        raise DeployError(str(error)) from error
    input_names = [entry.name for entry in session.get_inputs()]
    if input_names != [metadata.INPUT_NAME]:
        raise DeployError(f"{path}: expected one input {metadata.INPUT_NAME!r}, the model has {input_names}")
    return LoadedModel(session, info, used, path)


def describe_provider(provider: str, requested: str) -> str:
    if provider == "CUDAExecutionProvider":
        return "the GPU (onnxruntime CUDAExecutionProvider)"
    why = ""
    if requested == "auto":
        why = f" ({SHADOWED_GPU_FIX})" if shadowed_gpu_runtime() else (
            " (no usable CUDA provider: onnxruntime-gpu and a GPU are needed)")
    return f"the CPU (onnxruntime {provider}){why}"


# ---------------------------------------------------------------- images


def find_images(inputs: Sequence[str]) -> list[str]:
    """Image files named directly, plus the image files (by suffix) directly inside named folders."""
    paths = []
    for entry in inputs:
        if os.path.isdir(entry):
            found = sorted(
                os.path.join(entry, name) for name in os.listdir(entry)
                if name.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(os.path.join(entry, name))
            )
            if not found:
                raise DeployError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {entry}")
            paths += found
        elif os.path.isfile(entry):
            paths.append(entry)
        else:
            raise DeployError(f"no such image or folder: {entry}")
    return paths


def output_names(paths: Sequence[str]) -> list[str]:
    """One output stem per image (its file name without suffix); clashes are an error, not an overwrite."""
    stems = [os.path.splitext(os.path.basename(path))[0] for path in paths]
    first_of = {}
    for stem, path in zip(stems, paths):
        if stem in first_of:
            raise DeployError(
                f"{first_of[stem]} and {path} would both write {stem}.png; run them into separate --output folders"
            )
        first_of[stem] = path
    return stems


# ---------------------------------------------------------------- outputs


def save_label_png(labels: np.ndarray, palette: np.ndarray, path: str) -> None:
    """(H, W) class indices -> palette PNG: pixel values are the labels, colours the palette's."""
    from PIL import Image

    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(np.asarray(palette, dtype=np.uint8).reshape(-1).tolist())
    image.save(path)


def overlay(rgb: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float) -> np.ndarray:
    """The image with every non-background pixel blended towards its class colour."""
    colours = np.asarray(palette, dtype=np.float32)[labels]
    blended = (1 - alpha) * rgb.astype(np.float32) + alpha * colours
    out = np.where((labels > 0)[..., None], blended, rgb.astype(np.float32))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def save_overlay(rgb: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float, path: str,
                 class_names: Sequence[str] = ()) -> None:
    """The overlay, with a legend of the (non-background) classes present below it."""
    from PIL import Image

    picture = Image.fromarray(overlay(rgb, labels, palette, alpha))
    present = present_classes(labels, class_names, palette, skip_background=True)
    with_legend(picture, present or [("background only", tuple(int(c) for c in palette[0]))]).save(path)


def fit_to_max_size(rgb: np.ndarray, max_size: int) -> np.ndarray:
    """The image scaled down (Pillow's antialiased bilinear) so that its longest side is at most
    `max_size`; unchanged when it fits, or when max_size is 0."""
    from PIL import Image

    height, width = rgb.shape[:2]
    if max_size <= 0 or max(height, width) <= max_size:
        return rgb
    scale = max_size / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))


def labels_at_size(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w) labels brought to (height, width) with nearest-neighbour sampling."""
    from PIL import Image

    if labels.shape == (height, width):
        return labels
    return np.asarray(Image.fromarray(labels.astype(np.uint8)).resize((width, height), Image.NEAREST))


# ---------------------------------------------------------------- running


def segment(model: LoadedModel, rgbs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Images of one size -> (probabilities (N, C, H, W), labels (N, H, W) int64)."""
    batch = np.stack([normalize(rgb, model.info.mean, model.info.std) for rgb in rgbs])
    probabilities, labels = model.session.run(list(metadata.OUTPUT_NAMES), {metadata.INPUT_NAME: batch})
    return probabilities, labels


def progress(items: list, enabled: bool, description: str) -> Iterable:
    """tqdm when it is installed, else a line per item on stderr; nothing when disabled."""
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return _plain_progress(items, description)
    return tqdm(items, desc=description, unit="img", file=sys.stderr)


def _plain_progress(items: list, description: str) -> Iterable:
    start = time.monotonic()
    for index, item in enumerate(items, 1):
        yield item
        print(f"{description}: {index}/{len(items)} ({time.monotonic() - start:.1f} s)", file=sys.stderr)


def run(model: LoadedModel, paths: list[str], output: str, *, overlay_alpha: Optional[float] = None,
        batch_size: int = 1, show_progress: bool = True, max_size: int = DEFAULT_MAX_SIZE,
        name: str = "ial-deploy") -> list[tuple[str, str]]:
    """Segments every image; returns the (path, reason) of the images that failed (empty: all written).

    Images whose longest side exceeds ``max_size`` are segmented scaled down to it and their
    labels brought back to the image's size. Consecutive images of one (segmented) size run as
    one batch of up to ``batch_size``.
    """
    os.makedirs(output, exist_ok=True)
    stems = dict(zip(paths, output_names(paths)))
    failures: list[tuple[str, str]] = []

    def report(path: str, reason: str) -> None:
        failures.append((path, reason))
        print(f"{name}: skipping {path}: {reason}", file=sys.stderr)

    def write(batch: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
        try:
            _, labels = segment(model, [scaled for _, _, scaled in batch])
        except Exception as error:  # onnxruntime's errors share no base class
            for path, _, _ in batch:
                report(path, f"inference failed: {error}")
            return
        for (path, rgb, _), image_labels in zip(batch, labels):
            destination = os.path.join(output, stems[path])
            image_labels = labels_at_size(image_labels, *rgb.shape[:2])
            try:
                save_label_png(image_labels, model.info.palette, destination + ".png")
                if overlay_alpha is not None:
                    save_overlay(rgb, image_labels, model.info.palette, overlay_alpha,
                                 destination + OVERLAY_SUFFIX + ".png", model.info.class_names)
            except OSError as error:
                report(path, f"cannot write its output in {output}: {error}")

    pending: list[tuple[str, np.ndarray, np.ndarray]] = []
    for path in progress(paths, show_progress, name):
        try:
            rgb = read_rgb(path)
        except (OSError, ValueError) as error:
            report(path, str(error))
            continue
        scaled = fit_to_max_size(rgb, max_size)
        if pending and (scaled.shape != pending[0][2].shape or len(pending) == batch_size):
            write(pending)
            pending = []
        pending.append((path, rgb, scaled))
    if pending:
        write(pending)
    return failures


# ---------------------------------------------------------------- command line


def build_parser(prog: str = "ial-deploy") -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=prog,
        description="Segment images with an ONNX model exported by `ial export` (numpy + Pillow + "
        "onnxruntime; torch is not needed).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="the .onnx file written by `ial export`")
    parser.add_argument("inputs", nargs="+", help="image files and/or folders (their images, not subfolders)")
    parser.add_argument("--output", "-o", default="outputs/deploy",
                        help="folder for <name>.png label maps (created if missing; default: %(default)s)")
    parser.add_argument("--overlay", action="store_true",
                        help="also write <name>_overlay.png: the image with the non-background classes coloured")
    parser.add_argument("--overlay-alpha", type=float, default=0.5, metavar="A",
                        help="opacity of the class colours in the overlay, 0..1 (default: %(default)s)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="execution provider: cuda (onnxruntime-gpu and a GPU), cpu, or auto = cuda when "
                        "it works, else cpu. The provider used is printed (default: %(default)s)")
    parser.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE, metavar="PX",
                        help="larger images are segmented scaled down to this longest side and their label maps "
                        "scaled back (nearest) to the image's size; 0: always at the image's size "
                        "(default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=1, metavar="N",
                        help="images of the same size run together, up to N at a time (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0, metavar="T",
                        help="onnxruntime CPU threads; 0 = onnxruntime's choice (default: %(default)s)")
    parser.add_argument("--no-spinning", action="store_true",
                        help="idle onnxruntime CPU threads sleep instead of spinning; helps when other jobs share "
                        "the CPU (the SPN scan runs thousands of small ops per image)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    return parser


def main(argv: Optional[Sequence[str]] = None, prog: str = "ial-deploy") -> int:
    """The ial-deploy command; returns the exit status (0 all written, 1 some images failed, 2 stopped)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_command(command_name(prog), lambda: _deploy(argv, prog), argv, (DeployError,))


def _deploy(argv: list[str], prog: str) -> int:
    parser = build_parser(prog)
    arguments = parser.parse_args(argv)
    if not 0.0 <= arguments.overlay_alpha <= 1.0:
        parser.error(f"--overlay-alpha must be within 0..1, got {arguments.overlay_alpha}")
    if arguments.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {arguments.batch_size}")
    if arguments.threads < 0:
        parser.error(f"--threads must be >= 0, got {arguments.threads}")
    if arguments.max_size < 0:
        parser.error(f"--max-size must be >= 0, got {arguments.max_size}")
    paths = find_images(arguments.inputs)
    output_names(paths)
    model = load_model(arguments.model, arguments.device, arguments.threads, not arguments.no_spinning)
    info = model.info
    print(f"{prog}: {model.path}: {info.num_classes} classes ({', '.join(info.class_names)}), {info.refinement} "
          f"model; running on {describe_provider(model.provider, arguments.device)}", file=sys.stderr)
    failures = run(model, paths, arguments.output,
                   overlay_alpha=arguments.overlay_alpha if arguments.overlay else None,
                   batch_size=arguments.batch_size, show_progress=not arguments.no_progress,
                   max_size=arguments.max_size, name=prog)
    return report_failures(prog, "label maps", len(paths), failures, arguments.output)


def report_failures(prog: str, what: str, total: int, failures: list[tuple[str, str]], output: str) -> int:
    """The summary line of a run over images, the failed ones listed; the exit status."""
    print(f"{prog}: wrote {total - len(failures)} of {total} {what} to {output}", file=sys.stderr)
    if failures:
        print(f"{prog}: {len(failures)} image(s) failed:", file=sys.stderr)
        for path, reason in failures:
            print(f"  {path}: {reason}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
