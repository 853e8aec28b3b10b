"""The worker's accept policy names the first rule an offer fails."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from worker.policy import GIB, Offer, PolicyConfig, Standing, estimated_seconds, evaluate

CONFIG = PolicyConfig(min_price_per_step=10, max_steps=1000, max_memory_gb=2, steps_per_second=10)


def offer(**kw: object) -> Offer:
    base = dict(
        job_id=1,
        payment=10 * 100,
        collateral=500,
        deadline=10_000,
        min_green_bps=0,
        total_steps=100,
        memory_bytes=GIB,
    )
    base.update(kw)
    return Offer(**base)


STANDING = Standing(now=1000, green_bps=5000, free_stake=1000)


def test_a_fair_job_is_accepted() -> None:
    d = evaluate(offer(), STANDING, CONFIG)
    assert d.accept and bool(d)
    assert "price per step 10" in d.reason


@pytest.mark.parametrize(
    ("change", "standing", "reason"),
    [
        ({"payment": 999}, STANDING, "price per step 9 below"),
        ({"total_steps": 1001, "payment": 10_010}, STANDING, "above --max-steps"),
        ({"memory_bytes": 3 * GIB}, STANDING, "above --max-memory-gb"),
        ({"min_green_bps": 6000}, STANDING, "green share 6000"),
        ({"collateral": 1001}, STANDING, "exceeds free stake 1000"),
        ({"deadline": 1000 + 60 + 10}, STANDING, "deadline unreachable"),
        ({}, Standing(now=1000, green_bps=5000, free_stake=1000, queued_seconds=9000), "deadline unreachable"),
        ({"total_steps": 0}, STANDING, "no training steps"),
    ],
)
def test_refusals_name_the_rule(change: dict, standing: Standing, reason: str) -> None:
    d = evaluate(offer(**change), standing, CONFIG)
    assert not d.accept
    assert reason in d.reason


def test_measured_throughput_beats_the_default() -> None:
    slow = offer(deadline=1000 + 60 + 10)
    assert not evaluate(slow, STANDING, CONFIG).accept  # 100 steps at 10/s * 1.5 = 15 s + 60 s margin
    fast = offer(deadline=1000 + 60 + 10, steps_per_second=100.0)
    assert evaluate(fast, STANDING, CONFIG).accept
    assert estimated_seconds(fast, CONFIG) == pytest.approx(1.5)


def test_config_is_validated() -> None:
    with pytest.raises(ValidationError):
        PolicyConfig(max_steps=0)
    with pytest.raises(ValidationError):
        PolicyConfig(surprise=1)
