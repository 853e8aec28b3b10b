"""Whole-state audits (docs/protocol.md §4): a forged tensor anywhere in a boundary state is caught.

A forger trains honestly up to boundary 2, replaces one tensor of that state,
and trains on from the forged state. Auditing segment 1 (which ends at the
forged boundary) must find it in the provider's own class (bit equality) and
across classes (every tensor compared); a forgery that breaks an invariant is
also caught on segment 2, which starts from it.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from greenproof.adversaries.cheats import with_counters_at
from greenproof.adversaries.simulate import SimulatedRun, simulate_run
from greenproof.engine import RNG_KEY, STEP_KEY, run_segment
from greenproof.movement import MovementError, metric_for
from greenproof.spec import parse_spec
from greenproof.statehash import state_hash
from verifier.audit import AuditConfig, audit_job
from verifier.compare import tensor_distances
from verifier.invariants import check_state

OTHER_CLASS = b"\x22" * 32
CONFIG = AuditConfig(measure_energy=False, check_final=False)
FORGED_AT = 2


def spec():
    return parse_spec({"task": "mlp", "model": {"hidden": 16, "depth": 1, "dropout": 0.1},
                       "dataset": {"uri": "builtin://digits"}, "batch_size": 32, "total_steps": 16,
                       "segment_steps": 4, "seed": 7})


@pytest.fixture(scope="module")
def honest():
    return simulate_run(spec(), measure_energy=False)


def _first(state, pattern):
    """The first tensor (sorted) named ``pattern`` or ending in it; ``*`` for the first weight matrix."""
    if pattern == "*":
        return next(n for n in sorted(state) if n.startswith("model.") and state[n].dim() == 2)
    return pattern if pattern in state else next(n for n in sorted(state) if n.endswith(pattern))


def _set(pattern, fn):
    def forge(state):
        out = dict(state)
        name = _first(state, pattern)
        out[name] = fn(out[name])
        return out
    return forge


# name -> (forgery, breaks an invariant of the forged state itself?)
FORGERIES = {
    "adam second moment inflated (updates frozen)": (_set(".exp_avg_sq", lambda t: t + 1e3), True),
    "adam first moment zeroed": (_set(".exp_avg", torch.zeros_like), False),
    "adam first moment scaled x0.5": (_set(".exp_avg", lambda t: t * 0.5), False),
    "rng key rewound": (_set(RNG_KEY, lambda t: t + 1), True),
    "step counter skipped ahead": (_set(STEP_KEY, lambda t: t + 4), True),
    "optimizer step slot off": (_set("weight.step", lambda t: t + 1), True),
    "nan in a weight": (_set("*", lambda t: t.clone().index_fill_(0, torch.tensor([0]), float("nan"))), True),
    "extra tensor": (lambda s: {**s, "model.extra": torch.zeros(3)}, True),
    "missing tensor": (lambda s: {k: v for k, v in s.items() if k != _first(s, ".exp_avg")}, True),
    "dtype changed": (_set("*", lambda t: t.double()), True),
    "weights collapsed to zero": (_set("*", torch.zeros_like), False),
}


def claiming(run: SimulatedRun, hashes: list[bytes], states: dict) -> SimulatedRun:
    """``run`` committing ``hashes`` with the movements a careful cheater claims: its states' true
    distances (so the movement check passes and the other checks must find it), where they can
    be measured at all."""
    metric = metric_for(run.spec)
    moves = [0]
    for k in range(len(hashes) - 1):
        try:
            moves.append(moves[-1] + metric.fixed(states[hashes[k]], states[hashes[k + 1]]))
        except MovementError:  # a malformed state: it claims the honest segment's movement
            moves.append(moves[-1] + run.moves[k + 1] - run.moves[k])
    return dataclasses.replace(run, hashes=hashes, states=states, moves=moves)


def forged_run(run: SimulatedRun, forge) -> SimulatedRun:
    """``run`` with boundary FORGED_AT replaced and every later segment trained from it."""
    states = dict(run.states)
    hashes = list(run.hashes[: FORGED_AT])
    state = forge(run.states[run.hashes[FORGED_AT]])
    for k in range(FORGED_AT, run.spec.num_segments + 1):
        h = state_hash(state)
        states[h], hashes = state, hashes + [h]
        if k < run.spec.num_segments:
            try:
                state = run_segment(run.spec, state, k, "cpu").state
            except Exception:  # the engine cannot even run from it: the provider makes something up
                state = with_counters_at(dict(state), (k + 1) * run.spec.segment_steps)
    return claiming(run, hashes, states)


@pytest.mark.parametrize("name", sorted(FORGERIES))
@pytest.mark.parametrize("cls", ["same class", "other class"])
def test_every_forged_tensor_is_caught(honest, name, cls):
    forge, breaks_invariant = FORGERIES[name]
    run = forged_run(honest, forge)
    provider_class = run.provider_class if cls == "same class" else OTHER_CLASS
    report = audit_job(run.audit_job([FORGED_AT - 1, FORGED_AT], provider_class), CONFIG, fetch=run.fetch)
    verdict = {s.index: s.verdict.value for s in report.segments}
    assert verdict[FORGED_AT - 1] == "fraud", report.summary()  # the segment that ends at the forgery
    if breaks_invariant:  # and the one that starts from it
        assert verdict[FORGED_AT] == "fraud", report.summary()


def test_honest_states_keep_every_invariant(honest):
    for k, h in enumerate(honest.hashes):
        assert check_state(honest.spec, honest.states[h], k) == []


def test_invariant_violations_name_the_tensor_and_the_bound(honest):
    state = FORGERIES["adam second moment inflated (updates frozen)"][0](honest.states[honest.hashes[2]])
    (reason,) = check_state(honest.spec, state, 2)
    assert "exp_avg_sq" in reason and "exceeds" in reason and "clipping at 1" in reason


def test_cheaper_arithmetic_and_a_skipped_step_are_far_outside_the_tolerance(honest):
    """bf16 compute on an fp32 spec and a skipped last step, with counters forged to look right,
    passed the old weights-only rule at 1e-3; compared tensor by tensor they are far outside it."""
    sp, k = honest.spec, 2
    start, claimed_honest = honest.states[honest.hashes[k]], honest.states[honest.hashes[k + 1]]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16_end = run_segment(sp, start, k, "cpu").state
    sub = sp.model_copy(update={"segment_steps": 1})
    skipped = start
    for j in range(sp.segment_steps - 1):
        skipped = run_segment(sub, skipped, k * sp.segment_steps + j, "cpu").state
    skipped = with_counters_at(skipped, (k + 1) * sp.segment_steps)
    for cheat in (bf16_end, skipped):
        assert check_state(sp, cheat, k + 1) == []  # a careful cheater keeps the invariants
        worst = max(d.distance for d in tensor_distances(cheat, claimed_honest))
        assert worst > 3 * sp.tolerance.rel_l2
        states = dict(honest.states)
        h = state_hash(cheat)
        states[h] = cheat
        hashes = list(honest.hashes)
        hashes[k + 1] = h
        run = claiming(honest, hashes, states)
        report = audit_job(run.audit_job([k], OTHER_CLASS), CONFIG, fetch=run.fetch)
        assert report.fraud and "beyond the tolerance" in report.reasons[0]
