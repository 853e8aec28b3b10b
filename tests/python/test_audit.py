"""The verifier's decision rule (docs/protocol.md §4) on real engine runs, no chain."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from greenproof.adversaries.simulate import simulate_run
from greenproof.engine import STEP_KEY
from greenproof.merkle import seal, vote_commitment, work_digest
from greenproof.movement import cumulative, metric_for
from greenproof.spec import parse_spec
from greenproof.statehash import state_hash
from verifier.audit import AuditConfig, audit_job
from verifier.evidence import AuditReport, Verdict
from verifier.sampling import audit_indices, detection_probability, wilson_interval
from verifier.votes import Ballot, SeatStage, VoteJournal

OTHER_CLASS = b"\x11" * 32
NO_ENERGY = AuditConfig(measure_energy=False)


def tiny_spec(**over):
    base = {"task": "mlp", "model": {"hidden": 16, "depth": 1, "dropout": 0.1},
            "dataset": {"uri": "builtin://digits"}, "batch_size": 32, "total_steps": 8,
            "segment_steps": 2, "seed": 5}
    base.update(over)
    return parse_spec(base)


@pytest.fixture(scope="module")
def honest():
    return simulate_run(tiny_spec(), measure_energy=False)


def test_honest_run_is_ok_in_every_segment_and_the_report_round_trips(honest, tmp_path):
    report = audit_job(honest.audit_job(list(range(4))), NO_ENERGY, fetch=honest.fetch)
    assert report.verdict is Verdict.OK and not report.reasons
    assert [s.replay_hash for s in report.segments] == ["0x" + h.hex() for h in honest.hashes[1:]]
    assert report.final is not None and report.final.ok
    loaded = AuditReport.load(report.save(tmp_path))
    assert loaded == report
    assert "verdict OK" in loaded.summary()


def test_segment_zero_must_start_from_the_seeded_initial_state(honest):
    # a provider that commits another initial state (different seed) is caught at i = 0
    other = simulate_run(tiny_spec(seed=6), measure_energy=False)
    job = honest.audit_job([0])
    job = job.model_copy(update={"opened": [other.opened(0)]})
    report = audit_job(job, NO_ENERGY, fetch=other.fetch)
    assert report.fraud
    assert "seeded initial state" in report.reasons[0]


def test_energy_counter_going_backwards_is_fraud(honest):
    seg = honest.opened(1).model_copy(update={"start_energy_mj": 10, "end_energy_mj": 5})
    job = honest.audit_job([1]).model_copy(update={"opened": [seg]})
    report = audit_job(job, NO_ENERGY, fetch=honest.fetch)
    assert report.fraud and "backwards" in report.reasons[0]


def test_unfetchable_and_mis_hashed_checkpoints_are_fraud(honest):
    def mis_hashed(uri, h):
        state = dict(honest.fetch(uri, h))
        state[STEP_KEY] = state[STEP_KEY] + 1
        return state

    report = audit_job(honest.audit_job([2]), NO_ENERGY, fetch=mis_hashed)
    assert report.fraud and "hashes to" in report.reasons[0]

    def gone(uri, h):
        raise FileNotFoundError("404")

    report = audit_job(honest.audit_job([2]), NO_ENERGY, fetch=gone)
    assert report.fraud and "not available" in report.reasons[0]
    assert report.final is not None and not report.final.ok


def _with_states(run, hashes):
    """``run`` committing the boundaries ``hashes``, with the movements its provider would
    measure over them (a provider computes its claims from its own states)."""
    metric = metric_for(run.spec)
    states = [run.states[h] for h in hashes]
    moves = cumulative(metric.fixed(states[k], states[k + 1]) for k in range(len(states) - 1))
    return dataclasses.replace(run, hashes=hashes, moves=moves)


def _perturbed(run, k: int, rel: float):
    """Segment k's honest end with every parameter moved by ``rel`` (relative)."""
    end = dict(run.states[run.hashes[k + 1]])
    g = torch.Generator().manual_seed(k)
    for n, t in end.items():
        if n.startswith("model.") and t.is_floating_point():
            end[n] = t + rel * t.abs().mean() * torch.randn(t.shape, generator=g)
    h = state_hash(end)
    states = dict(run.states)
    states[h] = end
    hashes = list(run.hashes)
    hashes[k + 1] = h
    return _with_states(dataclasses.replace(run, states=states), hashes)


def test_same_class_needs_bit_equality_other_class_a_small_distance(honest):
    near = _perturbed(honest, 1, 1e-6)
    same = audit_job(near.audit_job([1]), NO_ENERGY, fetch=near.fetch)
    assert same.fraud and "same determinism class" in same.reasons[0]
    other = audit_job(near.audit_job([1], provider_class=OTHER_CLASS), NO_ENERGY, fetch=near.fetch)
    [seg] = [c for c in other.segments if not c.bridged]
    assert not seg.same_class and 0 < seg.distance < seg.tolerance
    assert seg.distance < 0.1 * seg.update_size
    assert other.verdict is Verdict.OK

    far = _perturbed(honest, 1, 5e-2)
    other = audit_job(far.audit_job([1], provider_class=OTHER_CLASS), NO_ENERGY, fetch=far.fetch)
    [seg] = [c for c in other.segments if not c.bridged]
    assert other.fraud and seg.distance > seg.tolerance


def test_within_tolerance_is_not_enough_without_a_real_update():
    """A provider that skips a segment whose honest update is below the tolerance
    is still caught across classes: its claimed update is zero."""
    spec = tiny_spec(optimizer={"name": "sgd", "lr": 1e-6})
    run = simulate_run(spec, measure_energy=False)
    start = run.states[run.hashes[1]]
    lazy = {**start, STEP_KEY: torch.tensor(2 * spec.segment_steps, dtype=torch.int64)}
    h = state_hash(lazy)
    lazy_run = _with_states(dataclasses.replace(run, states={**run.states, h: lazy}),
                            [*run.hashes[:2], h, *run.hashes[3:]])
    report = audit_job(lazy_run.audit_job([1], provider_class=OTHER_CLASS), NO_ENERGY, fetch=lazy_run.fetch)
    seg = report.segments[0]
    assert seg.distance < seg.tolerance  # the tolerance alone would pass it
    assert report.fraud and "update size" in report.reasons[0]


def test_parallel_replays_over_a_file_store_agree_with_serial(honest, tmp_path):
    """Replays in worker processes fetch through ``fetch_state`` (file:// here)."""
    from greenproof.store import ArtifactStore

    store = ArtifactStore(tmp_path / "artifacts")
    for state in honest.states.values():
        store.put(state)
    job = honest.audit_job([1, 3]).model_copy(update={"result_uri": f"file://{tmp_path}/artifacts"})
    serial = audit_job(job, NO_ENERGY, fetch=honest.fetch)
    parallel = audit_job(job, dataclasses.replace(NO_ENERGY, max_parallel=2, threads_per_replay=1))
    assert parallel.verdict is Verdict.OK and serial.verdict is Verdict.OK
    assert [s.replay_hash for s in parallel.segments] == [s.replay_hash for s in serial.segments]


def test_sampling_matches_the_contract_formula_and_the_interval_math():
    seed = bytes(range(32))
    idx = audit_indices(seed, 7, 10, 32)
    assert len(idx) == 32 and all(0 <= i < 10 for i in idx)
    assert idx == audit_indices(seed, 7, 10, 32) and idx != audit_indices(seed, 8, 10, 32)
    assert detection_probability(0.25, 32) == pytest.approx(1 - 0.75**32)
    lo, hi = wilson_interval(50, 100)
    assert lo < 0.5 < hi and hi - lo < 0.2


def journal_ballot_segments(tmp_path, market: str, voter: str) -> list[int]:
    """An ok ballot's segments (what ``reveal_vote`` takes with the digests) survive a reopen."""
    journal = VoteJournal(tmp_path)
    seat = journal.add_seat(31337, market, 4, 0, voter, seats=1)
    journal.prepare_vote(seat, Ballot(fraud=False, digests=[b"\x03" * 32, b"\x04" * 32], segments=[4, 9]))
    journal.close()
    again = VoteJournal(tmp_path).seat(31337, market, 4, 0, voter)
    assert again is not None
    return again.ballot.segments


def test_salt_and_digests_are_durable_before_the_commit_and_reused_after_a_crash(tmp_path):
    voter, market = "0x" + "ab" * 20, "0x" + "cd" * 20
    ballot = Ballot(fraud=False, digests=[b"\x01" * 32, b"\x02" * 32])
    journal = VoteJournal(tmp_path)
    seat = journal.add_seat(31337, market, 3, 1, voter, seats=2)
    rec = journal.prepare_vote(seat, ballot)
    journal.close()  # "crash" before anything was sent
    reopened = VoteJournal(tmp_path)
    again = reopened.seat(31337, market, 3, 1, voter)
    assert again is not None and again.stage is SeatStage.PREPARED and again.seats == 2
    assert (again.salt, again.digests, again.ballot) == (rec.salt, ballot.digests, ballot)
    assert again.segments == [] and journal_ballot_segments(tmp_path, market, voter) == [4, 9]
    assert reopened.prepare_vote(again, ballot).salt == rec.salt  # the retried commit matches
    assert again.commitment == vote_commitment(3, voter, False, rec.salt, ballot.digests)
    assert vote_commitment(3, voter, True, rec.salt, ballot.digests) != rec.commitment
    changed = reopened.prepare_vote(again, Ballot(fraud=True, digests=[]))  # decided again before sending
    assert changed.salt != rec.salt and changed.fraud and changed.digests == []
    reopened.set_seat_stage(changed, SeatStage.COMMITTED, "0xtx")
    assert reopened.prepare_vote(changed, ballot).commitment == changed.commitment  # sent: never re-salted
    assert [s.round for s in reopened.seats(31337, market, voter, (SeatStage.COMMITTED,))] == [1]


def test_the_replay_records_each_segments_work_digest_and_checks_the_end_seal(honest):
    report = audit_job(honest.audit_job([0, 2]), NO_ENERGY, fetch=honest.fetch)
    assert report.verdict is Verdict.OK
    n = honest.spec.num_segments
    # drawn 0 and 2; bridged: 1 (boundaries 1 and 2 opened) and the last (3 opened, N committed)
    assert [(c.index, c.bridged) for c in report.segments] == [(0, False), (1, True), (2, False), (3, True)] == [
        (k, k in (1, n - 1)) for k in range(n)]
    for check in report.segments:
        assert check.work_digest == "0x" + honest.work_digests[check.index + 1].hex()
        # boundary N comes from the committed result, which carries no seal
        assert check.checks.get("seal") == (None if check.index == n - 1 else "ok")


def test_an_end_seal_over_losses_the_replay_does_not_compute_is_fraud_in_the_same_class(honest):
    """Honest states, but the seal of segment 1 commits to made-up losses: only the seal shows it."""
    digests = list(honest.work_digests)
    digests[2] = work_digest([1.0, 2.0])
    liar = dataclasses.replace(honest, work_digests=digests)
    assert liar.opened(1).end_seal == seal(liar.job_id, 2, digests[2])
    report = audit_job(liar.audit_job([0, 1]), NO_ENERGY, fetch=liar.fetch)
    assert report.verdict is Verdict.FRAUD
    ok, bad = report.segments
    assert ok.checks["seal"] == "ok" and bad.checks["comparison"] == "ok"
    assert bad.checks["seal"].startswith("fraud: seal mismatch") and "claimed losses" in bad.reasons[0]
    # another class cannot reproduce the digests: no seal check, the tolerance rule alone
    other = audit_job(liar.audit_job([1], provider_class=OTHER_CLASS), NO_ENERGY, fetch=liar.fetch)
    assert "seal" not in other.segments[0].checks and not other.segments[0].same_class


class PidRecordingFetch:
    """A picklable fetch (like the daemon's RetryingFetch) that records which process called it."""

    def __init__(self, store_root, log_dir) -> None:
        self.store_root, self.log_dir = str(store_root), str(log_dir)

    def __call__(self, result_uri, h):
        import os
        from pathlib import Path

        from greenproof.store import ArtifactStore

        (Path(self.log_dir) / f"{os.getpid()}-{h.hex()[:8]}").touch()
        return ArtifactStore(self.store_root).get(h)


def test_max_parallel_is_honoured_when_the_daemon_passes_its_own_fetch(honest, tmp_path):
    """The daemon always passes a fetch; --max-parallel must still replay in worker processes."""
    import os

    from greenproof.store import ArtifactStore

    store = ArtifactStore(tmp_path / "artifacts")
    for state in honest.states.values():
        store.put(state)
    calls = tmp_path / "calls"
    calls.mkdir()
    fetch = PidRecordingFetch(tmp_path / "artifacts", calls)
    # the triangle check reads the boundaries in this process: only the replays are parallel
    report = audit_job(honest.audit_job([1, 3]), dataclasses.replace(NO_ENERGY, max_parallel=2,
                                                                     threads_per_replay=1, check_final=False,
                                                                     check_triangle=False), fetch=fetch)
    assert report.verdict is Verdict.OK
    pids = {int(p.name.split("-")[0]) for p in calls.iterdir()}
    assert pids and os.getpid() not in pids
