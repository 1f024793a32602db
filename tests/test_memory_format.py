"""The convolution stacks run channels-last without autograd on the CPU, and give back NCHW maps
of the same values (ial_ext.models.memory_format)."""
import pytest
import torch

from ial_ext.models import CAMNetwork, PairwiseNetwork, RegionConfidenceNetwork, UnaryNetwork
from ial_ext.models.memory_format import convolution_input


def test_convolution_input_is_channels_last_only_without_autograd():
    images = torch.rand(2, 3, 9, 11)
    with torch.no_grad():
        converted = convolution_input(images)
    assert converted.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(converted, images)
    assert convolution_input(images) is images  # autograd on: training keeps NCHW
    single = images[0]
    with torch.no_grad():
        assert convolution_input(single) is single  # not a (B, C, H, W) batch


@pytest.mark.parametrize("build, run", [
    (lambda: UnaryNetwork(5), lambda net, x: net.coarse_logits(x)),
    (lambda: CAMNetwork(5), lambda net, x: net.cams(x)),
    (lambda: PairwiseNetwork(5), lambda net, x: net.guidance(x)),
    (lambda: RegionConfidenceNetwork(5), lambda net, x: net(x, torch.zeros(2, 5, 6, dtype=torch.long), 1)),
], ids=["unary", "cam", "pairwise", "region"])
def test_networks_give_nchw_maps_of_the_training_layouts_values(build, run):
    torch.manual_seed(0)
    network = build().eval()
    images = torch.rand(2, 3, 37, 45)
    with torch.no_grad():
        inference = run(network, images)
    training_layout = run(network, images).detach()  # autograd on: NCHW all the way
    assert inference.is_contiguous()
    torch.testing.assert_close(inference, training_layout, rtol=1e-4, atol=1e-5)
