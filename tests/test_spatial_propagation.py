"""SpatialPropagation: gate normalisation, the four-direction max merge, torch.compile."""
import pytest
import torch

from ial_ext.nn import SpatialPropagation, normalize_gates
from ial_ext.ops import spn_scan_reference


def test_normalize_gates_bounds_and_keeps_small_gates():
    gates = torch.randn(2, 3 * 4, 5, 6) * 3
    gates[:, :, 0, 0] = 0  # all three gates zero: must stay 0, not NaN
    small = torch.full((1, 3, 2, 2), 0.1)
    out = normalize_gates(gates)
    assert torch.isfinite(out).all()
    assert (out.view(2, 3, 4, 5, 6).abs().sum(1) <= 1 + 1e-6).all()
    assert (out[:, :, 0, 0] == 0).all()
    torch.testing.assert_close(normalize_gates(small), small)


def reference_propagation(unary, guidance):
    outs = [
        spn_scan_reference(unary.double(), normalize_gates(g.double()), d)
        for d, g in enumerate(guidance.double().chunk(4, dim=1))
    ]
    return torch.stack(outs).amax(0)


def test_matches_reference_merge():
    unary = torch.rand(2, 3, 11, 9).softmax(1)
    guidance = torch.randn(2, 36, 11, 9)
    out = SpatialPropagation()(unary, guidance)
    torch.testing.assert_close(out.double(), reference_propagation(unary, guidance), rtol=1e-5, atol=1e-6)


def test_gradients_reach_unary_and_guidance():
    unary = torch.rand(1, 2, 6, 7, dtype=torch.float64).requires_grad_()
    guidance = torch.randn(1, 24, 6, 7, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda u, g: SpatialPropagation()(u, g), (unary, guidance))


def test_rejects_wrong_guidance_shape():
    with pytest.raises(ValueError, match="guidance must have shape"):
        SpatialPropagation()(torch.rand(1, 2, 4, 4), torch.rand(1, 6, 4, 4))
    with pytest.raises(ValueError, match="4-D"):
        SpatialPropagation()(torch.rand(2, 4, 4), torch.rand(1, 24, 4, 4))


def test_torch_compile_fullgraph_matches_eager():
    module = SpatialPropagation()

    def refine(unary, guidance):
        return module(unary.softmax(1), guidance * 2).square()

    unary = torch.randn(2, 3, 10, 12, requires_grad=True)
    guidance = torch.randn(2, 36, 10, 12, requires_grad=True)
    eager = refine(unary, guidance)
    compiled_fn = torch.compile(refine, fullgraph=True)
    compiled = compiled_fn(unary, guidance)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
    grads_eager = torch.autograd.grad(eager.sum(), (unary, guidance))
    grads_compiled = torch.autograd.grad(compiled.sum(), (unary, guidance))
    for c, e in zip(grads_compiled, grads_eager):
        torch.testing.assert_close(c, e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("guidance_channels", [12, 36], ids=["shared", "per-class"])
def test_fused_and_composite_paths_agree(guidance_channels):
    unary = torch.rand(2, 3, 11, 9, dtype=torch.float64).softmax(1)
    guidance = torch.randn(2, guidance_channels, 11, 9, dtype=torch.float64)
    grad = torch.randn_like(unary)
    results = []
    for fused in (True, False):
        u, g = unary.clone().requires_grad_(), guidance.clone().requires_grad_()
        out = SpatialPropagation(fused=fused)(u, g)
        results.append((out, *torch.autograd.grad(out, (u, g), grad)))
    for fused, composite in zip(*results):
        torch.testing.assert_close(fused, composite, rtol=0, atol=1e-10)
    torch.testing.assert_close(results[0][0], reference_propagation(unary, guidance), rtol=0, atol=1e-10)


def test_shared_guidance_gradcheck():
    unary = torch.rand(1, 3, 5, 6, dtype=torch.float64).requires_grad_()
    guidance = torch.randn(1, 12, 5, 6, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda u, g: SpatialPropagation()(u, g), (unary, guidance))


def test_export_traces_the_composite_path():
    """torch.export (what torch.onnx.export(dynamo=True) runs) sees spn_scan, which has an
    ONNX translation, not the fused op, which has none."""
    module = SpatialPropagation().eval()
    args = (torch.rand(1, 2, 8, 8), torch.randn(1, 12, 8, 8))
    graph = str(torch.export.export(module, args).graph)
    assert "ial.spn_scan" in graph and "spn_propagate" not in graph
    torch.testing.assert_close(torch.export.export(module, args).module()(*args), module(*args))
