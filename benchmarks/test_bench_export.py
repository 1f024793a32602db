"""The exported model in onnxruntime vs PyTorch eager with the compiled ops: same model, inputs, run.

Model: what the trainer deploys by default, MultiScaleUnary(UnaryNetwork(21))
(small backbone, scales 1 and 1.5 plus the mirror image) + PairwiseNetwork(21)
(similarity gates; VOC's class count), seed 0, exported with
ial_ext.export.export_modules, with the default pairwise network (12 shared maps and a
strength per class and direction: the exported scans then carry per-class gates), the 12
shared maps alone of the previous default (32-channel guidance CNN), and per-class gates
(12C, the default before that). Each timed call goes
from a host float32 batch to host probabilities and labels (what the runner
does), so the CUDA rows include the transfers both ways. Batch 1 gives the
latency, batch 8 the throughput (images/s = 8 / time).

    python -m pytest benchmarks/test_bench_export.py --benchmark-json=benchmarks/results_export.json
    python -m benchmarks.test_bench_export benchmarks/results_export.json   # the markdown table
"""
import json
import sys

import pytest
import torch

from .conftest import CPU_THREADS, device_sync, devices
from .pairwise_iteration import NUM_CLASSES, VARIANTS, network_of

SIZES = [(1, 321, 321), (8, 321, 321), (1, 161, 161), (8, 161, 161)]
IMPLEMENTATIONS = ["onnxruntime", "onnxruntime no-spin", "torch eager"]
GATE_LAYOUTS = list(VARIANTS)  # the pairwise networks of benchmarks/pairwise_iteration.py
ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


@pytest.fixture(scope="module", params=GATE_LAYOUTS)
def exported(request, tmp_path_factory):
    from ial_ext.models import MultiScaleUnary, UnaryNetwork
    from ial_ext.export.deployment_model import DeploymentModel
    from ial_ext.export import export_modules

    torch.manual_seed(0)
    unary = MultiScaleUnary(UnaryNetwork(NUM_CLASSES)).eval()
    pairwise = network_of(request.param).eval()
    path = tmp_path_factory.mktemp("bench_export") / "model.onnx"
    export_modules(unary, pairwise, path, check=False)
    return DeploymentModel(unary, pairwise).eval(), str(path), request.param


def onnxruntime_session(path: str, device: str, spinning: bool = True):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = CPU_THREADS  # the torch side runs on the same 2 threads
    if not spinning:
        # Idle pool threads sleep instead of spinning: on a CPU shared with other jobs the
        # Scan's many small ops otherwise wait for descheduled spinning threads.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(path, options, providers=[ORT_PROVIDERS[device], "CPUExecutionProvider"])
    if session.get_providers()[0] != ORT_PROVIDERS[device]:
        pytest.skip(f"onnxruntime cannot start {ORT_PROVIDERS[device]} here")
    return session


def ort_devices():
    import onnxruntime

    return [d for d in ("cpu", "cuda") if ORT_PROVIDERS[d] in onnxruntime.get_available_providers()]


CASES = [(impl, device) for impl in IMPLEMENTATIONS for device in ("cpu", "cuda")
         if not (impl == "onnxruntime no-spin" and device == "cuda")]


# Sizes vary slowest: the implementations of one size run back to back (same machine load).
@pytest.mark.parametrize("impl,device", CASES, ids=[f"{i}-{d}" for i, d in CASES])
@pytest.mark.parametrize("size", SIZES, ids=[f"{b}x3x{h}x{w}" for b, h, w in SIZES])
def test_deployment_model(benchmark, exported, impl, device, size):
    model, path, gate_layout = exported
    if device not in (ort_devices() if impl.startswith("onnxruntime") else devices()):
        pytest.skip(f"{impl} has no {device} here")
    batch, height, width = size
    images = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(0))
    if impl.startswith("onnxruntime"):
        session = onnxruntime_session(path, device, spinning=impl == "onnxruntime")
        feeds = {"images": images.numpy()}

        def run():
            session.run(None, feeds)
    else:
        model = model.to(device)

        @torch.no_grad()
        def run():
            probabilities, labels = model(images.to(device))
            probabilities.cpu(), labels.cpu()
            device_sync(device)

    benchmark.group = f"deploy model {batch}x3x{height}x{width} {device} {gate_layout} gates"
    benchmark.extra_info.update(suite="export", impl=impl, device=device, size=list(size), batch=batch,
                                gates=gate_layout)
    slow = device == "cpu" and batch * height * width > 4 * 321 * 321
    benchmark.pedantic(run, rounds=3 if slow else 8, warmup_rounds=1)


def render_table(path: str) -> str:
    """Markdown table of a --benchmark-json file: medians, images/s, onnxruntime / torch ratio."""
    with open(path) as handle:
        benchmarks = json.load(handle)["benchmarks"]
    rows = {}
    for bench in benchmarks:
        info = bench["extra_info"]
        if info.get("suite") != "export":
            continue
        key = (info["device"], tuple(info["size"]), info.get("gates", "per_class"))
        rows.setdefault(key, {})[info["impl"]] = (bench["stats"]["median"], bench["stats"]["min"], info["batch"])
    header = ["device", "input", "gates"] + [f"{impl} ms (min)" for impl in IMPLEMENTATIONS]
    header += [f"{impl} img/s" for impl in IMPLEMENTATIONS]
    header += [f"{impl} / torch time" for impl in IMPLEMENTATIONS if impl != "torch eager"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    def order(item):
        (device, (batch, height, width), gates), _ = item
        return device, (height, width), batch, GATE_LAYOUTS.index(gates)

    for (device, (batch, height, width), gates), row in sorted(rows.items(), key=order):
        cells = [device, f"{batch}x3x{height}x{width}", gates]
        for impl in IMPLEMENTATIONS:
            cells.append(f"{row[impl][0] * 1e3:.0f} ({row[impl][1] * 1e3:.0f})" if impl in row else "-")
        for impl in IMPLEMENTATIONS:
            cells.append(f"{batch / row[impl][0]:.1f}" if impl in row else "-")
        for impl in IMPLEMENTATIONS:
            if impl != "torch eager":
                both = impl in row and "torch eager" in row
                cells.append(f"{row[impl][0] / row['torch eager'][0]:.2f}" if both else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_table(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results_export.json"))
