"""upsampled_softmax (a UnaryNetwork's probabilities from its stride-8 logits) vs the composite of
torch ops (F.interpolate, masked_fill, softmax) and vs the trainer's previous path, which resized,
masked and normalised in place, at the sizes of a 321 px batch with VOC's 21 classes.

Values that must move per output pixel (the roofline numerator): the C probabilities written; the
logits read are 1/64 of that.
"""
import pytest
import torch
import torch.nn.functional as F

from ial_ext.ops import upsampled_softmax
from ial_ext.ops.upsampled_softmax import upsampled_softmax_composite

from .conftest import calls_per_round, devices, repeated

SIZES = [(4, 21, 321, 321), (8, 21, 321, 321)]
STRIDE = 8


def in_place(logits, size, present):
    """The trainer's path before the op: the resized logits masked and normalised in place."""
    resized = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
    resized.masked_fill_(~present[:, :, None, None], torch.finfo(resized.dtype).min)
    return torch.ops.aten._softmax.out(resized, 1, False, out=resized)


IMPLEMENTATIONS = {"ial_ext": upsampled_softmax, "composite": upsampled_softmax_composite, "in_place": in_place}


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("size", SIZES, ids=["x".join(map(str, s)) for s in SIZES])
@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
def test_upsampled_softmax(benchmark, impl, size, device):
    b, c, h, w = size
    generator = torch.Generator().manual_seed(0)
    coarse = (h + STRIDE - 1) // STRIDE, (w + STRIDE - 1) // STRIDE
    logits = (torch.randn(b, c, *coarse, generator=generator) * 3).to(device)
    present = (torch.rand(b, c, generator=generator) < 0.2).to(device)
    present[:, 0] = True  # the background
    fn = IMPLEMENTATIONS[impl]

    def call():
        with torch.no_grad():
            fn(logits, (h, w), present)

    calls = calls_per_round(device)
    benchmark.group = f"upsampled_softmax forward {'x'.join(map(str, size))} {device}"
    benchmark.extra_info.update(
        kind="upsampled_softmax", impl=impl, mode="forward", size=list(size), device=device,
        case=f"stride {STRIDE}, about 20% of the classes present", bytes=int(b * c * h * w * logits.element_size()),
        calls=calls,
    )
    benchmark.pedantic(repeated(call, device, calls), rounds=7, warmup_rounds=1)
