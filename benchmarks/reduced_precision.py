"""Parity of the ops in float16 and bfloat16 against float64 and float32 (CPU).

    python -m benchmarks.reduced_precision

Inputs are drawn in float64 and rounded to the low dtype; the low-precision op, the
float32 op and the float64 reference all run on those rounded values, so the
figures are the op's own error: max |out - ref| and max |out - ref| / max |ref|,
forward and the gradient of every input.
"""
import torch

import ial_ext  # noqa: F401
from ial_ext.ops import (
    spn_propagate, spn_propagate_reference, spn_scan, spn_scan_reference,
    superpixel_pool, superpixel_pool_reference, superpixel_unpool, superpixel_unpool_reference,
)

B, C, H, W, K = 2, 21, 64, 64, 60


def cases():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(B, C, H, W, generator=g, dtype=torch.float64)
    shared = torch.rand(B, 3, H, W, generator=g, dtype=torch.float64) / 3
    per_channel = torch.rand(B, 3 * C, H, W, generator=g, dtype=torch.float64) / 3
    guidance = torch.randn(B, 12, H, W, generator=g, dtype=torch.float64) * 0.5
    labels = torch.randint(0, K, (B, H, W), generator=g)
    pooled = torch.randn(B, K, C, generator=g, dtype=torch.float64)
    yield "spn_scan per-channel dir 0", lambda a, b: spn_scan(a, b, 0), lambda a, b: spn_scan_reference(a, b, 0), (x, per_channel)
    yield "spn_scan shared dir 2", lambda a, b: spn_scan(a, b, 2), lambda a, b: spn_scan_reference(a, b, 2), (x, shared)
    yield "spn_propagate shared", spn_propagate, spn_propagate_reference, (x, guidance)
    yield "superpixel_pool", lambda a: superpixel_pool(a, labels, K), lambda a: superpixel_pool_reference(a, labels, K), (x,)
    yield "superpixel_unpool", lambda p: superpixel_unpool(p, labels), lambda p: superpixel_unpool_reference(p, labels), (pooled,)


def run(fn, inputs, grad, dtype):
    inputs = [t.to(dtype).requires_grad_() for t in inputs]
    out = fn(*inputs)
    grads = torch.autograd.grad(out, inputs, grad.to(dtype) if grad.dtype != dtype else grad)
    return [out.detach().double()] + [g.double() for g in grads]


def errors(got, want):
    abs_error = (got - want).abs().max().item()
    return abs_error, abs_error / want.abs().max().clamp_min(1e-30).item()


def main():
    print("| op | dtype | tensor | max abs err vs float64 | rel (to max abs) | max abs err vs float32 | rel |")
    print("|---|---|---|---|---|---|---|")
    for name, fn, ref_fn, inputs in cases():
        out_shape = ref_fn(*inputs).shape
        grad = torch.randn(out_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        for dtype in (torch.float16, torch.bfloat16):
            rounded = [t.to(dtype).double() for t in inputs]
            low = run(fn, rounded, grad.to(dtype), dtype)
            f32 = run(fn, rounded, grad.to(dtype).float(), torch.float32)
            ref = run(ref_fn, rounded, grad.to(dtype).double(), torch.float64)
            labels = ["output"] + [f"grad {i}" for i in range(len(inputs))]
            for label, l, f, r in zip(labels, low, f32, ref):
                a64, r64 = errors(l, r)
                a32, r32 = errors(l, f)
                print(f"| {name} | {str(dtype)[6:]} | {label} | {a64:.2e} | {r64:.2e} | {a32:.2e} | {r32:.2e} |")
    print(f"\neps: float16 {torch.finfo(torch.float16).eps:.2e}, bfloat16 {torch.finfo(torch.bfloat16).eps:.2e}")


if __name__ == "__main__":
    main()
