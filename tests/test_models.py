"""ial_ext.models: backbones, weights loading, the four networks and their specs."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from ial_ext.models import (
    BACKBONE_NAMES,
    CAMNetwork,
    PairwiseNetwork,
    RegionConfidenceNetwork,
    UnaryNetwork,
    build_backbone,
    build_model,
)
from ial_ext.models.pointwise import PointwiseConv2d, pointwise_heads
from ial_ext.nn import normalize_guidance


NUM_CLASSES = 4
ODD_SIZE = (37, 53)


def feature_size(size, stride):
    return tuple(math.ceil(s / stride) for s in size)


# ---------------------------------------------------------------- backbones

@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_backbone_output_stride_8_shapes(name):
    backbone = build_backbone(name).eval()
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 19, 26))
    assert backbone.output_stride == 8
    assert out.shape == (1, backbone.out_channels, 3, 4)
    expected_channels = {"small": 128, "small_local": 128, "vgg16": 1024, "resnet18": 512, "resnet34": 512}
    assert backbone.out_channels == expected_channels.get(name, 2048)


@pytest.mark.parametrize("name", ["small", "vgg16", "resnet18", "resnet50"])
def test_backbone_output_stride_16_shapes(name):
    backbone = build_backbone(name, output_stride=16).eval()
    with torch.no_grad():
        out = backbone(torch.randn(2, 3, *ODD_SIZE))
    assert backbone.output_stride == 16
    assert out.shape == (2, backbone.out_channels, *feature_size(ODD_SIZE, 16))


def test_resnet_trades_strides_for_dilation():
    os8, os16 = build_backbone("resnet18"), build_backbone("resnet18", output_stride=16)
    assert os8.layer3[0].conv1.stride == (1, 1) and os8.layer3[1].conv1.dilation == (2, 2)
    assert os8.layer4[0].conv1.stride == (1, 1) and os8.layer4[1].conv2.dilation == (4, 4)
    assert os16.layer3[0].conv1.stride == (2, 2) and os16.layer3[1].conv1.dilation == (1, 1)
    assert os16.layer4[0].conv1.stride == (1, 1) and os16.layer4[1].conv2.dilation == (2, 2)
    bottleneck = build_backbone("resnet50")
    assert bottleneck.layer4[2].conv2.dilation == (4, 4)


def test_resnet_parameter_names_follow_torchvision():
    keys = set(build_backbone("resnet50").state_dict())
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.conv3.weight", "layer1.0.downsample.0.weight",
                "layer1.0.downsample.1.bias", "layer3.5.bn2.weight", "layer4.2.bn3.running_mean"):
        assert key in keys
    assert not any(k.startswith("fc.") for k in keys)
    basic = set(build_backbone("resnet18").state_dict())
    assert "layer2.0.downsample.0.weight" in basic and "layer1.0.downsample.0.weight" not in basic


def test_backbone_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown backbone 'vgg19'"):
        build_backbone("vgg19")
    with pytest.raises(ValueError, match="VGG16 output_stride must be 8 or 16"):
        build_backbone("vgg16", output_stride=4)
    with pytest.raises(ValueError, match="not to 'vgg16'"):
        build_backbone("vgg16", freeze_batchnorm=True)
    with pytest.raises(ValueError, match="output_stride must be 8 or 16"):
        build_backbone("resnet18", output_stride=32)
    with pytest.raises(ValueError, match="output_stride must be 8 or 16"):
        build_backbone("resnet18", output_stride=4)
    with pytest.raises(ValueError, match="output_stride must be 4, 8 or 16"):
        build_backbone("small", output_stride=2)


def test_vgg16_is_deeplab_largefov():
    os8, os16 = build_backbone("vgg16"), build_backbone("vgg16", output_stride=16)
    convs = [i for i, m in enumerate(os8.features) if isinstance(m, torch.nn.Conv2d)]
    assert convs == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]  # torchvision's indices
    assert [os8.features[i].dilation for i in (21, 24, 28)] == [(1, 1), (2, 2), (2, 2)]
    assert [os16.features[i].dilation for i in (21, 24, 28)] == [(1, 1), (1, 1), (1, 1)]
    assert os8.fc6.kernel_size == (3, 3) and os8.fc6.dilation == (12, 12) and os16.fc6.dilation == (6, 6)
    assert os8.fc7.weight.shape == (1024, 1024, 1, 1)
    head = UnaryNetwork(NUM_CLASSES, backbone="vgg16")
    assert head.spec()["kwargs"]["head"] == "largefov"
    assert head.classifier.in_channels == 1024 and isinstance(head.aspp, torch.nn.Identity)
    assert head(torch.randn(1, 3, *ODD_SIZE)).shape == (1, NUM_CLASSES, *ODD_SIZE)


def torchvision_vgg16_state_dict():
    """A state_dict with the names and shapes of torchvision's vgg16 (features.*, classifier.*)."""
    state, in_channels, index = {}, 3, 0
    for item in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if item == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = torch.randn(item, in_channels, 3, 3) * 0.05
        state[f"features.{index}.bias"] = torch.randn(item) * 0.05
        in_channels, index = item, index + 2
    for name, shape in (("classifier.0", (4096, 512 * 7 * 7)), ("classifier.3", (4096, 4096)),
                        ("classifier.6", (1000, 4096))):
        state[f"{name}.weight"] = torch.randn(shape) * 0.01
        state[f"{name}.bias"] = torch.randn(shape[0]) * 0.01
    return state


@pytest.mark.slow
def test_vgg16_loads_torchvision_imagenet_weights(tmp_path):
    state = torchvision_vgg16_state_dict()
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    backbone = build_backbone("vgg16", weights=path)
    loaded = backbone.state_dict()
    for key in (k for k in state if k.startswith("features.")):
        torch.testing.assert_close(loaded[key], state[key], rtol=0, atol=0)
    # DeepLab's decimation: every 4th filter, fc6's 7x7 kernel at rows and columns 0, 3, 6.
    fc6 = state["classifier.0.weight"].view(4096, 512, 7, 7)
    torch.testing.assert_close(loaded["fc6.weight"], fc6[::4][:, :, [0, 3, 6]][:, :, :, [0, 3, 6]], rtol=0, atol=0)
    torch.testing.assert_close(loaded["fc6.bias"], state["classifier.0.bias"][::4], rtol=0, atol=0)
    torch.testing.assert_close(loaded["fc7.weight"][:, :, 0, 0], state["classifier.3.weight"][::4, ::4],
                               rtol=0, atol=0)
    # The network's own state (with fc6/fc7) loads back too, e.g. as model.weights of a new run.
    own = tmp_path / "own.pth"
    torch.save(loaded, own)
    torch.testing.assert_close(build_backbone("vgg16", weights=own).state_dict()["fc6.weight"], loaded["fc6.weight"])


def test_vgg16_weights_of_another_layout_are_rejected(tmp_path):
    state = {k: v for k, v in torchvision_vgg16_state_dict().items() if not k.startswith("classifier.0")}
    state["classifier.3.weight"] = torch.zeros(10, 10)
    state["classifier.3.bias"] = torch.zeros(10)
    path = tmp_path / "vgg16_no_fc6.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"missing keys: fc6.bias, fc6.weight.*shape mismatches: fc7.bias"):
        build_backbone("vgg16", weights=path)


def test_small_backbone_eval_mode_is_independent_of_the_batch():
    backbone = build_backbone("small")
    images = torch.randn(4, 3, 40, 40)
    for _ in range(3):  # a few training batches move the running statistics
        backbone.train()(images * 2 + 1)
    backbone.eval()
    with torch.no_grad():
        together, alone = backbone(images), backbone(images[1:2])
    torch.testing.assert_close(together[1:2], alone, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="not to 'small'"):
        build_backbone("small", freeze_batchnorm=True)


# ---------------------------------------------------------------- weights

def torchvision_style_file(tmp_path, name="resnet18", edit=None):
    """A state_dict as torchvision publishes it: with fc, without num_batches_tracked."""
    source = build_backbone(name)
    with torch.no_grad():
        for module in source.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    state = {k: v.clone() for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"] = torch.randn(1000, source.out_channels)
    state["fc.bias"] = torch.randn(1000)
    if edit is not None:
        edit(state)
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    return source, path


def test_weights_round_trip(tmp_path):
    source, path = torchvision_style_file(tmp_path)
    loaded = build_backbone("resnet18", weights=path)
    source_state = source.state_dict()
    for key, value in loaded.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            torch.testing.assert_close(value, source_state[key], rtol=0, atol=0)
    images = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(images), source.eval()(images))


def test_loaded_resnet_keeps_imagenet_batchnorm_frozen(tmp_path):
    _, path = torchvision_style_file(tmp_path)
    backbone = build_backbone("resnet18", weights=path).train()
    batchnorms = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(not m.training for m in batchnorms)
    assert all(not p.requires_grad for m in batchnorms for p in m.parameters())
    assert backbone.conv1.weight.requires_grad and backbone.conv1.training
    before = backbone.bn1.running_mean.clone()
    backbone(torch.randn(2, 3, 24, 24))
    torch.testing.assert_close(backbone.bn1.running_mean, before, rtol=0, atol=0)
    assert all(m.training for m in build_backbone("resnet18").modules())  # no weights: plain BatchNorm


def test_networks_load_backbone_weights(tmp_path):
    source, path = torchvision_style_file(tmp_path)
    network = UnaryNetwork(NUM_CLASSES, backbone="resnet18", weights=path)
    torch.testing.assert_close(network.backbone.layer4[1].conv2.weight, source.layer4[1].conv2.weight)


def test_weights_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "resnet18.pth"
    with pytest.raises(FileNotFoundError, match="resnet18.pth"):
        build_backbone("resnet18", weights=missing)


def test_weights_file_that_is_not_a_state_dict(tmp_path):
    listing = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listing)
    with pytest.raises(ValueError, match="does not hold a state_dict"):
        build_backbone("resnet18", weights=listing)
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a readable PyTorch state_dict"):
        build_backbone("resnet18", weights=text)


def test_weights_with_renamed_key_name_both_keys(tmp_path):
    def rename(state):
        state["layer2.0.conv_one.weight"] = state.pop("layer2.0.conv1.weight")

    _, path = torchvision_style_file(tmp_path, edit=rename)
    with pytest.raises(ValueError) as error:
        build_backbone("resnet18", weights=path)
    message = str(error.value)
    assert "missing keys: layer2.0.conv1.weight" in message
    assert "unexpected keys: layer2.0.conv_one.weight" in message


def test_weights_with_wrong_shape_name_key_and_shapes(tmp_path):
    def widen(state):
        state["conv1.weight"] = torch.zeros(64, 3, 3, 3)

    _, path = torchvision_style_file(tmp_path, edit=widen)
    with pytest.raises(ValueError, match=r"conv1.weight: file \(64, 3, 3, 3\) vs model \(64, 3, 7, 7\)"):
        build_backbone("resnet18", weights=path)


def test_weights_of_another_depth_are_rejected(tmp_path):
    _, path = torchvision_style_file(tmp_path, name="resnet18")
    with pytest.raises(ValueError, match="missing keys: .*layer1.2"):
        build_backbone("resnet34", weights=path)


# ---------------------------------------------------------------- CAM

def test_cam_network_logits_are_pooled_class_maps():
    network = CAMNetwork(NUM_CLASSES)
    images = torch.randn(2, 3, *ODD_SIZE)
    logits = network(images)
    assert logits.shape == (2, NUM_CLASSES - 1)
    assert network.classifier.bias is None
    maps = network.class_maps(images)
    torch.testing.assert_close(logits, maps.mean(dim=(2, 3)))
    cams = network.cams(images)
    assert cams.shape == (2, NUM_CLASSES - 1, *feature_size(ODD_SIZE, 8))
    torch.testing.assert_close(cams, maps.clamp_min(0))


def test_networks_reject_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        CAMNetwork(1)
    with pytest.raises(ValueError, match="num_classes"):
        PairwiseNetwork(2.5)


# ---------------------------------------------------------------- unary

@pytest.mark.parametrize("output_stride", [8, 16])
def test_unary_logits_at_input_resolution(output_stride):
    network = UnaryNetwork(NUM_CLASSES, output_stride=output_stride)
    logits = network(torch.randn(2, 3, *ODD_SIZE))
    assert logits.shape == (2, NUM_CLASSES, *ODD_SIZE)
    logits.logsumexp(1).mean().backward()
    assert network.backbone.stem[0][0].weight.grad.abs().sum() > 0


def test_unary_aspp_rates_scale_with_backbone_and_stride():
    assert UnaryNetwork(NUM_CLASSES).spec()["kwargs"]["aspp_rates"] == [2, 4, 6]
    assert UnaryNetwork(NUM_CLASSES, output_stride=16).spec()["kwargs"]["aspp_rates"] == [1, 2, 3]
    resnet = UnaryNetwork(NUM_CLASSES, backbone="resnet18")
    assert resnet.spec()["kwargs"]["aspp_rates"] == [12, 24, 36]
    assert [b[0].dilation for b in resnet.aspp.branches[1:]] == [(12, 12), (24, 24), (36, 36)]


def test_unary_batch_of_one_trains():
    # ASPP's image-pooling branch is a 1x1 map: it must not need batch statistics.
    UnaryNetwork(NUM_CLASSES).train()(torch.randn(1, 3, 32, 32)).sum().backward()


# ---------------------------------------------------------------- pairwise

def smooth_unary(batch, size, num_classes=NUM_CLASSES):
    coarse = torch.randn(batch, num_classes, 6, 6) * 3
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False).softmax(1)


GATE_SETTINGS = [(mode, layout) for mode in ("similarity", "direct") for layout in ("shared", "per_class")]


@pytest.mark.parametrize("gate_layout, maps", [("shared", 12), ("per_class", 12 * NUM_CLASSES)])
def test_pairwise_guidance_layout_at_odd_size(gate_layout, maps):
    network = PairwiseNetwork(NUM_CLASSES, width=8, gate_layout=gate_layout)
    images = torch.randn(2, 3, *ODD_SIZE)
    assert network.guidance(images).shape == (2, maps, *ODD_SIZE)
    assert network(images, smooth_unary(2, ODD_SIZE)).shape == (2, NUM_CLASSES, *ODD_SIZE)


def test_pairwise_default_is_the_papers_12_shared_affinity_maps():
    network = PairwiseNetwork(NUM_CLASSES)
    assert network.gate_layout == "shared" and network.spec()["kwargs"]["gate_layout"] == "shared"
    assert network.gates.out_channels == 12
    with pytest.raises(ValueError, match="gate_layout must be one of"):
        PairwiseNetwork(NUM_CLASSES, gate_layout="per_pixel")


def test_shared_gates_equal_per_class_gates_that_agree_across_classes():
    shared = PairwiseNetwork(NUM_CLASSES, width=8).eval()
    per_class = PairwiseNetwork(NUM_CLASSES, width=8, gate_layout="per_class").eval()
    state = shared.state_dict()
    # Repeat each shared map's conv filter for every class: the per-class network then
    # computes the same gates for all classes.
    for key in ("gates.weight", "gates.bias"):
        value = state[key].view(4, 3, 1, *state[key].shape[1:])
        state[key] = value.expand(4, 3, NUM_CLASSES, *value.shape[3:]).reshape(-1, *state[key].shape[1:])
    per_class.load_state_dict(state)
    images, unary = torch.randn(2, 3, *ODD_SIZE), smooth_unary(2, ODD_SIZE)
    with torch.no_grad():
        torch.testing.assert_close(per_class(images, unary), shared(images, unary), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gate_mode, gate_layout", GATE_SETTINGS)
def test_pairwise_at_init_keeps_the_unary_map(gate_mode, gate_layout):
    network = PairwiseNetwork(NUM_CLASSES, gate_mode=gate_mode, gate_layout=gate_layout).eval()
    unary = smooth_unary(2, ODD_SIZE)
    with torch.no_grad():
        refined = network(torch.randn(2, 3, *ODD_SIZE), unary)
    agreement = (refined.argmax(1) == unary.argmax(1)).float().mean()
    assert agreement > 0.95
    assert (refined - unary).abs().mean() < 0.02


@pytest.mark.parametrize("gate_layout, maps", [("shared", 1), ("per_class", NUM_CLASSES)])
def test_similarity_gates_stop_at_image_edges(gate_layout, maps):
    network = PairwiseNetwork(NUM_CLASSES, width=8, gate_layout=gate_layout).eval()
    images = torch.zeros(1, 3, 9, 10)
    images[..., 5:] = 2.0  # a vertical edge between columns 4 and 5, two standard deviations high
    with torch.no_grad():
        gates = network.guidance(images).view(4, 3, maps, 9, 10)  # direction, [a|b|c], map
    straight_left_to_right = gates[0, 1]  # links (i, j) to (i, j - 1)
    assert (straight_left_to_right[..., 5] < 1e-4).all()  # across the edge
    flat = torch.cat([straight_left_to_right[..., 1:5], straight_left_to_right[..., 6:]], dim=-1)
    assert (flat > 0.3).all() and (flat <= 1 / 3).all()  # inside a region: strong propagation


@pytest.mark.parametrize("gate_mode", ["similarity", "direct"])
def test_normalized_guidance_is_normalize_guidance(gate_mode):
    network = PairwiseNetwork(NUM_CLASSES, width=8, gate_mode=gate_mode)
    with torch.no_grad():  # saturated modulations and strong direct gates
        network.gates.weight.normal_(std=10.0)
    guidance = network.guidance(torch.randn(2, 3, *ODD_SIZE))
    normalized = network.normalized_guidance(guidance)
    torch.testing.assert_close(normalized, normalize_guidance(guidance), rtol=1e-6, atol=0)
    if gate_mode == "direct":
        assert not torch.equal(normalized, guidance)


def test_pointwise_heads_are_the_convolutions_they_replace():
    # The guidance CNN's 1x1 heads as batched products, their input gradient in one buffer.
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64, generator=generator, requires_grad=True)
    heads = [PointwiseConv2d(6, 4).double(), PointwiseConv2d(6, 3).double()]
    outputs = pointwise_heads(x, *heads)
    expected = [F.conv2d(x, head.weight, head.bias) for head in heads]
    weights = [torch.randn_like(out) for out in expected]
    parameters = [x] + [p for head in heads for p in head.parameters()]
    got = torch.autograd.grad(sum((o * w).sum() for o, w in zip(outputs, weights)), parameters)
    want = torch.autograd.grad(sum((o * w).sum() for o, w in zip(expected, weights)), parameters)
    for out, reference in zip([*outputs, heads[0](x)], expected + expected[:1]):
        torch.testing.assert_close(out, reference, rtol=1e-14, atol=1e-14)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-14)
    assert torch.autograd.gradcheck(lambda x, *p: torch.cat(pointwise_heads(x, *heads), 1), (x,))


@pytest.mark.parametrize("gate_mode, gate_layout", GATE_SETTINGS)
def test_pairwise_output_is_a_probability_map(gate_mode, gate_layout):
    network = PairwiseNetwork(NUM_CLASSES, width=8, gate_mode=gate_mode, gate_layout=gate_layout)
    with torch.no_grad():  # strong, signed gates, far from the mild initialisation
        network.gates.weight.normal_(std=1.0)
    refined = network(torch.randn(2, 3, *ODD_SIZE), smooth_unary(2, ODD_SIZE))
    assert (refined > 0).all()
    torch.testing.assert_close(refined.sum(1), torch.ones(2, *ODD_SIZE))


@pytest.mark.parametrize("gate_mode, gate_layout", GATE_SETTINGS)
def test_pairwise_preserves_constant_maps(gate_mode, gate_layout):
    network = PairwiseNetwork(NUM_CLASSES, width=8, gate_mode=gate_mode, gate_layout=gate_layout)
    with torch.no_grad():
        network.gates.weight.normal_(std=1.0)
    constant = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(1, NUM_CLASSES, 1, 1).expand(2, -1, *ODD_SIZE)
    refined = network(torch.randn(2, 3, *ODD_SIZE), constant.contiguous())
    torch.testing.assert_close(refined, constant, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gate_layout", ["shared", "per_class"])
def test_pairwise_gradients_reach_the_guidance_cnn(gate_layout):
    network = PairwiseNetwork(NUM_CLASSES, width=8, gate_layout=gate_layout)
    unary = smooth_unary(2, ODD_SIZE)
    target = torch.randint(0, NUM_CLASSES, (2, *ODD_SIZE))
    refined = network(torch.randn(2, 3, *ODD_SIZE), unary)
    F.nll_loss(refined.log(), target).backward()
    first_conv = network.features.full_res[0][0].weight
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
    assert network.gates.weight.grad.abs().sum() > 0 and network.gates.bias.grad.abs().sum() > 0
    assert network.log_strength.grad.shape == (4, NUM_CLASSES) and (network.log_strength.grad != 0).all()


def test_pairwise_strength_is_a_4_by_c_parameter_starting_at_one():
    network = PairwiseNetwork(NUM_CLASSES, width=8)
    assert network.log_strength.shape == (4, NUM_CLASSES) and not network.log_strength.any()
    assert PairwiseNetwork(NUM_CLASSES, width=8, strength=False).log_strength is None
    with pytest.raises(ValueError, match="strength must be True or False"):
        PairwiseNetwork(NUM_CLASSES, strength="yes")


def test_pairwise_is_independent_of_the_batch():
    network = PairwiseNetwork(NUM_CLASSES, width=8)
    images, unary = torch.randn(3, 3, 20, 17), smooth_unary(3, (20, 17))
    with torch.no_grad():
        torch.testing.assert_close(network(images, unary)[2:], network(images[2:], unary[2:]),
                                   rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- region confidence

def test_region_network_scores_every_segment():
    network = RegionConfidenceNetwork(NUM_CLASSES).eval()
    h, w = feature_size(ODD_SIZE, network.output_stride)
    segments = torch.arange(h * w).view(1, h, w).expand(2, -1, -1) % 5
    segments = segments.clone()
    segments[:, 0, :] = -1  # ignored pixels
    num_segments = 7  # ids 5 and 6 have no pixels
    with torch.no_grad():
        logits = network(torch.randn(2, 3, *ODD_SIZE), segments, num_segments)
        empty = network.classifier(torch.zeros(network.backbone.out_channels))
    assert logits.shape == (2, num_segments, NUM_CLASSES)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits[:, 5:], empty.expand(2, 2, -1))
    assert not torch.allclose(logits[:, 0], logits[:, 1])


def test_region_network_trains_through_the_pooling():
    network = RegionConfidenceNetwork(NUM_CLASSES)
    segments = torch.randint(-1, 6, (2, 5, 7))
    logits = network(torch.randn(2, 3, *ODD_SIZE), segments, 6)
    F.cross_entropy(logits.flatten(0, 1), torch.randint(0, NUM_CLASSES, (12,))).backward()
    assert network.backbone.stem[0][0].weight.grad.abs().sum() > 0


def test_region_network_rejects_bad_segments():
    network = RegionConfidenceNetwork(NUM_CLASSES)
    images = torch.randn(1, 3, *ODD_SIZE)
    with pytest.raises(ValueError, match=r"segments must have shape .* \(1, 5, 7\)"):
        network(images, torch.zeros(1, 37, 53, dtype=torch.long), 1)
    with pytest.raises(RuntimeError):
        network(images, torch.full((1, 5, 7), 3, dtype=torch.long), 3)


def test_region_network_output_stride_16():
    network = RegionConfidenceNetwork(NUM_CLASSES, output_stride=16)
    assert network.output_stride == 16
    segments = torch.zeros(1, *feature_size(ODD_SIZE, 16), dtype=torch.long)
    assert network(torch.randn(1, 3, *ODD_SIZE), segments, 2).shape == (1, 2, NUM_CLASSES)


# ---------------------------------------------------------------- specs and the factory

def all_networks():
    return [
        CAMNetwork(NUM_CLASSES),
        UnaryNetwork(NUM_CLASSES, output_stride=16, aspp_channels=16, aspp_rates=(1, 3)),
        UnaryNetwork(NUM_CLASSES, backbone="vgg16", output_stride=16),
        PairwiseNetwork(NUM_CLASSES, width=8),
        PairwiseNetwork(NUM_CLASSES, width=8, gate_mode="direct", gate_layout="per_class"),
        RegionConfidenceNetwork(NUM_CLASSES, hidden=32, dropout=0.0),
    ]


@pytest.mark.parametrize("index", range(6))
def test_build_model_rebuilds_from_spec(index):
    network = all_networks()[index].eval()
    spec = json.loads(json.dumps(network.spec()))  # a plain, serialisable dict
    rebuilt = build_model(spec)
    assert type(rebuilt) is type(network) and rebuilt.spec() == spec
    rebuilt.load_state_dict(network.state_dict(), strict=True)
    rebuilt.eval()
    images = torch.randn(1, 3, 24, 24)
    with torch.no_grad():
        if isinstance(network, PairwiseNetwork):
            args = (images, smooth_unary(1, (24, 24)))
        elif isinstance(network, RegionConfidenceNetwork):
            args = (images, torch.randint(0, 4, (1, 3, 3)), 4)
        else:
            args = (images,)
        torch.testing.assert_close(rebuilt(*args), network(*args))


def test_spec_never_needs_the_weights_file(tmp_path):
    _, path = torchvision_style_file(tmp_path)
    spec = CAMNetwork(NUM_CLASSES, backbone="resnet18", weights=path).spec()
    assert spec["kwargs"]["weights"] is None and spec["kwargs"]["freeze_batchnorm"] is True
    path.unlink()
    rebuilt = build_model(spec)
    assert all(not m.training for m in rebuilt.train().modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_build_model_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown network class 'Segmenter'"):
        build_model({"class": "Segmenter", "kwargs": {}})
    with pytest.raises(ValueError, match="cannot build UnaryNetwork"):
        build_model({"class": "UnaryNetwork", "kwargs": {"num_classes": 3, "depth": 5}})
    with pytest.raises(ValueError, match="a model spec is a dict"):
        build_model(["UnaryNetwork"])


def test_construction_is_deterministic_under_a_seed():
    torch.manual_seed(3)
    first = UnaryNetwork(NUM_CLASSES).state_dict()
    torch.manual_seed(3)
    second = UnaryNetwork(NUM_CLASSES).state_dict()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0)


# ---------------------------------------------------------------- multi-scale inference

def test_multiscale_unary_single_scale_is_the_log_softmax():
    from ial_ext.models import MultiScaleUnary

    unary = UnaryNetwork(NUM_CLASSES).eval()
    images = torch.randn(2, 3, *ODD_SIZE)
    with torch.no_grad():
        torch.testing.assert_close(MultiScaleUnary(unary, (1.0,), flip=False)(images), unary(images).log_softmax(1))


def test_multiscale_unary_averages_probabilities_over_scales_and_mirror():
    from ial_ext.models import MultiScaleUnary

    unary = UnaryNetwork(NUM_CLASSES).eval()
    images = torch.randn(1, 3, *ODD_SIZE)
    with torch.no_grad():
        averaged = MultiScaleUnary(unary, (1.0, 1.5), flip=True)(images).exp()
        upscaled = F.interpolate(images, scale_factor=1.5, mode="bilinear", align_corners=False)
        views = [
            unary(images).softmax(1),
            unary(images.flip(-1)).flip(-1).softmax(1),
            F.interpolate(unary(upscaled), size=ODD_SIZE, mode="bilinear", align_corners=False).softmax(1),
            F.interpolate(unary(upscaled.flip(-1)).flip(-1), size=ODD_SIZE, mode="bilinear",
                          align_corners=False).softmax(1),
        ]
    torch.testing.assert_close(averaged, sum(views) / 4)
    torch.testing.assert_close(averaged.sum(1), torch.ones(1, *ODD_SIZE))
    with pytest.raises(ValueError, match="scales"):
        MultiScaleUnary(unary, (0.0,))


def test_small_backbone_output_stride_4():
    backbone = build_backbone("small", output_stride=4)
    assert backbone(torch.randn(1, 3, *ODD_SIZE)).shape[-2:] == feature_size(ODD_SIZE, 4)


def test_a_checkpoint_spec_written_before_the_gate_layout_option_rebuilds_with_per_class_gates():
    from ial_ext.models import build_model

    old = PairwiseNetwork(NUM_CLASSES, width=8, gate_layout="per_class", strength=False)
    spec = old.spec()
    del spec["kwargs"]["gate_layout"], spec["kwargs"]["strength"]
    rebuilt = build_model(spec)
    assert rebuilt.gate_layout == "per_class" and rebuilt.log_strength is None
    rebuilt.load_state_dict(old.state_dict())  # strict: the same parameters


def test_a_checkpoint_spec_written_before_the_strength_option_rebuilds_without_strengths():
    from ial_ext.models import build_model

    old = PairwiseNetwork(NUM_CLASSES, width=8, strength=False)
    spec = old.spec()
    del spec["kwargs"]["strength"]
    rebuilt = build_model(spec)
    assert rebuilt.gate_layout == "shared" and rebuilt.log_strength is None
    rebuilt.load_state_dict(old.state_dict())
