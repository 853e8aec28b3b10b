"""Audits that find one forged boundary (issue 12): the verifier's movement and triangle checks
on crafted states, every single-boundary forger caught over many audit draws, and no fraud vote
on honest runs of the three families.

A forger trains honestly up to boundary ``k*``, forges the state there (optimizer moments at
the clipping bound, collapsed weights, another run's state) and trains honestly from the
forged state; it claims the jump's movement truthfully, on the next segment, or nowhere
(:mod:`greenproof.adversaries.forgers`). Draws follow the contract (half the samples uniform
over segments, half over the claimed movement); ``bench/forgery.py`` measures the rates at
N = 64 with the market's 48 samples over 1 000 draws, these tests the same machinery smaller.
"""

from __future__ import annotations

import random

import pytest

from greenproof.adversaries.forgers import FORGERS, forged_boundary, make_forger
from greenproof.adversaries.simulate import Distances, SimulatedRun, draw_outcome, simulate_run
from greenproof.engine import init_state
from greenproof.movement import Metric, cumulative, metric_for
from greenproof.spec import parse_spec
from greenproof.statehash import state_hash
from verifier.audit import (
    AuditConfig,
    AuditJob,
    OpenedSegment,
    audit_job,
    check_segment,
    triangle_check,
)
from verifier.evidence import Verdict
from verifier.invariants import check_state
from verifier.sampling import audit_indices

pytestmark = pytest.mark.usefixtures("one_thread")

N = 16
SAMPLES = 16  # 8 uniform over segments + 8 over the claimed movement
SEEDS = 200
CONFIG = AuditConfig(measure_energy=False)


def spec_of(segments: int = N, **over):
    base = {"task": "mlp", "model": {"hidden": 16, "depth": 1, "dropout": 0.0},
            "dataset": {"uri": "builtin://digits"}, "batch_size": 16, "total_steps": 2 * segments,
            "segment_steps": 2, "seed": 5}
    base.update(over)
    return parse_spec(base)


@pytest.fixture(scope="module")
def honest() -> SimulatedRun:
    return simulate_run(spec_of(4), measure_energy=False)


def opened(run: SimulatedRun, i: int, **moves: int) -> OpenedSegment:
    return run.opened(i).model_copy(update=moves)


def job_of(run: SimulatedRun, segments: list[OpenedSegment]) -> AuditJob:
    return run.audit_job([s.index for s in segments]).model_copy(update={"opened": segments})


# ---------------------------------------------------------------------------- the movement check


def test_an_honest_segments_claim_is_its_states_distance(honest):
    check = check_segment(honest.spec, honest.opened(1), "sim://", honest.provider_class, CONFIG, honest.fetch,
                          job_id=1)
    assert check.verdict is Verdict.OK and check.checks["movement"] == "ok"
    assert check.claimed_move == check.measured_move == honest.moves[2] - honest.moves[1] > 0


@pytest.mark.parametrize("off, fraud", [(1, False), (-1, False), (2, True), (10**6, True)])
def test_a_movement_claim_off_by_more_than_one_unit_is_fraud_with_the_numbers(honest, off, fraud):
    seg = opened(honest, 2, end_move=honest.moves[3] + off)
    check = check_segment(honest.spec, seg, "sim://", honest.provider_class, CONFIG, honest.fetch, job_id=1)
    assert (check.verdict is Verdict.FRAUD) is fraud
    if fraud:
        measured, claimed = honest.moves[3] - honest.moves[2], honest.moves[3] + off - honest.moves[2]
        assert check.checks["movement"].startswith("fraud") and check.replay_hash is None  # no replay needed
        assert (check.measured_move, check.claimed_move) == (measured, claimed)
        assert f"{measured} units apart" in check.reasons[0] and f"claims {claimed}" in check.reasons[0]


def test_a_decreasing_movement_or_a_moved_boundary_0_is_fraud(honest):
    down = opened(honest, 1, end_move=honest.moves[1] - 1)
    check = check_segment(honest.spec, down, "sim://", honest.provider_class, CONFIG, honest.fetch, job_id=1)
    assert check.verdict is Verdict.FRAUD and "decreases" in check.checks["movement"]
    first = opened(honest, 0, start_move=5, end_move=honest.moves[1] + 5)
    check = check_segment(honest.spec, first, "sim://", honest.provider_class, CONFIG, honest.fetch, job_id=1)
    assert check.verdict is Verdict.FRAUD and "boundary 0 must be 0, the opening claims 5" in check.reasons[0]


# ---------------------------------------------------------------------------- the triangle check


def test_the_triangle_holds_over_every_boundary_of_an_honest_run(honest):
    report = audit_job(honest.audit_job(list(range(4))), CONFIG, fetch=honest.fetch)
    assert report.verdict is Verdict.OK
    assert report.triangle is not None and report.triangle.ok
    assert sorted(report.triangle.known) == list(range(5))
    assert [(p.a, p.b) for p in report.triangle.pairs] == [(k, k + 1) for k in range(4)]
    assert all(p.distance == p.claimed for p in report.triangle.pairs)  # consecutive: the claims themselves


def test_a_jump_claimed_nowhere_breaks_the_triangle_between_the_known_boundaries_around_it():
    spec = spec_of(4)
    run = simulate_run(spec, cheat=make_forger("forge_collapse_nowhere", at=2), measure_energy=False)
    report = audit_job(run.audit_job([0, 3]), CONFIG, fetch=run.fetch)  # segment 1 (the forged one) unaudited
    assert all(s.verdict is Verdict.OK for s in report.segments)  # each audited segment replays exactly
    assert report.verdict is Verdict.FRAUD and not report.triangle.ok
    [bad] = [p for p in report.triangle.pairs if not p.ok]
    assert (bad.a, bad.b) == (1, 3) and bad.distance > bad.claimed + bad.slack
    assert bad.claimed == run.moves[3] - run.moves[1] and bad.slack == 3
    assert any(f"boundaries 1 and 3 are {bad.distance} units apart" in r for r in report.reasons)


def test_a_decreasing_movement_between_known_boundaries_is_fraud(honest):
    # segment 2's own claim is its distance, but both its boundaries moved down below boundary 1's
    drop = honest.moves[2] + 1
    seg2 = opened(honest, 2, start_move=honest.moves[2] - drop, end_move=honest.moves[3] - drop)
    triangle = triangle_check(job_of(honest, [honest.opened(0), seg2]), honest.fetch)
    assert triangle is not None and not triangle.ok
    assert any(f"decreases from boundary 1 ({honest.moves[1]}) to boundary 2 ({honest.moves[2] - drop})" in r
               for r in triangle.reasons)


def test_openings_that_disagree_about_a_boundary_are_fraud(honest):
    seg2 = opened(honest, 2, start_move=honest.moves[2] + 7, end_move=honest.moves[3] + 7)
    triangle = triangle_check(job_of(honest, [honest.opened(1), seg2]), honest.fetch)
    assert triangle is not None and not triangle.ok
    assert any(r.startswith("boundary 2: segment 1's opening says") for r in triangle.reasons)
    final = triangle_check(job_of(honest, [opened(honest, 3, end_move=honest.moves[4] - 1)]), honest.fetch)
    assert final is not None and any("the committed result says" in r for r in final.reasons)


# ---------------------------------------------------------------------------- forgers over many draws


def test_forgers_keep_the_whole_state_invariants_and_pick_their_boundary():
    spec = spec_of(4)
    for name in ("forge_moments", "forge_collapse", "forge_other_run"):
        run = simulate_run(spec, cheat=make_forger(name, at=2), measure_energy=False)
        assert all(not check_state(spec, run.states[h], k) for k, h in enumerate(run.hashes)), name
    assert [forged_boundary(64, f) for f in (1.0, 0.5, 0.25, 0.0)] == [1, 32, 48, 63]


def test_the_second_moments_squared_floor_is_what_makes_a_frozen_optimizer_visible():
    """Why ``exp_avg_sq`` is floored at FLOOR² (docs/protocol.md §3.10): the clipping bound keeps a
    forged second moment small early in a run; with the plain floor its jump is a sliver of the
    run's movement, so the movement samples rarely reach it."""
    spec = spec_of()
    run = simulate_run(spec, cheat=make_forger("forge_moments", at=1), measure_energy=False)
    states = [run.states[h] for h in run.hashes]
    init = states[0]

    def jump_share(metric: Metric) -> float:
        moves = cumulative(metric.fixed(states[k], states[k + 1]) for k in range(spec.num_segments))
        return moves[1] / moves[-1]

    assert jump_share(Metric(init)) > 3 * jump_share(Metric(init, squared=False))  # 0.37 against 0.10 here


def detection(run: SimulatedRun, label: str) -> tuple[float, int, float]:
    """(caught rate over SEEDS draws, draws caught by the triangle, version 1's rate: every
    sample uniform and only a failing replay counts), each segment judged by the real verifier."""
    report = audit_job(run.audit_job(list(range(run.spec.num_segments))),
                       AuditConfig(measure_energy=False, check_final=False, check_triangle=False), fetch=run.fetch)
    failing = {s.index for s in report.segments if s.verdict is Verdict.FRAUD}
    replay_fails = {s.index for s in report.segments if "comparison" in s.checks
                    and s.checks["comparison"] != "ok"}
    rng, dist = random.Random(label), Distances(metric_for(run.spec))
    outcomes, uniform = [], 0
    for _ in range(SEEDS):
        seed = rng.randbytes(32)
        outcomes.append(draw_outcome(run, failing, seed, SAMPLES, dist))
        uniform += bool(replay_fails & set(audit_indices(seed, run.job_id, run.spec.num_segments, SAMPLES)))
    return (sum(a or b for a, b in outcomes) / SEEDS, sum(b for _, b in outcomes), uniform / SEEDS)


def test_an_honest_run_is_never_caught():
    rate, by_triangle, _ = detection(simulate_run(spec_of(), measure_energy=False), "honest")
    assert rate == 0.0 and by_triangle == 0


@pytest.mark.parametrize("at", [1, N // 2])
@pytest.mark.parametrize("name", sorted(FORGERS))
def test_every_single_boundary_forger_is_caught(name, at):
    run = simulate_run(spec_of(), cheat=make_forger(name, at=at), measure_energy=False)
    rate, by_triangle, uniform_only = detection(run, f"{name}-{at}")
    assert rate >= 0.97, (name, at, rate)
    # version 1 (every sample uniform, replay only) finds the one bad segment with ~1 - (1 - 1/N)^s = 0.64
    assert uniform_only < 0.75 and rate > uniform_only + 0.2
    if name.endswith("_nowhere"):
        assert by_triangle > 0  # nothing claims the jump: only the triangle sees it when segment k*-1 is missed


def test_bridged_segments_are_the_undrawn_ones_between_two_known_boundaries():
    from verifier.movement import bridged_segments

    assert bridged_segments([0, 2, 3, 8], [2], 8) == []  # segment 2 drawn; 0-2 and 3-8 are gaps
    assert bridged_segments([0, 1, 2, 8], [1], 8) == [0]  # boundary 0 is the spec's
    assert bridged_segments([0, 3, 4, 5, 6, 8], [3, 5], 8) == [4]
    assert bridged_segments([0, 6, 7, 8], [6], 8) == [7]  # boundary N is the committed result


def test_a_forged_boundary_1_is_caught_by_the_bridged_segment_0_and_only_by_it():
    """Collapse at boundary 1, the jump claimed on segment 0, honest from there; the draw opens
    segment 1 (exact). The verifier replays the bridged segment 0 and finds the forgery; without
    that replay the same audit would pass, and an ok vote never reveals a bridged digest."""
    from verifier.votes import ballot_of

    run = simulate_run(spec_of(8), cheat=make_forger("forge_collapse", at=1), measure_energy=False)
    job = run.audit_job([1])
    found = audit_job(job, CONFIG, fetch=run.fetch)
    assert found.verdict is Verdict.FRAUD and found.reasons[0].startswith("segment 0: ")
    assert [(c.index, c.bridged, c.verdict) for c in found.segments] == [
        (0, True, Verdict.FRAUD), (1, False, Verdict.OK)]
    missed = audit_job(job, AuditConfig(measure_energy=False, check_bridged=False), fetch=run.fetch)
    assert missed.verdict is Verdict.OK and [c.index for c in missed.segments] == [1]
    honest_run = simulate_run(spec_of(8), measure_energy=False)
    ok = audit_job(honest_run.audit_job([1, 6]), CONFIG, fetch=honest_run.fetch)
    assert ok.verdict is Verdict.OK and [c.index for c in ok.segments if c.bridged] == [0, 7]
    ballot = ballot_of(ok)
    assert ballot.segments == [1, 6] and len(ballot.digests) == 2


# ---------------------------------------------------------------------------- honest runs of every family

FAMILIES = {
    "mlp": {"task": "mlp", "model": {"hidden": 16, "depth": 1, "dropout": 0.1}, "dataset": {"uri": "builtin://digits"},
            "batch_size": 16},
    "cnn": {"task": "cnn", "model": {"channels": [4, 8], "hidden": 16, "dropout": 0.1},
            "dataset": {"uri": "builtin://digits"}, "batch_size": 16},
    "gpt": {"task": "gpt", "model": {"block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16, "dropout": 0.1},
            "dataset": {"uri": "builtin://text/founding"}, "batch_size": 4},
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_honest_segments_of_every_family_get_no_fraud_vote(family):
    spec = parse_spec({**FAMILIES[family], "total_steps": 12, "segment_steps": 2, "seed": 2})
    run = simulate_run(spec, measure_energy=False)
    assert run.hashes[0] == state_hash(init_state(spec, "cpu"))  # boundary 0 is the spec's
    report = audit_job(run.audit_job(list(range(spec.num_segments))), CONFIG, fetch=run.fetch)
    assert report.verdict is Verdict.OK, report.reasons
    assert [s.checks["movement"] for s in report.segments] == ["ok"] * spec.num_segments
    assert report.triangle is not None and report.triangle.ok and len(report.triangle.pairs) == spec.num_segments
