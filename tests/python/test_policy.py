"""The worker's accept policy names the first rule an offer fails."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from worker.policy import (
    GIB,
    Offer,
    PolicyConfig,
    Standing,
    checkpoint_interval,
    estimated_seconds,
    evaluate,
)

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


# ---------------------------------------------------------------------------- sparse checkpoints
# 100 steps = 10 segments of 10 steps, 1 GiB states; at 10 steps/s x 1.5 a segment takes ~1.5 s
SPARSE = dict(num_segments=10, segment_steps=10, state_bytes=GIB, audit_samples=4, open_window_s=100)


def budgeted(gb: float, **kw: object) -> PolicyConfig:
    return CONFIG.model_copy(update={"disk_budget_gb": gb, **kw})


def test_without_a_disk_budget_nothing_about_checkpoints_is_checked() -> None:
    huge = offer(**{**SPARSE, "state_bytes": 10**6 * GIB, "open_window_s": 1})
    assert evaluate(huge, STANDING, CONFIG).accept
    assert checkpoint_interval(huge, CONFIG) == 1


def test_a_budget_sets_m_and_says_so() -> None:
    # ceil(10/m) + 2 states of 1 GiB in 6 GiB: m = 3 (4 + 2); worst case min(4, 4) x 2 replays = ~12 s <= 50 s
    d = evaluate(offer(**SPARSE), STANDING, budgeted(6))
    assert d.accept and "checkpoints every 3 of 10 boundaries" in d.reason
    assert checkpoint_interval(offer(**SPARSE), budgeted(6)) == 3


def test_a_job_whose_states_do_not_fit_even_at_m_equals_n_is_refused_with_the_numbers() -> None:
    d = evaluate(offer(**SPARSE), STANDING, budgeted(2.9))
    assert not d.accept
    assert d.reason == ("checkpoints do not fit --disk-budget-gb 2.9: even keeping only the last of 10 "
                        "boundaries needs 3 states x 1.000 GiB = 3.000 GiB")


def test_a_job_whose_openings_cannot_be_regenerated_in_time_is_refused_with_the_numbers() -> None:
    # 3 GiB: m = 10, worst case min(4, 1) x 9 replays x 1.5 s = 13.5 s, more than half of a 20 s window
    d = evaluate(offer(**{**SPARSE, "open_window_s": 20}), STANDING, budgeted(3))
    assert not d.accept
    assert d.reason == ("openings cannot be regenerated in time: --disk-budget-gb 3 gives m = 10 (3 states of "
                        "1.000 GiB), worst case 9 segment replays x ~1.5s = ~14s, more than 0.5 of the 20s open "
                        "window (10s)")
    # a larger share of the window, or a measured faster family, takes it
    assert evaluate(offer(**{**SPARSE, "open_window_s": 20}), STANDING, budgeted(3, regen_window_fraction=0.7)).accept
    assert evaluate(offer(**{**SPARSE, "open_window_s": 20, "steps_per_second": 100.0}), STANDING, budgeted(3)).accept
