"""The pairwise training iteration (benchmarks/pairwise_iteration.py) at B = 4 and 8, C = 21,
321 x 321, with the default gates (12 shared maps and a strength per class and direction), the
shared maps alone and per-class gates, beside its floor (guidance CNN
and four scans, forward+backward) and a unary iteration of the default backbone, in one run.

    python -m pytest benchmarks/test_bench_pairwise.py --benchmark-json=benchmarks/results_pairwise.json
"""
import pytest

from .pairwise_iteration import VARIANTS, floor_step, make_inputs, pairwise_step, unary_step

SIZE = 321
BATCHES = [4, 8]


@pytest.fixture(scope="module", params=BATCHES, ids=lambda b: f"B{b}")
def inputs(request):
    return make_inputs(request.param, SIZE)


def _time(benchmark, step, **info):
    step()  # warm-up: first-touch allocations, oneDNN primitive creation
    benchmark.extra_info.update(size=SIZE, **info)
    benchmark.pedantic(step, rounds=3, iterations=1)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_pairwise_iteration(benchmark, inputs, variant):
    _time(benchmark, pairwise_step(inputs, variant), variant=variant, batch=len(inputs.batch["image"]))


@pytest.mark.parametrize("variant", ["default", "per_class"])  # the floor has no strengths
def test_pairwise_floor(benchmark, inputs, variant):
    _time(benchmark, floor_step(inputs, variant), variant=variant, batch=len(inputs.batch["image"]))


def test_unary_iteration(benchmark, inputs):
    _time(benchmark, unary_step(inputs), batch=len(inputs.batch["image"]))
