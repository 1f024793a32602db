"""Seeds, metrics, the energy, losses, the poly schedule, the config CLI and checkpoints."""
import json
import os

import pytest
import torch

from ial_ext.cli import build_parser, config_from_arguments
from ial_ext.train.checkpoint import (
    CorruptCheckpointError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    step_path,
)
from ial_ext.train.config import Config, load_config
from ial_ext.train.losses import refined_map_loss, segmentation_loss
from ial_ext.train.metrics import ConfusionMatrix, affinity_energy
from ial_ext.train.optim import poly_learning_rate
from ial_ext.train.report import format_table, table_row
from ial_ext.train.seeds import IGNORE_INDEX, seeds_from_cams
from ial_ext.train.segmenter import mask_absent_classes, unary_probabilities

from tests.fit_helpers import FirstCheckpointRecorder


def test_seeds_confident_regions_and_unknown_band():
    # One present class (2 of 3 foreground classes absent): a CAM ramp from 0 to 1 along x.
    ramp = torch.linspace(0, 1, 11).expand(1, 5, 11)
    cams = torch.stack([torch.zeros(1, 5, 11), ramp, torch.rand(1, 5, 11)], dim=1)
    class_labels = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    seeds = seeds_from_cams(cams, class_labels, foreground_alpha=4, background_alpha=32)[0, 0]
    # alpha 4: (1 - v)^4 < v from v ~ 0.28; alpha 32: (1 - v)^32 < v from v ~ 0.08.
    assert seeds[0] == 0  # CAM 0: confident background
    assert seeds[-1] == 2  # CAM 1: confident foreground, class 2
    assert (seeds[1:3] == IGNORE_INDEX).all()  # between the two thresholds: unknown
    assert set(seeds.tolist()) <= {0, 2, IGNORE_INDEX}  # class 3's CAM is noise but absent


def test_seeds_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="cams"):
        seeds_from_cams(torch.rand(1, 3, 4, 4), torch.ones(1, 3))


def test_confusion_matrix_miou_precision_coverage():
    truth = torch.tensor([[0, 0, 1, 1, 2, 255]])
    prediction = torch.tensor([[0, 1, 1, 1, 255, 2]])
    matrix = ConfusionMatrix(3).update(prediction, truth)
    # class 0: tp 1, union 2; class 1: tp 2, union 3; class 2: tp 0, union 1 (the unknown pixel misses it).
    assert matrix.iou()[0] == pytest.approx(0.5)
    assert matrix.iou()[1] == pytest.approx(2 / 3)
    assert matrix.iou()[2] == 0
    assert matrix.miou() == pytest.approx((0.5 + 2 / 3) / 3)
    assert matrix.precision() == pytest.approx(3 / 4)
    assert matrix.coverage() == pytest.approx(4 / 5)


def test_energy_zero_on_constant_map_and_matches_brute_force():
    torch.manual_seed(0)
    guidance = torch.randn(1, 24, 4, 5)
    assert affinity_energy(torch.full((1, 2, 4, 5), 0.5), guidance).abs().max() < 1e-7
    probabilities = torch.rand(1, 2, 4, 5, dtype=torch.float64)
    energy = affinity_energy(probabilities, guidance.double())
    from ial_ext.nn import normalize_gates
    from ial_ext.nn.spatial_propagation import NEIGHBOUR_OFFSETS

    expected = 0.0
    for direction, raw in enumerate(guidance.double().chunk(4, dim=1)):
        gates = normalize_gates(raw).chunk(3, dim=1)
        for gate, (dy, dx) in zip(gates, NEIGHBOUR_OFFSETS[direction]):
            for c in range(2):
                for i in range(4):
                    for j in range(5):
                        if 0 <= i + dy < 4 and 0 <= j + dx < 5:
                            difference = probabilities[0, c, i, j] - probabilities[0, c, i + dy, j + dx]
                            expected += 0.5 * float(gate[0, c, i, j]) * float(difference) ** 2
    assert float(energy[0]) == pytest.approx(expected / 20, rel=1e-12)


def test_losses_ignore_unknown_and_mask_absent_classes():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    unknown = torch.full((2, 4, 4), IGNORE_INDEX)
    assert segmentation_loss(logits, unknown).item() == 0
    segmentation_loss(logits, unknown).backward()  # still differentiable: no NaN, zero gradient
    assert logits.grad.abs().max() == 0
    masked = mask_absent_classes(torch.zeros(1, 3, 2, 2), torch.tensor([[1.0, 0.0, 1.0]]))
    assert (masked.softmax(1)[:, 1] == 0).all()
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    assert refined_map_loss(torch.full((1, 3, 2, 2), 1 / 3), target).item() == pytest.approx(
        -torch.log(torch.tensor(1 / 3)).item()
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_unary_probabilities_without_autograd_are_the_same_bits_as_with_it(dtype):
    # Without autograd the mask and the softmax overwrite the logits in place.
    generator = torch.Generator().manual_seed(2)
    conv = torch.nn.Conv2d(3, 5, 3, padding=1).to(dtype)
    images = torch.randn(3, 3, 17, 23, generator=generator, dtype=dtype)
    class_labels = torch.tensor([[1.0, 0, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 1]])
    with_autograd = unary_probabilities(conv, images, class_labels)
    assert with_autograd.requires_grad
    with torch.no_grad():
        in_place = unary_probabilities(conv, images, class_labels)
        unmasked = unary_probabilities(conv, images)
    assert torch.equal(in_place, with_autograd.detach())
    assert torch.equal(unmasked, conv(images).detach().softmax(dim=1))
    assert bool((in_place[0, 1] == 0).all()) and bool((in_place[2, 1:4] == 0).all())
    channels_last = conv.to(memory_format=torch.channels_last)
    with torch.no_grad():  # its logits are channels-last: normalised out of place
        from_channels_last = unary_probabilities(channels_last, images.contiguous(memory_format=torch.channels_last),
                                                 class_labels)
    torch.testing.assert_close(from_channels_last, in_place, rtol=1e-5, atol=1e-6)


def test_refined_map_loss_is_the_nll_of_the_renormalised_map_at_the_labelled_pixels():
    generator = torch.Generator().manual_seed(0)
    scores = (torch.rand(2, 4, 5, 6, generator=generator, dtype=torch.float64) + 1e-7).requires_grad_()
    target = torch.randint(0, 4, (2, 5, 6), generator=generator)
    target[0, :2] = IGNORE_INDEX
    scores.data[1, 2, 0, 0] = 1e-9  # a labelled pixel whose probability is under eps: clamped
    target[1, 0, 0] = 2
    whole_map = torch.nn.functional.nll_loss(
        (scores / scores.sum(dim=1, keepdim=True)).clamp_min(1e-6).log(), target, ignore_index=IGNORE_INDEX
    )
    loss = refined_map_loss(scores, target)
    expected_grad, = torch.autograd.grad(whole_map, scores)
    grad, = torch.autograd.grad(loss, scores)
    torch.testing.assert_close(loss, whole_map, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-14)


def test_refined_map_loss_floors_the_scores_as_the_whole_map_would():
    generator = torch.Generator().manual_seed(1)
    floor = 0.05
    # Scores of a merged propagation: some under the floor, some negative (direct gates).
    scores = (torch.rand(2, 4, 5, 6, generator=generator, dtype=torch.float64) * 0.6 - 0.1).requires_grad_()
    target = torch.randint(0, 4, (2, 5, 6), generator=generator)
    target[1, :, :3] = IGNORE_INDEX
    labelled = target != IGNORE_INDEX
    chosen = scores.detach().gather(1, target.clamp_max(3).unsqueeze(1)).squeeze(1)
    assert bool((chosen[labelled] <= floor).any()) and bool((chosen[labelled] > floor).any())
    floored = torch.where(scores > floor, scores, floor)
    whole_map = torch.nn.functional.nll_loss(
        (floored / floored.sum(dim=1, keepdim=True)).clamp_min(1e-6).log(), target, ignore_index=IGNORE_INDEX
    )
    loss = refined_map_loss(scores, target, floor=floor)
    expected_grad, = torch.autograd.grad(whole_map, scores)
    grad, = torch.autograd.grad(loss, scores)
    torch.testing.assert_close(loss, whole_map, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-14)
    assert bool((grad[scores <= floor] == 0).all())


def test_poly_schedule_is_equation_10():
    assert poly_learning_rate(0.01, 0, 100, 0.9) == 0.01
    assert poly_learning_rate(0.01, 50, 100, 0.9) == pytest.approx(0.01 * 0.5**0.9)
    assert poly_learning_rate(0.01, 100, 100, 0.9) == 0


def test_cli_options_file_and_overrides(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"unary": {"lr": 0.5}, "loop": {"mining": False}}))
    arguments = build_parser().parse_args(
        ["train", "--config", str(path), "--unary.iterations", "7", "--no-loop.smoothness", "--data.root", "/d"]
    )
    config = config_from_arguments(arguments)
    assert config.unary.lr == 0.5 and config.unary.iterations == 7
    assert config.loop.mining is False and config.loop.smoothness is False
    assert config.data.root == "/d"
    assert config.pairwise.lr == Config().pairwise.lr  # untouched settings keep their defaults


def test_cli_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = capsys.readouterr().out
    for name in ("--loop.mining", "--mining.confidence", "--unary.lr", "--run.resume"):
        assert name in text
    assert "(default: 0.7)" in text


def test_unknown_setting_in_config_file_is_named(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"unary": {"learning_rate": 1}}))
    with pytest.raises(ValueError, match="unary.learning_rate"):
        load_config(str(path))
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_config(str(tmp_path / "missing.json"))


def test_checkpoint_atomic_round_trip_and_corruption(tmp_path):
    state = {"step": 1, "labels": torch.arange(6, dtype=torch.uint8), "rows": [{"a": 0.5, "b": None}]}
    save_checkpoint(step_path(str(tmp_path), 1), state)
    loaded = load_checkpoint(step_path(str(tmp_path), 1))
    assert torch.equal(loaded["labels"], state["labels"]) and loaded["rows"] == state["rows"]
    assert [name for name in os.listdir(tmp_path)] == ["step_1.pt"]  # no temporary left behind
    # A newer, truncated step is reported and skipped in favour of the last good one.
    good = open(step_path(str(tmp_path), 1), "rb").read()
    with open(step_path(str(tmp_path), 2), "wb") as handle:
        handle.write(good[: len(good) // 2])
    with pytest.raises(CorruptCheckpointError, match="step_2.pt"):
        load_checkpoint(step_path(str(tmp_path), 2))
    messages = []
    assert latest_checkpoint(str(tmp_path), messages.append)["step"] == 1
    assert "step_2.pt" in messages[0]


def test_table_format_shows_percentages_and_gaps():
    rows = [table_row(0, "seeds", {"miou": 0.462, "precision": 0.622, "coverage": 0.5})]
    rows.append(table_row(1, "pairwise", {"miou": 0.552, "precision": 0.731, "coverage": 1.0}, val_miou=0.513, energy=0.061))
    text = format_table(rows)
    assert "46.2" in text and "62.2" in text and "51.3" in text and "0.061" in text
    assert text.splitlines()[2].rstrip().endswith("-")


def test_ial_deploy_forwards_every_argument_to_the_runner(capsys):
    from ial_ext.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["deploy", "--help"])
    assert exit_info.value.code == 0
    assert "--no-spinning" in capsys.readouterr().out


def test_balanced_class_weights_are_median_frequency():
    from ial_ext.train.losses import balanced_class_weights

    labels = torch.tensor([[0] * 6 + [1] * 3 + [2] * 1 + [IGNORE_INDEX] * 5])
    weights = balanced_class_weights(labels, 4)
    # frequencies 0.6, 0.3, 0.1 (255 ignored); median 0.3; class 3 has no pixels.
    torch.testing.assert_close(weights, torch.tensor([0.5, 1.0, 3.0, 1.0]))
    torch.testing.assert_close(balanced_class_weights(labels, 4, power=0.5), torch.tensor([0.5, 1.0, 3.0, 1.0]) ** 0.5)
    assert torch.equal(balanced_class_weights(torch.full((1, 3), IGNORE_INDEX), 2), torch.ones(2))


def test_energy_of_shared_affinity_maps_is_the_per_class_energy_with_the_maps_repeated():
    torch.manual_seed(1)
    probabilities = torch.rand(2, 3, 5, 6, dtype=torch.float64).softmax(1)
    shared = torch.randn(2, 12, 5, 6, dtype=torch.float64)
    # (B, 12, H, W) -> (B, 12C, H, W): each of the 12 maps once per class, in [a | b | c] x C order.
    per_class = shared.view(2, 12, 1, 5, 6).expand(2, 12, 3, 5, 6).reshape(2, 36, 5, 6)
    torch.testing.assert_close(affinity_energy(probabilities, shared), affinity_energy(probabilities, per_class))
    with pytest.raises(ValueError, match="shared by the classes"):
        affinity_energy(probabilities, torch.randn(2, 24, 5, 6, dtype=torch.float64))


def test_shuffled_batches_resume_anywhere_and_share_nothing_across_processes():
    from ial_ext.train.sampling import ShuffledBatches

    def take(sampler, count):
        batches = iter(sampler)
        return [next(batches) for _ in range(count)]

    whole = take(ShuffledBatches(10, 3, seed=7), 9)  # 3 batches per epoch, 3 epochs
    assert take(ShuffledBatches(10, 3, seed=7, start=4), 5) == whole[4:]
    epoch = [position for batch in whole[:3] for position, _ in batch]
    assert len(set(epoch)) == 9  # one epoch draws without replacement
    assert whole[:3] != whole[3:6]  # each epoch has its own order
    flips = [flip for batch in whole for _, flip in batch]
    assert 0 < sum(flips) < len(flips)
    shares = [take(ShuffledBatches(10, 2, seed=7, rank=rank, world_size=2), 2) for rank in (0, 1)]
    drawn = [[position for batch in share for position, _ in batch] for share in shares]
    assert not set(drawn[0]) & set(drawn[1])


def test_fit_resumed_from_a_checkpoint_inside_the_phase_ends_with_the_same_weights(tmp_path):
    """fit() killed after 10 of 30 iterations and resumed from its checkpoint: weights,
    momentum, schedule position, RNG (the unary network's dropout) and data order (shuffled,
    flipped) all carry over, so the network is the uninterrupted one, bit for bit."""

    from ial_ext.data import SyntheticDataset
    from ial_ext.models import UnaryNetwork
    from ial_ext.train.config import OptimConfig
    from ial_ext.train.fit import fit
    from ial_ext.train.label_store import LabelStore
    from ial_ext.train.runtime import Runtime
    from ial_ext.train.views import TrainingView

    dataset = SyntheticDataset("train", num_images=6, image_size=32, num_object_classes=2)
    store = LabelStore(str(tmp_path / "labels"))
    store.prepare("truth")
    for index in range(len(dataset)):
        store.write(index, dataset[index]["mask"].numpy().astype("uint8"))
    optim = OptimConfig(iterations=30, batch_size=2, lr=0.05)

    def train(checkpoints):
        return fit(
            Runtime(device=torch.device("cpu"), progress=False, seed=3), ("unary", 1),
            lambda: UnaryNetwork(dataset.num_classes, backbone="small"), TrainingView(dataset, store), optim,
            lambda model, batch: segmentation_loss(model(batch["image"]), batch["target"]), "unary",
            checkpoints=checkpoints,
        )

    recorder = FirstCheckpointRecorder()
    uninterrupted = train(recorder)
    assert recorder.saved["optimizer"]["iteration"] == 10
    torch.manual_seed(12345)  # whatever the process did before, the resumed phase restores its RNG
    resumed = train(FirstCheckpointRecorder(recorder.saved))
    for name, value in uninterrupted.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
