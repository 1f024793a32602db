"""ONNX export: a briefly trained unary + pairwise model, onnxruntime vs PyTorch eager.

One checkpoint (trainer format) is trained and exported once per module; the
parity cases then run it at several batch and image sizes, most of them not
the traced one (64 x 80).
"""
import numpy as np
import onnx
import onnxruntime
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ial_ext.data import IMAGENET_MEAN, IMAGENET_STD, VOC_PALETTE, SyntheticDataset, normalize_image
from ial_ext.models import PairwiseNetwork, UnaryNetwork
from ial_export import metadata
from ial_export.deploy import main as deploy_main
from ial_ext.export import (
    export_checkpoint,
    export_modules,
    load_checkpoint_modules,
    non_standard_domains,
)

NUM_OBJECT_CLASSES = 3
PROBABILITY_TOLERANCE = 1e-4
MIN_LABEL_AGREEMENT = 0.999
# (batch, height, width): the traced size, then sizes the export never saw.
PARITY_CASES = [(1, 64, 80), (2, 96, 96), (3, 45, 59), (1, 33, 130), (4, 17, 23), (2, 1, 7)]


def _weights(masks: torch.Tensor, num_classes: int) -> torch.Tensor:
    # Inverse-frequency class weights: otherwise three steps only learn "background".
    counts = torch.bincount(masks[masks != 255].flatten(), minlength=num_classes).clamp_min(1).float()
    return (1.0 / counts) / (1.0 / counts).sum()


def train_briefly(dataset):
    """A few optimizer steps of CE on the synthetic masks: non-trivial weights in seconds."""
    torch.manual_seed(0)
    samples = [dataset[i] for i in range(len(dataset))]
    images = torch.stack([s["image"] for s in samples])
    masks = torch.stack([s["mask"] for s in samples])
    weights = _weights(masks, dataset.num_classes)
    unary = UnaryNetwork(dataset.num_classes)
    pairwise = PairwiseNetwork(dataset.num_classes, width=8)
    optimizer = torch.optim.Adam(unary.parameters(), lr=1e-2)
    for _ in range(3):
        loss = F.cross_entropy(unary(images), masks, weight=weights, ignore_index=255)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    unary.eval()
    with torch.no_grad():
        unary_probabilities = unary(images).softmax(1)
    optimizer = torch.optim.Adam(pairwise.parameters(), lr=1e-2)
    for _ in range(5):
        refined = pairwise(images, unary_probabilities)
        loss = F.nll_loss(refined.log(), masks, weight=weights, ignore_index=255)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return unary.eval(), pairwise.eval()


def checkpoint_of(models: dict, dataset, step: int = 1) -> dict:
    """The dict the trainer saves (format ial_ext.checkpoint/1)."""
    return {
        "format": "ial_ext.checkpoint/1",
        "step": step,
        "num_classes": dataset.num_classes,
        "class_names": list(dataset.class_names),
        "models": {
            name: {"spec": network.spec(), "state_dict": network.state_dict()} for name, network in models.items()
        },
        "config": {},
    }


def eager_reference(unary, pairwise, images):
    """What the trainer computes: softmax of f, refined by g (compiled spn_scan), argmax."""
    with torch.no_grad():
        probabilities = pairwise(images, unary(images).softmax(1))
    return probabilities.numpy(), probabilities.argmax(1).numpy()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    dataset = SyntheticDataset("train", num_images=4, image_size=48, num_object_classes=NUM_OBJECT_CLASSES)
    unary, pairwise = train_briefly(dataset)
    directory = tmp_path_factory.mktemp("export")
    checkpoint = directory / "step_1.pt"
    torch.save(checkpoint_of({"unary": unary, "pairwise": pairwise}, dataset), checkpoint)
    onnx_path = directory / "model.onnx"
    report = export_checkpoint(checkpoint, onnx_path)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return {"unary": unary, "pairwise": pairwise, "dataset": dataset, "onnx_path": onnx_path, "report": report,
            "session": session, "checkpoint": checkpoint}


def parity_images(batch, height, width):
    """Synthetic scenes (val split) cropped to the size; noise where the scene is smaller."""
    scenes = SyntheticDataset("val", num_images=batch, image_size=96, num_object_classes=NUM_OBJECT_CLASSES)
    images = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(batch * height))
    h, w = min(height, 96), min(width, 96)
    for i in range(batch):
        images[i, :, :h, :w] = scenes[i]["image"][:, :h, :w]
    return images


@pytest.mark.parametrize("batch,height,width", PARITY_CASES, ids=lambda v: str(v))
def test_onnxruntime_matches_eager(trained, batch, height, width):
    images = parity_images(batch, height, width)
    expected_probabilities, expected_labels = eager_reference(trained["unary"], trained["pairwise"], images)
    probabilities, labels = trained["session"].run(None, {"images": images.numpy()})
    assert probabilities.shape == (batch, NUM_OBJECT_CLASSES + 1, height, width)
    assert labels.shape == (batch, height, width) and labels.dtype == np.int64
    difference = float(np.abs(probabilities - expected_probabilities).max())
    agreement = float((labels == expected_labels).mean())
    print(f"parity {batch}x3x{height}x{width}: max |dp| = {difference:.2e}, labels agree on {agreement:.6f}")
    assert difference <= PROBABILITY_TOLERANCE
    assert agreement >= MIN_LABEL_AGREEMENT
    # The model's own labels are the argmax of its own probabilities.
    assert (labels == probabilities.argmax(1)).all()


def test_labels_are_not_trivial(trained):
    # Parity on a model that answers "background" everywhere would prove little.
    _, labels = trained["session"].run(None, {"images": parity_images(2, 96, 96).numpy()})
    assert len(np.unique(labels)) >= 3


def test_graph_is_standard_onnx_with_dynamic_sizes(trained):
    model = onnx.load(str(trained["onnx_path"]))
    onnx.checker.check_model(model, full_check=True)
    assert non_standard_domains(model) == set()
    opset = {entry.domain: entry.version for entry in model.opset_import}
    assert opset.get("", opset.get("ai.onnx")) == 18
    op_types = {node.op_type for node in model.graph.node}
    assert "Scan" in op_types and sum(node.op_type == "Scan" for node in model.graph.node) == 4
    assert not model.functions
    (images,) = model.graph.input
    assert images.name == metadata.INPUT_NAME
    dims = images.type.tensor_type.shape.dim
    assert [bool(dims[i].dim_param) for i in range(4)] == [True, False, True, True]
    assert dims[1].dim_value == 3
    assert [output.name for output in model.graph.output] == list(metadata.OUTPUT_NAMES)
    assert trained["report"].max_abs_probability_diff <= PROBABILITY_TOLERANCE


def test_metadata_carries_classes_palette_and_normalisation(trained):
    model = onnx.load(str(trained["onnx_path"]))
    info = metadata.decode({p.key: p.value for p in model.metadata_props}, "model")
    assert list(info.class_names) == trained["dataset"].class_names
    assert (info.palette == VOC_PALETTE).all()
    assert info.mean == pytest.approx(IMAGENET_MEAN) and info.std == pytest.approx(IMAGENET_STD)
    assert info.refinement == "pairwise"
    assert "step_1.pt" in info.source and "step 1" in info.source


def test_runner_end_to_end_matches_eager(trained, tmp_path):
    scene = SyntheticDataset("val", num_images=1, image_size=96, num_object_classes=NUM_OBJECT_CLASSES)[0]
    rgb = scene["rgb"].numpy()[:, :90]  # a width the export never saw
    Image.fromarray(rgb).save(tmp_path / "scene.png")
    status = deploy_main([str(trained["onnx_path"]), str(tmp_path / "scene.png"), "--output", str(tmp_path / "out"),
                          "--device", "cpu", "--no-progress"])
    assert status == 0
    written = Image.open(tmp_path / "out" / "scene.png")
    _, expected = eager_reference(trained["unary"], trained["pairwise"], normalize_image(rgb)[None])
    assert written.mode == "P" and written.size == (90, 96)
    assert (np.asarray(written) == expected[0]).mean() >= MIN_LABEL_AGREEMENT


class TinyUnary(nn.Module):
    """A stand-in with UnaryNetwork's call signature."""

    def __init__(self, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 3, padding=1)

    def forward(self, images):
        return self.conv(images)


def test_export_modules_without_pairwise_and_with_custom_metadata(tmp_path):
    torch.manual_seed(0)
    unary = TinyUnary(3)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[1] = (10, 20, 30)
    report = export_modules(unary, None, tmp_path / "unary.onnx", class_names=["bg", "a", "b"], mean=mean,
                            std=std, palette=palette)
    assert report.refinement == "unary" and report.num_classes == 3 and report.opset == 18
    session = onnxruntime.InferenceSession(str(tmp_path / "unary.onnx"), providers=["CPUExecutionProvider"])
    images = torch.randn(2, 3, 19, 31)
    probabilities, labels = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        expected = unary(images).softmax(1).numpy()
    assert np.abs(probabilities - expected).max() <= PROBABILITY_TOLERANCE
    assert (labels == expected.argmax(1)).mean() >= MIN_LABEL_AGREEMENT
    info = metadata.decode(dict(session.get_modelmeta().custom_metadata_map), "unary.onnx")
    assert info.class_names == ("bg", "a", "b") and info.mean == mean and info.std == std
    assert (info.palette == palette).all()
    assert unary.conv.weight.device.type == "cpu" and unary.training  # the caller's module is untouched


@pytest.mark.parametrize("gate_layout, strength", [("shared", True), ("shared", False), ("per_class", False)])
def test_both_gate_layouts_export_and_match_eager(gate_layout, strength, tmp_path):
    # The shared layout's (B, 3, H, W) gates broadcast over the classes inside the ONNX Scan.
    torch.manual_seed(0)
    num_classes = 4
    unary = TinyUnary(num_classes)
    pairwise = PairwiseNetwork(num_classes, width=8, gate_layout=gate_layout, strength=strength).eval()
    with torch.no_grad():  # strong, image-dependent gates rather than the mild initialisation
        pairwise.gates.weight.normal_(std=0.5)
        if strength:  # strengths from 0.5 to 2: some classes' gates saturate the normalisation
            pairwise.log_strength.uniform_(-0.7, 0.7)
    report = export_modules(unary, pairwise, tmp_path / "model.onnx")
    assert report.max_abs_probability_diff <= PROBABILITY_TOLERANCE
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    images = parity_images(2, 41, 57)
    expected_probabilities, expected_labels = eager_reference(unary.eval(), pairwise, images)
    probabilities, labels = session.run(None, {"images": images.numpy()})
    assert np.abs(probabilities - expected_probabilities).max() <= PROBABILITY_TOLERANCE
    assert (labels == expected_labels).mean() >= MIN_LABEL_AGREEMENT
    scans = [node for node in onnx.load(tmp_path / "model.onnx").graph.node if node.op_type == "Scan"]
    assert len(scans) == 4  # one per direction


def test_export_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="opset must be >= 18"):
        export_modules(TinyUnary(2), None, tmp_path / "m.onnx", opset=17)
    with pytest.raises(ValueError, match="3 class names given for a model with 2 classes"):
        export_modules(TinyUnary(2), None, tmp_path / "m.onnx", class_names=["a", "b", "c"])
    assert not (tmp_path / "m.onnx").exists()


def test_checkpoint_errors_name_the_path(trained, tmp_path):
    missing = tmp_path / "missing.pt"
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        export_checkpoint(missing, tmp_path / "m.onnx")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt.pt is corrupt or unreadable"):
        export_checkpoint(corrupt, tmp_path / "m.onnx")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="foreign.pt is not an ial_ext checkpoint"):
        export_checkpoint(foreign, tmp_path / "m.onnx")
    step0 = tmp_path / "step_0.pt"
    torch.save(checkpoint_of({}, trained["dataset"], step=0), step0)
    with pytest.raises(ValueError, match="step_0.pt holds no unary network"):
        export_checkpoint(step0, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_load_checkpoint_modules_rebuilds_the_trained_weights(trained):
    unary, pairwise, state = load_checkpoint_modules(trained["checkpoint"])
    assert state["step"] == 1 and not unary.training and not pairwise.training
    images = parity_images(1, 32, 32)
    for rebuilt, original in ((unary, trained["unary"]), (pairwise.features, trained["pairwise"].features)):
        with torch.no_grad():
            assert torch.equal(rebuilt(images), original(images))



def test_checkpoint_with_multiscale_unary_exports_what_the_trainer_evaluates(trained, tmp_path):
    """A trainer checkpoint records multi-scale + mirror unary inference; the ONNX file must
    compute exactly that, at sizes the export never saw."""
    from ial_ext.models import MultiScaleUnary

    state = checkpoint_of({"unary": trained["unary"], "pairwise": trained["pairwise"]}, trained["dataset"])
    state["unary_inference"] = {"scales": [1.0, 1.5], "flip": True}
    checkpoint = tmp_path / "step_1.pt"
    torch.save(state, checkpoint)
    onnx_path = tmp_path / "model.onnx"
    export_checkpoint(checkpoint, onnx_path)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    multiscale = MultiScaleUnary(trained["unary"], (1.0, 1.5), flip=True).eval()
    for batch, height, width in [(2, 45, 59), (1, 33, 70)]:
        images = parity_images(batch, height, width)
        expected_probabilities, expected_labels = eager_reference(multiscale, trained["pairwise"], images)
        probabilities, labels = session.run(None, {session.get_inputs()[0].name: images.numpy()})
        assert np.abs(probabilities - expected_probabilities).max() < 1e-4
        assert (labels == expected_labels).mean() >= 0.999
