"""run.precision: autocast in training and passes, the gradient scaler of float16 and its place in
checkpoints, and one pairwise iteration in bfloat16 / float16 against float32."""
import math

import pytest
import torch

from benchmarks.pairwise_iteration import make_inputs
from benchmarks.precision_iteration import parity
from ial_ext.data import SyntheticDataset
from ial_ext.models import UnaryNetwork
from ial_ext.train.config import OptimConfig
from ial_ext.train.em import run_em
from ial_ext.train.fit import fit
from ial_ext.train.label_store import LabelStore
from ial_ext.train.losses import segmentation_loss
from ial_ext.train.optim import ScheduledSGD
from ial_ext.train.passes import autocast
from ial_ext.train.runtime import Runtime
from ial_ext.train.views import TrainingView
from tests.test_em_loop import tiny_config

from tests.fit_helpers import FirstCheckpointRecorder

REDUCED = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A synthetic set with its true masks in a label store, as a finished pass leaves them."""
    dataset = SyntheticDataset("train", num_images=6, image_size=32, num_object_classes=2)
    store = LabelStore(str(tmp_path_factory.mktemp("labels")))
    store.prepare("truth")
    for index in range(len(dataset)):
        store.write(index, dataset[index]["mask"].numpy().astype("uint8"))
    return dataset, store


def train_unary(labelled, precision, iterations=20, checkpoints=None, seen=None):
    dataset, store = labelled

    def loss_of(model, batch):
        logits = model(batch["image"])
        loss = segmentation_loss(logits, batch["target"])
        if seen is not None:
            seen.append((logits.dtype, loss.item()))
        return loss

    return fit(
        Runtime(device=torch.device("cpu"), progress=False, seed=3, precision=precision), ("unary", 1),
        lambda: UnaryNetwork(dataset.num_classes, backbone="small"), TrainingView(dataset, store),
        OptimConfig(iterations=iterations, batch_size=2, lr=0.05), loss_of, "unary", checkpoints=checkpoints,
    )


@pytest.mark.parametrize("precision", sorted(REDUCED))
def test_fit_trains_under_autocast_with_finite_losses(labelled, precision):
    seen = []
    network = train_unary(labelled, precision, iterations=6, seen=seen)
    assert [dtype for dtype, _ in seen] == [REDUCED[precision]] * 6  # the forward ran in the reduced type
    assert all(math.isfinite(loss) for _, loss in seen)
    assert all(value.dtype != REDUCED[precision] for value in network.state_dict().values())  # weights stay float32
    assert all(torch.isfinite(value).all() for value in network.state_dict().values() if value.is_floating_point())


def test_float16_keeps_the_gradient_scaler_in_checkpoints_and_resumes_alike(labelled):
    recorder = FirstCheckpointRecorder()
    uninterrupted = train_unary(labelled, "float16", checkpoints=recorder)
    scaler = recorder.saved["optimizer"]["scaler"]
    assert scaler["scale"] > 0 and "_growth_tracker" in scaler
    torch.manual_seed(12345)
    resumed = train_unary(labelled, "float16", checkpoints=FirstCheckpointRecorder(recorder.saved))
    for name, value in uninterrupted.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_scaler_state_survives_a_checkpoint_round_trip(tmp_path):
    weight = torch.nn.Parameter(torch.ones(3))
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1)
    optimizer = ScheduledSGD([weight], OptimConfig(iterations=5, lr=0.1), scaler)
    for _ in range(3):
        optimizer.step((weight**2).sum())
    assert scaler.get_scale() == 1024.0 * 2**3  # every finite step grows it
    torch.save(optimizer.state_dict(), tmp_path / "state.pt")
    fresh = ScheduledSGD([weight], OptimConfig(iterations=5, lr=0.1), torch.amp.GradScaler("cpu"))
    fresh.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert fresh.scaler.get_scale() == scaler.get_scale()
    assert fresh.iteration == 3


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="run.precision must be one of"):
        autocast(Runtime(device=torch.device("cpu"), precision="float8"))


def test_tiny_loop_completes_in_bfloat16(tmp_path):
    config = tiny_config(tmp_path)
    config.run.precision = "bfloat16"
    rows = run_em(config)
    assert [row["stage"] for row in rows] == ["seeds", "unary", "mined", "pairwise", "unary", "mined", "pairwise"]
    for row in rows:
        assert math.isfinite(row["train_miou"])
        if row["energy"] is not None:
            assert math.isfinite(row["energy"])


@pytest.mark.parametrize("precision", sorted(REDUCED))
def test_one_pairwise_iteration_matches_float32(precision):
    # Within a few unit roundoffs u of the type (bfloat16 2^-9, float16 2^-12): the ial ops run
    # in float32 under autocast, so only the convolutions round. Each parameter's own gradient
    # within about 8 degrees of float32's in float16 and 14 in bfloat16, whose 8-bit mantissa
    # weighs most on the least averaged gradient: the 16 GroupNorm weights of the guidance
    # CNN's first layer, below every rounded convolution.
    roundoff = {"bfloat16": 2.0**-9, "float16": 2.0**-12}[precision]
    result = parity(make_inputs(batch_size=2, size=64), precisions=(precision,))[precision]
    assert result["loss_relative_difference"] < 4 * roundoff
    assert result["gradient_cosine"] > 1 - 4 * roundoff
    assert result["worst_parameter_cosine"] > {"bfloat16": 0.97, "float16": 0.99}[precision]


def test_label_passes_predict_under_autocast(labelled):
    from ial_ext.train.passes import label_pass

    dataset, _ = labelled
    seen = []

    def predict(batch):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return torch.zeros(batch["image"].shape[0], *batch["image"].shape[-2:], dtype=torch.long)

    runtime = Runtime(device=torch.device("cpu"), progress=False, precision="bfloat16")
    label_pass(runtime, TrainingView(dataset), predict, dataset.num_classes, "pass")
    assert seen and all(dtype == torch.bfloat16 for dtype in seen)


@pytest.mark.slow
def test_compiled_fit_trains_like_eager(labelled):
    """run.compile: the same losses as eager to float32 rounding (inductor reorders sums), with
    inductor drawing dropout's random numbers as eager does (its own generator differs)."""
    import torch._inductor.config as inductor_config

    dataset, store = labelled

    def losses(compiled):
        seen = []

        def loss_of(model, batch):
            loss = segmentation_loss(model(batch["image"]), batch["target"])
            seen.append(loss.item())
            return loss

        fit(Runtime(device=torch.device("cpu"), progress=False, seed=3, compile=compiled), ("unary", 1),
            lambda: UnaryNetwork(dataset.num_classes, backbone="small"), TrainingView(dataset, store),
            OptimConfig(iterations=3, batch_size=2, lr=0.05), loss_of, "unary")
        return seen

    with inductor_config.patch(fallback_random=True):
        compiled = losses(True)
    torch.testing.assert_close(compiled, losses(False), rtol=1e-4, atol=0)
