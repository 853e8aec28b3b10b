"""The movement metric (greenproof.movement): a true metric with weights fixed by the job's
initial state, computed in float64 in a fixed order, as a fixed-point integer, over every
floating tensor but the counters."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from greenproof.engine import init_state, run_segment
from greenproof.movement import (
    FLOOR,
    SCALE,
    Metric,
    MovementError,
    cumulative,
    floor_of,
    from_fixed,
    is_moving,
    metric_for,
    rms,
    to_fixed,
    triangle_slack,
)
from greenproof.spec import parse_spec

SPEC = {"task": "mlp", "model": {"hidden": 16, "depth": 1, "dropout": 0.0}, "dataset": {"uri": "builtin://digits"},
        "batch_size": 16, "total_steps": 6, "segment_steps": 2, "seed": 3}


def state(seed: int, scale: float = 1.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "model.w": torch.randn(4, 3, generator=g) * scale,
        "model.b": torch.zeros(3) + scale * torch.rand(3, generator=g),
        "model.half": (torch.randn(5, generator=g) * scale).to(torch.bfloat16),
        "optim.w.exp_avg": torch.randn(4, 3, generator=g) * 1e-2 * scale,
        "optim.w.exp_avg_sq": torch.rand(4, 3, generator=g) * 1e-4 * scale,
        "optim.w.step": torch.tensor(float(seed)),
        "train.step": torch.tensor(seed, dtype=torch.int64),
        "rng.key": torch.tensor(7, dtype=torch.int64),
        "mask": torch.tensor([True, False]),
    }


INITIAL = {**state(0), "optim.w.exp_avg": torch.zeros(4, 3), "optim.w.exp_avg_sq": torch.zeros(4, 3),
           "model.b": torch.zeros(3)}


def test_only_floating_tensors_that_are_not_counters_move():
    metric = Metric(INITIAL)
    assert list(metric.weights) == ["model.b", "model.half", "model.w", "optim.w.exp_avg", "optim.w.exp_avg_sq"]
    assert not is_moving("optim.w.step", torch.tensor(1.0))  # AdamW's float step counter
    assert not is_moving("train.step", torch.tensor(1)) and not is_moving("mask", torch.tensor([True]))
    a = state(1)
    b = {**a, "optim.w.step": torch.tensor(99.0), "train.step": torch.tensor(99), "rng.key": torch.tensor(1),
         "mask": torch.tensor([False, True])}
    assert metric.distance(a, b) == 0.0  # counters, RNG key and integers are the invariants' business


def test_weights_are_fixed_by_the_initial_state_with_a_floor():
    metric = Metric(INITIAL)
    assert metric.weights["model.w"] == pytest.approx(max(rms(INITIAL["model.w"]), FLOOR))
    assert metric.weights["model.b"] == FLOOR  # zero at the start: the floor
    assert metric.weights["optim.w.exp_avg"] == FLOOR  # moments start at zero
    assert metric.weights["optim.w.exp_avg_sq"] == FLOOR**2 == floor_of("optim.w.exp_avg_sq")  # squared units
    # the same initial state gives the same weights, whatever the later states
    assert Metric(INITIAL).weights == metric.weights
    a, b = state(1), state(2)
    assert metric.distance(a, b) == Metric(INITIAL).distance(a, b)


def test_the_weights_of_a_job_come_from_its_seeded_initial_state():
    spec = parse_spec(SPEC)
    init = init_state(spec, "cpu")
    metric = metric_for(spec)
    assert metric.weights == Metric(init).weights
    trained = run_segment(spec, init, 0, "cpu").state
    assert Metric(trained).weights != metric.weights  # so a later state is no reference
    assert metric_for(spec.model_copy(update={"seed": 4})).weights != metric.weights


def test_it_is_a_metric():
    metric = Metric(INITIAL)
    states = [state(s, scale) for s, scale in ((1, 1.0), (2, 0.5), (3, 3.0), (4, 1e-3), (5, 10.0))]
    for a in states:
        assert metric.distance(a, a) == 0.0
    for a, b in itertools.combinations(states, 2):
        assert metric.distance(a, b) == metric.distance(b, a) > 0
    for a, b, c in itertools.permutations(states, 3):
        assert metric.distance(a, c) <= metric.distance(a, b) + metric.distance(b, c)


def test_the_distance_is_the_weighted_l2_in_float64():
    metric = Metric(INITIAL)
    a, b = state(1), state(2)
    expected = math.sqrt(sum(
        float(((a[n].double() - b[n].double()) ** 2).sum()) / w**2 for n, w in sorted(metric.weights.items())))
    assert metric.distance(a, b) == pytest.approx(expected, rel=1e-12)


def test_fixed_point_is_an_exact_floor():
    assert SCALE == 2**20
    assert to_fixed(0.0) == 0 and to_fixed(1.0) == SCALE and to_fixed(2.5) == 5 * SCALE // 2
    assert to_fixed(1.0 - 2**-30) == SCALE - 1  # floor, not round
    assert from_fixed(to_fixed(3.25)) == 3.25
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(MovementError):
            to_fixed(bad)
    metric = Metric(INITIAL)
    a, b = state(1), state(2)
    assert metric.fixed(a, b) == math.floor(metric.distance(a, b) * SCALE)


def test_the_same_bits_whatever_the_thread_count():
    spec = parse_spec(SPEC)
    metric = metric_for(spec)
    a = init_state(spec, "cpu")
    b = run_segment(spec, a, 0, "cpu").state
    threads = torch.get_num_threads()
    try:
        values = set()
        for n in (1, 2):
            torch.set_num_threads(n)
            values.add(metric.distance(a, b))
    finally:
        torch.set_num_threads(threads)
    assert len(values) == 1


def test_states_that_cannot_be_compared_are_refused():
    metric = Metric(INITIAL)
    a = state(1)
    with pytest.raises(MovementError, match="missing"):
        metric.distance(a, {k: v for k, v in a.items() if k != "model.w"})
    with pytest.raises(MovementError, match="shapes"):
        metric.distance(a, {**a, "model.w": torch.zeros(2, 2)})
    with pytest.raises(MovementError, match="non-finite"):
        metric.distance(a, {**a, "model.w": torch.full((4, 3), float("inf"))})
    with pytest.raises(MovementError, match="floor"):
        Metric(INITIAL, floor=0.0)


def test_cumulative_movement_and_the_rounding_slack():
    assert cumulative([3, 0, 5]) == [0, 3, 3, 8]
    with pytest.raises(MovementError):
        cumulative([1, -1])
    # floor(x) + floor(y) >= floor(x + y) - 1: each of the b - a floored segments loses < 1 unit
    metric = Metric(INITIAL)
    states = [state(s) for s in range(1, 6)]
    moves = cumulative(metric.fixed(states[k], states[k + 1]) for k in range(4))
    for a, b in itertools.combinations(range(5), 2):
        assert metric.fixed(states[a], states[b]) <= moves[b] - moves[a] + triangle_slack(a, b)
