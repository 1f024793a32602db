"""similarity_gates (the pairwise network's gates: sigmoid modulation x neighbour affinity) vs
its composite of torch ops (neighbour_affinities, sigmoid, product), at the pairwise
iteration's sizes: 12 shared maps, an embedding of the 3 colours and 8 learned channels.

Values that must move per pixel (the roofline numerator): the forward reads the 12 logits and
the E embedding channels and writes the 12 gates; the backward reads the incoming gradient,
the logits and the embedding and writes the gradients of both (12 + 12 + E + 12 + E).
"""
import pytest
import torch

from ial_ext.ops import similarity_gates
from ial_ext.ops.similarity_gates import similarity_gates_composite

from .conftest import calls_per_round, devices, repeated

SIZES = [(4, 321, 321), (8, 321, 321)]
LINKS = 12
EMBEDDING = 11
SCALE = 1 / 3
IMPLEMENTATIONS = {"ial_ext": similarity_gates, "composite": similarity_gates_composite}


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("size", SIZES, ids=["x".join(map(str, s)) for s in SIZES])
@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
def test_similarity_gates(benchmark, impl, mode, size, device):
    b, h, w = size
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(b, LINKS, h, w, generator=generator) * 2).to(device)
    embedding = (torch.randn(b, EMBEDDING, h, w, generator=generator) * 0.5).to(device)
    grad = torch.randn(b, LINKS, h, w, generator=generator).to(device)
    fn = IMPLEMENTATIONS[impl]
    if mode == "forward":
        def call():
            with torch.no_grad():
                fn(logits, embedding, SCALE)
    else:
        logits.requires_grad_()
        embedding.requires_grad_()

        def call():
            torch.autograd.grad(fn(logits, embedding, SCALE), (logits, embedding), grad)
    values = LINKS + EMBEDDING + LINKS
    if mode != "forward":
        values += 3 * LINKS + 2 * EMBEDDING
    calls = calls_per_round(device)
    benchmark.group = f"similarity_gates {mode} {'x'.join(map(str, size))} {device}"
    benchmark.extra_info.update(
        kind="similarity_gates", impl=impl, mode=mode, size=[b, LINKS, h, w], device=device,
        case=f"12 shared maps, E = {EMBEDDING}", bytes=int(values * b * h * w * logits.element_size()), calls=calls,
    )
    benchmark.pedantic(repeated(call, device, calls), rounds=5, warmup_rounds=1)
