"""The torch-free deployment runner (ial_export.deploy).

The model here is a small hand-written ONNX graph with the exporter's metadata
(a 1x1 convolution over the normalised image, softmax, argmax), so the expected
labels are known exactly in numpy; tests/test_export.py runs the runner on a real
exported network. The end-to-end cases run the runner in a fresh Python in which
importing torch (and ial_ext) raises ImportError.
"""
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from ial_export import deploy, metadata
from ial_export.palette import voc_palette

NUM_CLASSES = 4
# Class k > 0 scores the k-th normalised channel, background a constant: labels vary with colour.
WEIGHTS = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
BIAS = np.array([0.5, 0, 0, 0], dtype=np.float32)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLASS_NAMES = ("background", "red", "green", "blue")

# A fresh interpreter where `import torch` / `import ial_ext` (and the names after
# --block) fail, which then runs `python -m ial_export.deploy ARGS` and reports
# which of the blocked packages ended up loaded (none may).
RUNNER_WITHOUT_TORCH = textwrap.dedent("""
    import runpy, sys
    blocked = {"torch", "ial_ext"} | set(sys.argv[1].split(",")) - {""}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in blocked:
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Blocker())
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        sys.exit("the torch blocker does not work")
    sys.argv = ["ial-deploy"] + sys.argv[2:]
    try:
        runpy.run_module("ial_export.deploy", run_name="__main__", alter_sys=True)
    finally:
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in blocked)
        print("LOADED_BLOCKED=" + ",".join(loaded))
""")


def tiny_model(with_metadata: bool = True) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Conv", ["images", "weight", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["labels"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", NUM_CLASSES, "H", "W"]),
         helper.make_tensor_value_info("labels", TensorProto.INT64, ["N", "H", "W"])],
        [helper.make_tensor("weight", TensorProto.FLOAT, [NUM_CLASSES, 3, 1, 1], WEIGHTS.flatten().tolist()),
         helper.make_tensor("bias", TensorProto.FLOAT, [NUM_CLASSES], BIAS.tolist())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    if with_metadata:
        info = metadata.ModelInfo(CLASS_NAMES, voc_palette(), MEAN, STD, "unary", "tiny test model")
        helper.set_model_props(model, metadata.encode(info))
    onnx.checker.check_model(model)
    return model


def expected_labels(rgb: np.ndarray) -> np.ndarray:
    normalised = (rgb.astype(np.float32) / 255.0 - np.float32(MEAN)) / np.float32(STD)
    return (normalised @ WEIGHTS.T + BIAS).argmax(-1)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("deploy_model") / "tiny.onnx"
    onnx.save(tiny_model(), path)
    return path


def write_images(folder, sizes, seed=0):
    """Random RGB PNGs named img<i>.png; returns {stem: rgb}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = {}
    for i, (height, width) in enumerate(sizes):
        rgb = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(folder / f"img{i}.png")
        images[f"img{i}"] = rgb
    return images


def run_without_torch(args, block=()):
    result = subprocess.run(
        [sys.executable, "-c", RUNNER_WITHOUT_TORCH, ",".join(block), *map(str, args)],
        capture_output=True, text=True, timeout=120,
    )
    loaded = [line for line in result.stdout.splitlines() if line.startswith("LOADED_BLOCKED=")]
    assert loaded == ["LOADED_BLOCKED="], result.stdout + result.stderr
    return result


def assert_label_png(path, rgb):
    image = Image.open(path)
    assert image.mode == "P"
    assert image.size == (rgb.shape[1], rgb.shape[0])
    np.testing.assert_array_equal(np.asarray(image), expected_labels(rgb))
    palette = np.asarray(image.getpalette(), dtype=np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(palette[:NUM_CLASSES], voc_palette()[:NUM_CLASSES])


def test_runs_without_torch_and_writes_palette_pngs(model_path, tmp_path):
    images = write_images(tmp_path / "in", [(20, 30), (20, 30), (17, 9)])
    result = run_without_torch([model_path, tmp_path / "in", "--output", tmp_path / "out", "--overlay",
                                "--batch-size", "2", "--device", "cpu"])
    assert result.returncode == 0, result.stderr
    assert "CPUExecutionProvider" in result.stderr and "wrote 3 of 3" in result.stderr
    for stem, rgb in images.items():
        assert_label_png(tmp_path / "out" / f"{stem}.png", rgb)
        overlay = np.asarray(Image.open(tmp_path / "out" / f"{stem}_overlay.png"))
        assert overlay.shape[1:] == rgb.shape[1:] and overlay.shape[0] > rgb.shape[0]  # the legend below
        overlay = overlay[: rgb.shape[0]]
        background = expected_labels(rgb) == 0
        np.testing.assert_array_equal(overlay[background], rgb[background])
        colour = voc_palette()[expected_labels(rgb)].astype(np.float32)
        blended = np.clip(np.rint(0.5 * rgb + 0.5 * colour), 0, 255)
        np.testing.assert_array_equal(overlay[~background], blended[~background])


def test_plain_progress_without_tqdm_and_auto_device(model_path, tmp_path):
    images = write_images(tmp_path / "in", [(8, 8), (9, 7)])
    result = run_without_torch([model_path, *sorted((tmp_path / "in").iterdir()), "--output", tmp_path / "out"],
                               block=["tqdm"])
    assert result.returncode == 0, result.stderr
    assert "ial-deploy: 1/2" in result.stderr and "ial-deploy: 2/2" in result.stderr
    # auto says which provider it ended up with (CPU on a machine without a usable GPU).
    assert "running on the GPU" in result.stderr or "running on the CPU" in result.stderr
    for stem, rgb in images.items():
        assert_label_png(tmp_path / "out" / f"{stem}.png", rgb)


def test_bad_images_are_reported_and_skipped(model_path, tmp_path):
    images = write_images(tmp_path / "in", [(12, 10), (12, 10)])
    (tmp_path / "in" / "garbage.png").write_bytes(b"this is no image")
    full = (tmp_path / "in" / "img0.png").read_bytes()
    (tmp_path / "in" / "truncated.png").write_bytes(full[: len(full) // 2])
    result = run_without_torch([model_path, tmp_path / "in", "--output", tmp_path / "out", "--no-progress"])
    assert result.returncode == deploy.EXIT_IMAGE_ERRORS
    assert f"cannot read image {tmp_path / 'in' / 'garbage.png'}" in result.stderr
    assert str(tmp_path / "in" / "truncated.png") in result.stderr
    assert "wrote 2 of 4" in result.stderr
    for stem, rgb in images.items():
        assert_label_png(tmp_path / "out" / f"{stem}.png", rgb)
    assert not (tmp_path / "out" / "garbage.png").exists() and not (tmp_path / "out" / "truncated.png").exists()


def test_missing_model_stops_with_its_path(tmp_path, capsys):
    write_images(tmp_path / "in", [(5, 5)])
    status = deploy.main([str(tmp_path / "absent.onnx"), str(tmp_path / "in"), "-o", str(tmp_path / "out")])
    assert status == deploy.EXIT_USAGE
    assert f"model not found: {tmp_path / 'absent.onnx'}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_corrupt_model_stops_with_its_path(tmp_path, capsys):
    write_images(tmp_path / "in", [(5, 5)])
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x07garbage" * 10)
    status = deploy.main([str(tmp_path / "corrupt.onnx"), str(tmp_path / "in"), "-o", str(tmp_path / "out")])
    assert status == deploy.EXIT_USAGE
    assert f"cannot load ONNX model {tmp_path / 'corrupt.onnx'}" in capsys.readouterr().err


def test_foreign_onnx_model_is_refused(tmp_path, capsys):
    write_images(tmp_path / "in", [(5, 5)])
    onnx.save(tiny_model(with_metadata=False), tmp_path / "foreign.onnx")
    status = deploy.main([str(tmp_path / "foreign.onnx"), str(tmp_path / "in"), "-o", str(tmp_path / "out")])
    assert status == deploy.EXIT_USAGE
    assert f"{tmp_path / 'foreign.onnx'} is not an ial_ext segmentation model" in capsys.readouterr().err


def test_input_problems_stop_before_running(model_path, tmp_path, capsys):
    write_images(tmp_path / "a", [(5, 5)])
    write_images(tmp_path / "b", [(6, 6)])
    (tmp_path / "empty").mkdir()
    cases = {
        (str(tmp_path / "nothing.png"),): f"no such image or folder: {tmp_path / 'nothing.png'}",
        (str(tmp_path / "empty"),): "no images",
        (str(tmp_path / "a"), str(tmp_path / "b")): "would both write img0.png",
    }
    for inputs, message in cases.items():
        status = deploy.main([str(model_path), *inputs, "-o", str(tmp_path / "out"), "--no-progress"])
        assert status == deploy.EXIT_USAGE
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_device_cuda_without_a_usable_gpu_is_an_error(model_path, tmp_path, capsys):
    write_images(tmp_path / "in", [(5, 5)])
    try:
        model = deploy.load_model(str(model_path), "cuda")
    except deploy.DeployError as error:
        assert "--device cuda" in str(error)
        status = deploy.main([str(model_path), str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--device", "cuda"])
        assert status == deploy.EXIT_USAGE and "--device cuda" in capsys.readouterr().err
    else:
        assert model.provider == "CUDAExecutionProvider"


def test_batching_and_thread_options_do_not_change_labels(model_path, tmp_path):
    images = write_images(tmp_path / "in", [(11, 13)] * 5 + [(7, 7)])
    for batch_size, threads in ((1, []), (4, ["--threads", "1", "--no-spinning"])):
        status = deploy.main([str(model_path), str(tmp_path / "in"), "-o", str(tmp_path / f"out{batch_size}"),
                              "--batch-size", str(batch_size), "--device", "cpu", "--no-progress", *threads])
        assert status == 0
        for stem, rgb in images.items():
            assert_label_png(tmp_path / f"out{batch_size}" / f"{stem}.png", rgb)


def test_help_explains_every_option():
    parser = deploy.build_parser()
    text = parser.format_help()
    for action in parser._actions:
        assert action.help, action.dest
        for option in action.option_strings:
            assert option in text
    assert "exit status 2" in text and "exit status is 1" in text


def test_bad_option_values_are_usage_errors(model_path, tmp_path):
    for option in (["--overlay-alpha", "1.5"], ["--batch-size", "0"], ["--threads", "-1"], ["--device", "tpu"]):
        with pytest.raises(SystemExit) as exit_info:
            deploy.main([str(model_path), str(tmp_path), *option])
        assert exit_info.value.code == 2


def test_normalisation_and_palette_match_training():
    import torch

    from ial_ext.data import VOC_PALETTE, normalize_image

    rgb = np.random.default_rng(1).integers(0, 256, size=(9, 11, 3), dtype=np.uint8)
    ours = deploy.normalize(rgb, MEAN, STD)
    assert ours.dtype == np.float32
    assert torch.equal(torch.from_numpy(ours), normalize_image(rgb))
    np.testing.assert_array_equal(voc_palette(), VOC_PALETTE)


def test_metadata_round_trip_and_malformed_metadata():
    info = metadata.ModelInfo(CLASS_NAMES, voc_palette(), MEAN, STD, "pairwise", "x")
    decoded = metadata.decode(metadata.encode(info), "m.onnx")
    assert decoded.class_names == CLASS_NAMES and decoded.mean == MEAN and decoded.num_classes == NUM_CLASSES
    np.testing.assert_array_equal(decoded.palette, voc_palette())
    broken = {**metadata.encode(info), metadata.PALETTE_KEY: "[[1, 2]]"}
    with pytest.raises(metadata.ModelMetadataError, match="m.onnx: ial_ext metadata has a palette of shape"):
        metadata.decode(broken, "m.onnx")
    without_palette = {k: v for k, v in metadata.encode(info).items() if k != metadata.PALETTE_KEY}
    np.testing.assert_array_equal(metadata.decode(without_palette, "m.onnx").palette, voc_palette())
    with pytest.raises(metadata.ModelMetadataError, match="malformed"):
        metadata.decode({**metadata.encode(info), metadata.MEAN_KEY: "not json"}, "m.onnx")
