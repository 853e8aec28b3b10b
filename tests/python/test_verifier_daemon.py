"""The verifier daemon against an in-memory market and court and real local artifact
servers: audits that check everything and cannot be starved, votes only from seats,
with proof of replay.

Stories:

* only seated verifiers vote: a round it was not drawn for is not audited; two
  seats of one round are one vote whose digests prove the replay, and after the
  decision every seat of the case is settled and the reward withdrawn;
* a round without a majority draws another: the verifier votes again there (a
  new salt, the same digests) and settles the seats of both rounds;
* a replay in another determinism class cannot prove the replay: no ok vote;
* an end seal over losses the replay does not compute is a fraud vote;
* a commit whose receipt was lost is found on chain after a restart and revealed
  with the salt and digests journaled before it was sent;

* a provider whose server drips one byte every 0.2 s, or accepts and never
  answers, gets a fraud vote committed before the commit window closes;
* a job whose spec cannot be read, and one whose events cannot be found, sit
  beside a cheater: the daemon keeps going, the cheater gets its fraud vote, the
  unreadable jobs no vote and a logged reason (then an abstention once no time is left);
* an audit stuck in a replay does not hold back another job's reveal;
* a dataset the requester removed: no vote when the provider does not serve it
  either, an honest audit when it does;
* a daemon restarted in the middle of an audit does not check its finished
  segments again.

Limits are scaled down (commit windows of seconds, two fetch attempts 50 ms
apart); time is only ever bounded from above. Chain time is the fake's: a
:class:`LiveClock` where the budget is wall time (fetch deadlines), else a
:class:`FixedClock` the test moves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.server
import io
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fake_gateway import MARKET, VERIFIER, FakeMarket, FixedClock, LiveClock
from local_http import Route, send

import greenproof.data
from greenproof.adversaries.simulate import SimulatedRun, simulate_run
from greenproof.chain.errors import ChainError
from greenproof.chain.models import JobAccepted, JobPosted, JobState, SeatStatus, SegmentOpened
from greenproof.data import dataset_cache_path
from greenproof.merkle import seal, work_digest
from greenproof.spec import parse_spec
from greenproof.store import checkpoint_bytes
from greenproof.uri import FetchLimits, FetchNotFound, FetchTooLarge
from verifier.audit import AuditConfig, AuditJob, Fetch, audit_job
from verifier.daemon import Verifier, VerifierConfig, VerifierError
from verifier.evidence import AuditReport, Verdict
from verifier.fetching import Budget, FetchPolicy, fetch_file
from verifier.votes import JobStage, SeatStage

pytestmark = pytest.mark.usefixtures("one_thread")

CHAIN_ID = 31337
BOUND_S = 60.0  # an upper bound on anything the daemon waits for; not a speed test


# ----------------------------------------------------------------------------- artifact servers


def body(raw: bytes) -> Route:
    return lambda h: send(h, raw)


def not_found(h: http.server.BaseHTTPRequestHandler) -> None:
    send(h, b"no such thing", status=404)


def dripper(stop: threading.Event) -> Route:
    """200, no length, then one byte every 0.2 s for ever."""

    def route(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Connection", "close")
        h.end_headers()
        while not stop.wait(0.2):
            h.wfile.write(b"x")
            h.wfile.flush()

    return route


def silent(stop: threading.Event) -> Route:
    """Accepts the request and never answers."""
    return lambda h: stop.wait()


def checkpoints(run: SimulatedRun) -> Route:
    """An honest provider: ``…/{state hash hex}`` is that checkpoint."""

    def route(h: http.server.BaseHTTPRequestHandler) -> None:
        name = h.path.rsplit("/", 1)[-1]
        state = next((s for k, s in run.states.items() if k.hex() == name), None)
        send(h, checkpoint_bytes(state)) if state is not None else not_found(h)

    return route


# ----------------------------------------------------------------------------- the scene


def tiny_spec(**over):
    base = {"task": "mlp", "model": {"hidden": 16, "depth": 1, "dropout": 0.1},
            "dataset": {"uri": "builtin://digits"}, "batch_size": 32, "total_steps": 8,
            "segment_steps": 2, "seed": 5}
    base.update(over)
    return parse_spec(base)


@pytest.fixture(scope="module")
def honest(one_thread) -> SimulatedRun:
    return simulate_run(tiny_spec(), measure_energy=False)


@pytest.fixture(autouse=True)
def quiet_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENPROOF_ENERGY_SOURCE", "fake")
    monkeypatch.setenv("GREENPROOF_CACHE", str(tmp_path / "cache"))


def quiet_audit(job: AuditJob, config: AuditConfig, fetch: Fetch) -> AuditReport:
    """The real decision, without measuring the replay's energy."""
    return audit_job(job, dataclasses.replace(config, measure_energy=False), fetch)


def recording_verifier(market: FakeMarket, tmp_path: Path, daemons: list) -> tuple[Verifier, list[int]]:
    """A verifier daemon on ``market`` whose audit records, in order, the segments it replays."""
    replays: list[int] = []

    def audit(job: AuditJob, config: AuditConfig, fetch: Fetch) -> AuditReport:
        replays.extend(s.index for s in job.opened)
        return quiet_audit(job, config, fetch)

    daemon = Verifier(market, settings(tmp_path), audit=audit)  # type: ignore[arg-type]
    daemons.append(daemon)
    return daemon, replays


def settings(tmp_path: Path, **over) -> VerifierConfig:
    base = {"data_dir": tmp_path / "verifier", "poll_s": 0.05, "progress": False, "fetch_attempts": 2,
            "fetch_backoff_s": 0.05, "commit_margin_s": 3.0, "retry_s": 0.1, "retry_max_s": 0.5}
    return VerifierConfig(**{**base, **over})


def post(market: FakeMarket, job_id: int, run: SimulatedRun, result_uri: str, indices: list[int],
         **kw) -> None:
    """``job_id`` trained as ``run`` enters voting, its checkpoints served at ``result_uri``
    (its seals are the job's: a seal names the job it belongs to)."""
    kw.setdefault("spec_uri", run.spec.to_data_uri())
    kw.setdefault("move_total", run.moves[-1])
    run = dataclasses.replace(run, job_id=job_id)
    market.voting_job(job_id, spec_hash=run.spec.spec_hash(), num_segments=run.spec.num_segments,
                      result_uri=result_uri, provider_class=run.provider_class,
                      segments=[run.opened(i) for i in sorted(set(indices))], indices=indices,
                      final_state_hash=run.hashes[-1], **kw)


def drive(daemon: Verifier, until: Callable[[], bool], what: str) -> None:
    """Tick the daemon until ``until()`` holds (within BOUND_S)."""
    deadline = time.monotonic() + BOUND_S
    while not until():
        assert time.monotonic() < deadline, f"not within {BOUND_S:.0f} s: {what}"
        daemon.tick()
        time.sleep(0.05)


def committed(market: FakeMarket, job_id: int) -> bool:
    """Our seat in the case's current round holds a commitment."""
    return market.seat_of(job_id, market.case_of(job_id).round, VERIFIER).committed


def seat_stage(daemon: Verifier, job_id: int, rnd: int = 0) -> SeatStage | None:
    seat = daemon.journal.seat(CHAIN_ID, MARKET, job_id, rnd, VERIFIER)
    return None if seat is None else seat.stage


def voted_fraud(daemon: Verifier, job_id: int, rnd: int = 0) -> bool:
    seat = daemon.journal.seat(CHAIN_ID, MARKET, job_id, rnd, VERIFIER)
    assert seat is not None and seat.fraud is not None
    return seat.fraud


def report_of(daemon: Verifier, job_id: int) -> AuditReport:
    report = daemon.load_report(job_id)
    assert report is not None
    return report


@pytest.fixture
def daemons() -> Iterator[list[Verifier]]:
    made: list[Verifier] = []
    yield made
    for d in made:
        d.stop()
        d.journal.close()


# ----------------------------------------------------------------------------- stories


@pytest.mark.timeout(180)
def test_drip_and_silent_servers_get_a_fraud_vote_before_the_commit_window_closes(
        honest, serve, stop, tmp_path, daemons):
    clock = LiveClock()
    market = FakeMarket(clock, commit_window=12, reveal_window=12)  # the budget: 12 - 3 = 9 s
    server = serve({"/drip/": dripper(stop), "/silent/": silent(stop)}, prefix=True)
    started = time.monotonic()
    post(market, 1, honest, f"{server.url}/drip/1", [1, 2])
    post(market, 2, honest, f"{server.url}/silent/2", [1, 2])
    commit_end = market.jobs[1]["voting_start"] + 12
    daemon = Verifier(market, settings(tmp_path), audit=quiet_audit)  # type: ignore[arg-type]
    daemons.append(daemon)

    decided: dict[int, float] = {}

    def both_committed() -> bool:
        for job_id in (1, 2):
            if job_id not in decided and committed(market, job_id):
                decided[job_id] = time.monotonic() - started
        return len(decided) == 2

    drive(daemon, both_committed, "fraud votes on the drip and silent servers")
    for job_id in (1, 2):
        assert market.committed_at[job_id] < commit_end  # the fake reverts a late commit anyway
        assert voted_fraud(daemon, job_id)
        report = report_of(daemon, job_id)
        assert report.verdict is Verdict.FRAUD
        assert all("not available" in r for r in report.reasons), report.reasons
    logging.getLogger(__name__).warning("time to a fraud verdict: drip %.1f s, silent %.1f s (budget 9 s)",
                                        decided[1], decided[2])


@pytest.mark.timeout(180)
def test_an_unreadable_job_is_skipped_with_its_reason_and_the_cheater_still_gets_its_vote(
        honest, serve, tmp_path, daemons, caplog):
    caplog.set_level(logging.WARNING)
    clock = FixedClock()
    market = FakeMarket(clock, commit_window=60, reveal_window=60)
    server = serve({"/spec.yaml": not_found}, prefix=True)  # and 404 for every checkpoint
    post(market, 1, honest, f"{server.url}/artifacts/1", [1, 2], spec_uri=f"{server.url}/spec.yaml")
    post(market, 2, honest, f"{server.url}/artifacts/2", [1, 2])  # withholds its checkpoints
    post(market, 3, honest, f"{server.url}/artifacts/3", [1, 2],
         events=[JobPosted, JobAccepted, SegmentOpened])  # its ResultCommitted cannot be found
    daemon = Verifier(market, settings(tmp_path), audit=quiet_audit)  # type: ignore[arg-type]
    daemons.append(daemon)

    drive(daemon, lambda: committed(market, 2), "the withholding provider's fraud vote")
    assert voted_fraud(daemon, 2)
    assert "not available" in report_of(daemon, 2).reasons[0]
    drive(daemon, lambda: "spec cannot be had" in caplog.text and "no ResultCommitted" in caplog.text,
          "the unreadable jobs' reasons in the log")
    assert not committed(market, 1) and not committed(market, 3)
    assert ("commit_vote", 1) not in market.sent and ("commit_vote", 3) not in market.sent

    # once no time is left before the commit deadline, the unreadable job is an abstention
    clock.t += 58
    drive(daemon, lambda: seat_stage(daemon, 1) is SeatStage.ABSTAINED, "the unreadable spec's abstention")
    assert not committed(market, 1)
    assert report_of(daemon, 1).verdict is Verdict.ABSTAIN
    assert "spec cannot be had" in " ".join(report_of(daemon, 1).abstentions)


@pytest.mark.timeout(180)
def test_a_reveal_goes_out_while_another_jobs_audit_is_stuck(honest, serve, tmp_path, daemons):
    clock = FixedClock()
    market = FakeMarket(clock, commit_window=60, reveal_window=60)
    server = serve({"/artifacts/": checkpoints(honest)}, prefix=True)
    stuck, release = threading.Event(), threading.Event()

    def audit(job: AuditJob, config: AuditConfig, fetch: Fetch) -> AuditReport:
        if job.job_id == 2:
            stuck.set()
            release.wait(BOUND_S)
        return quiet_audit(job, config, fetch)

    post(market, 1, honest, f"{server.url}/artifacts/1", [1, 2])
    daemon = Verifier(market, settings(tmp_path), audit=audit)  # type: ignore[arg-type]
    daemons.append(daemon)
    try:
        drive(daemon, lambda: committed(market, 1), "job 1's vote")
        assert not voted_fraud(daemon, 1)

        clock.t += 30
        post(market, 2, honest, f"{server.url}/artifacts/2", [1, 2])
        drive(daemon, stuck.is_set, "job 2's audit to start")
        clock.t += 30  # job 1 reveals now; job 2 may still commit for 30 s
        daemon.tick()
        assert market.seat_of(1, 0, VERIFIER).status is SeatStatus.REVEALED_OK  # the digests proved the replay
        assert not release.is_set() and not committed(market, 2)
    finally:
        release.set()
    drive(daemon, lambda: committed(market, 2), "job 2's vote once its audit is released")
    assert not voted_fraud(daemon, 2)


@pytest.mark.timeout(180)
def test_replays_unfinished_by_the_deadline_are_an_abstention_and_the_late_result_is_ignored(
        honest, serve, tmp_path, daemons, caplog):
    caplog.set_level(logging.WARNING)
    clock = LiveClock()
    market = FakeMarket(clock, commit_window=8, reveal_window=8)  # the budget: 8 - 2 = 6 s
    server = serve({"/artifacts/": checkpoints(honest)}, prefix=True)
    stuck, release = threading.Event(), threading.Event()

    def audit(job: AuditJob, config: AuditConfig, fetch: Fetch) -> AuditReport:
        stuck.set()
        release.wait(BOUND_S)  # a replay that takes longer than the budget
        return quiet_audit(job, config, fetch)

    post(market, 1, honest, f"{server.url}/artifacts/1", [1, 2])
    daemon = Verifier(market, settings(tmp_path, commit_margin_s=2.0), audit=audit)  # type: ignore[arg-type]
    daemons.append(daemon)
    try:
        drive(daemon, lambda: seat_stage(daemon, 1) is SeatStage.ABSTAINED, "the decision at the deadline")
        assert stuck.is_set() and not release.is_set()
    finally:
        release.set()
    report = report_of(daemon, 1)
    assert report.verdict is Verdict.ABSTAIN and not report.reasons
    assert "did not finish its replays" in report.abstentions[0]
    assert "job 1: abstaining" in caplog.text
    for _ in range(10):  # the audit's late (ok) result changes nothing
        daemon.tick()
        time.sleep(0.05)
    assert not committed(market, 1) and ("commit_vote", 1) not in market.sent


@pytest.mark.timeout(180)
def test_replays_at_once_never_exceed_max_parallel_across_jobs(honest, serve, tmp_path, daemons):
    clock = FixedClock()
    market = FakeMarket(clock, commit_window=600, reveal_window=60)
    server = serve({"/artifacts/": checkpoints(honest)}, prefix=True)
    lock = threading.Lock()
    running, calls = [0], []

    def audit(job: AuditJob, config: AuditConfig, fetch: Fetch) -> AuditReport:
        with lock:
            running[0] += 1
            calls.append((len(job.opened), running[0]))
        time.sleep(0.2)  # let another job's audit try to overlap
        try:  # the segments of one call replay serially here (no worker processes in a unit test)
            return quiet_audit(job, dataclasses.replace(config, max_parallel=1), fetch)
        finally:
            with lock:
                running[0] -= 1

    for job_id in (1, 2, 3):
        post(market, job_id, honest, f"{server.url}/artifacts/{job_id}", [0, 1, 2, 3])
    daemon = Verifier(market, settings(tmp_path, max_parallel=2), audit=audit)  # type: ignore[arg-type]
    daemons.append(daemon)
    drive(daemon, lambda: all(committed(market, j) for j in (1, 2, 3)), "the three votes")
    assert sorted(n for n, _ in calls) == [2] * 6  # each call: max_parallel segments
    assert max(at_once for _, at_once in calls) == 1  # and one call at a time


def npz(n: int = 96, seed: int = 3) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    np.savez(buf, x=rng.standard_normal((n, 1, 4, 4)).astype(np.float32), y=rng.integers(0, 4, n))
    return buf.getvalue()


@pytest.mark.timeout(180)
def test_a_removed_dataset_is_an_abstention_unless_the_provider_serves_it(
        serve, tmp_path, daemons, monkeypatch, caplog):
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(greenproof.data, "_cache", {})
    raw = npz()
    sha = hashlib.sha256(raw).hexdigest()
    requester = serve({"/data/set.npz": body(raw)}, prefix=True)
    spec = tiny_spec(dataset={"uri": f"{requester.url}/data/set.npz", "sha256": sha}, batch_size=16)
    run = simulate_run(spec, measure_energy=False)  # an honest provider trained with it
    requester.routes["/data/set.npz"] = not_found  # then the requester removed it
    dataset_cache_path(sha).unlink()
    greenproof.data._cache.clear()

    clock = FixedClock()
    market = FakeMarket(clock, commit_window=60, reveal_window=60)
    provider = serve({"/artifacts/": checkpoints(run)}, prefix=True)  # without the dataset
    daemon = Verifier(market, settings(tmp_path), audit=quiet_audit)  # type: ignore[arg-type]
    daemons.append(daemon)
    post(market, 1, run, f"{provider.url}/artifacts/1", [1, 2])
    drive(daemon, lambda: seat_stage(daemon, 1) is SeatStage.ABSTAINED, "the abstention on job 1")
    assert not committed(market, 1)
    report = report_of(daemon, 1)
    assert report.verdict is Verdict.ABSTAIN and not report.reasons
    assert "dataset cannot be had" in report.abstentions[0]
    assert "job 1: abstaining" in caplog.text

    provider.routes["/artifacts/2/dataset"] = body(raw)  # a provider serving it beside its checkpoints
    post(market, 2, run, f"{provider.url}/artifacts/2", [1, 2])
    drive(daemon, lambda: committed(market, 2), "the vote on job 2")
    assert not voted_fraud(daemon, 2)
    assert report_of(daemon, 2).verdict is Verdict.OK
    assert "/artifacts/2/dataset" in provider.hits


class Counting:
    """The real audit, counting the calls per segment; ``block_at`` stands the daemon still
    (as if killed) once that segment's audit starts."""

    def __init__(self, block_at: int | None = None) -> None:
        self.calls: Counter[int] = Counter()
        self.block_at = block_at
        self.blocked = threading.Event()
        self.killed = threading.Event()

    def __call__(self, job: AuditJob, config: AuditConfig, fetch: Fetch) -> AuditReport:
        indices = [s.index for s in job.opened]
        self.calls.update(indices)
        if self.block_at in indices:
            self.blocked.set()
            self.killed.wait(BOUND_S)
            raise RuntimeError("killed")
        return quiet_audit(job, config, fetch)


@pytest.mark.timeout(180)
def test_a_restarted_daemon_does_not_check_finished_segments_again(honest, serve, tmp_path, daemons):
    clock = FixedClock()
    market = FakeMarket(clock, commit_window=600, reveal_window=60)
    server = serve({"/artifacts/": checkpoints(honest)}, prefix=True)
    post(market, 1, honest, f"{server.url}/artifacts/1", [3, 0, 2, 1])
    first, second = Counting(block_at=2), Counting()
    try:
        daemon = Verifier(market, settings(tmp_path), audit=first)  # type: ignore[arg-type]
        daemons.append(daemon)
        drive(daemon, first.blocked.is_set, "the first daemon to reach segment 2")
        daemon.stop()  # killed in the middle of the audit

        restarted = Verifier(market, settings(tmp_path), audit=second)  # type: ignore[arg-type]
        daemons.append(restarted)
        drive(restarted, lambda: committed(market, 1), "the restarted daemon's vote")
    finally:
        first.killed.set()
    assert first.calls == Counter({0: 1, 1: 1, 2: 1})
    assert second.calls == Counter({2: 1, 3: 1})  # 0 and 1 come from the journal
    assert not voted_fraud(restarted, 1)
    report = report_of(restarted, 1)
    assert [s.index for s in report.segments] == [0, 1, 2, 3]
    assert report.verdict is Verdict.OK and report.final is not None and report.final.ok


def test_a_checkpoint_that_breaks_a_rule_is_not_tried_again_a_missing_one_is(serve, tmp_path):
    server = serve({"/big": lambda h: send(h, b"", length=10**6), "/gone": not_found}, prefix=True)
    limits, policy, budget = FetchLimits(max_bytes=1000, deadline_s=30), FetchPolicy(3, 0.01), Budget.of(30)
    with pytest.raises(FetchTooLarge):
        fetch_file(f"{server.url}/big", tmp_path / "big", limits, policy, budget)
    with pytest.raises(FetchNotFound, match="after 3 tries"):
        fetch_file(f"{server.url}/gone", tmp_path / "gone", limits, policy, budget)
    assert server.hits == ["/big", "/gone", "/gone", "/gone"]


# ----------------------------------------------------------------------------- the court

OTHER_A, OTHER_B = "0x" + "aa" * 20, "0x" + "bb" * 20


@pytest.mark.timeout(180)
def test_only_seated_rounds_are_voted_two_seats_are_one_proven_vote_and_every_seat_is_settled(
        honest, serve, tmp_path, daemons):
    clock = FixedClock()
    market = FakeMarket(clock, commit_window=60, reveal_window=60)
    server = serve({"/artifacts/": checkpoints(honest)}, prefix=True)
    post(market, 1, honest, f"{server.url}/artifacts/1", [2, 0, 2], voters=[OTHER_A, OTHER_B, OTHER_A])
    post(market, 2, honest, f"{server.url}/artifacts/2", [3, 1, 1], voters=[VERIFIER, OTHER_A, VERIFIER])
    audited: list[int] = []

    def audit(job: AuditJob, config: AuditConfig, fetch: Fetch) -> AuditReport:
        audited.append(job.job_id)
        return quiet_audit(job, config, fetch)

    daemon = Verifier(market, settings(tmp_path), audit=audit)  # type: ignore[arg-type]
    daemons.append(daemon)
    drive(daemon, lambda: committed(market, 2), "the vote of our two seats on job 2")
    assert daemon.journal.job_stage(CHAIN_ID, MARKET, 1) is None  # not seated: not followed
    seat = daemon.journal.seat(CHAIN_ID, MARKET, 2, 0, VERIFIER)
    assert seat is not None and seat.seats == 2 and seat.fraud is False
    # the digests of the distinct audited segments, ascending: what the provider's seals commit to
    assert seat.digests == [honest.work_digests[2], honest.work_digests[4]]
    as_job_2 = dataclasses.replace(honest, job_id=2)
    assert [seal(2, k + 1, d) for k, d in zip([1, 3], seat.digests, strict=True)] == \
        [as_job_2.opened(1).end_seal, as_job_2.opened(3).end_seal]

    clock.t += 60
    market.cast(2, OTHER_A, SeatStatus.REVEALED_FRAUD)  # outvoted by our two seats
    drive(daemon, lambda: market.seat_of(2, 0, VERIFIER).status is SeatStatus.REVEALED_OK, "our reveal")
    assert market.case_of(2).ok_seats == 2
    clock.t += 60
    drive(daemon, lambda: daemon.journal.job_stage(CHAIN_ID, MARKET, 2) is JobStage.DONE, "job 2 settled")
    assert market.state(2) is JobState.PAID
    assert all(market.seat_of(2, 0, v).settled for v in (VERIFIER, OTHER_A))  # others' seats too
    assert ("withdraw", 0) in market.sent and market.owed == 0
    assert set(audited) == {2} and ("commit_vote", 1) not in market.sent
    assert {t.action for t in report_of(daemon, 2).transactions} >= {"commit_vote", "reveal_vote", "finalize",
                                                                       "settle_seat"}


@pytest.mark.timeout(180)
def test_a_round_without_a_majority_draws_another_and_the_verifier_votes_there_too(
        honest, serve, tmp_path, daemons):
    clock = FixedClock()
    market = FakeMarket(clock, commit_window=60, reveal_window=60)
    server = serve({"/artifacts/": checkpoints(honest)}, prefix=True)
    market.next_rounds[1] = [[OTHER_A, VERIFIER, OTHER_B]]
    post(market, 1, honest, f"{server.url}/artifacts/1", [1, 2], voters=[OTHER_A, VERIFIER, OTHER_B])
    daemon = Verifier(market, settings(tmp_path), audit=quiet_audit)  # type: ignore[arg-type]
    daemons.append(daemon)
    drive(daemon, lambda: committed(market, 1), "round 0's vote")
    clock.t += 60
    drive(daemon, lambda: seat_stage(daemon, 1, 0) is SeatStage.REVEALED, "round 0's reveal")
    clock.t += 60  # the others never voted: 1 of 3 seats is no majority
    drive(daemon, lambda: market.case_of(1).round == 1 and committed(market, 1), "round 1's vote")
    first, second = (daemon.journal.seat(CHAIN_ID, MARKET, 1, r, VERIFIER) for r in (0, 1))
    assert first is not None and second is not None
    assert second.salt != first.salt and second.digests == first.digests
    market.cast(1, OTHER_A, SeatStatus.REVEALED_OK)
    clock.t += 60
    drive(daemon, lambda: seat_stage(daemon, 1, 1) is SeatStage.REVEALED, "round 1's reveal")
    clock.t += 60
    drive(daemon, lambda: daemon.journal.job_stage(CHAIN_ID, MARKET, 1) is JobStage.DONE, "the case settled")
    assert market.state(1) is JobState.PAID and market.case_of(1).ok_seats == 2
    assert all(market.seat_of(1, r, v).settled for r in (0, 1) for v in (VERIFIER, OTHER_A, OTHER_B))
    assert seat_stage(daemon, 1, 0) is seat_stage(daemon, 1, 1) is SeatStage.SETTLED


@pytest.mark.timeout(180)
def test_a_replay_in_another_class_cannot_prove_it_and_casts_no_ok_vote(honest, serve, tmp_path, daemons):
    clock = FixedClock()
    market = FakeMarket(clock, commit_window=60, reveal_window=60, max_rounds=1)
    server = serve({"/artifacts/": checkpoints(honest)}, prefix=True)
    other = dataclasses.replace(honest, provider_class=b"\x22" * 32)
    post(market, 1, other, f"{server.url}/artifacts/1", [1, 2])
    daemon = Verifier(market, settings(tmp_path), audit=quiet_audit)  # type: ignore[arg-type]
    daemons.append(daemon)
    drive(daemon, lambda: seat_stage(daemon, 1) is SeatStage.ABSTAINED, "the abstention")
    assert report_of(daemon, 1).verdict is Verdict.OK  # within tolerance, but no proof of replay
    seat = daemon.journal.seat(CHAIN_ID, MARKET, 1, 0, VERIFIER)
    assert seat is not None and "not the provider's" in (seat.note or "")
    assert not committed(market, 1) and ("commit_vote", 1) not in market.sent
    clock.t += 120
    drive(daemon, lambda: daemon.journal.job_stage(CHAIN_ID, MARKET, 1) is JobStage.DONE, "the settlement")
    assert market.state(1) is JobState.PAID  # no majority in the only round: the provider is paid
    assert market.seat_of(1, 0, VERIFIER).settled


@pytest.mark.timeout(180)
def test_an_end_seal_over_losses_the_replay_does_not_compute_gets_a_fraud_vote(
        honest, serve, tmp_path, daemons):
    clock = FixedClock()
    market = FakeMarket(clock, commit_window=60, reveal_window=60)
    server = serve({"/artifacts/": checkpoints(honest)}, prefix=True)
    made_up = list(honest.work_digests)
    made_up[3] = work_digest([0.5, 0.25])  # segment 2's claimed losses; its states are honest
    liar = dataclasses.replace(honest, work_digests=made_up)
    post(market, 1, liar, f"{server.url}/artifacts/1", [1, 2])
    daemon = Verifier(market, settings(tmp_path), audit=quiet_audit)  # type: ignore[arg-type]
    daemons.append(daemon)
    drive(daemon, lambda: committed(market, 1), "the fraud vote")
    assert voted_fraud(daemon, 1)
    seat = daemon.journal.seat(CHAIN_ID, MARKET, 1, 0, VERIFIER)
    assert seat is not None and seat.digests == []  # a fraud vote needs no proof
    report = report_of(daemon, 1)
    (bad,) = [s for s in report.segments if s.verdict is Verdict.FRAUD]
    assert bad.index == 2 and bad.checks["seal"].startswith("fraud: seal mismatch")
    assert bad.checks["comparison"] == "ok"  # the states are the honest ones
    clock.t += 60
    drive(daemon, lambda: market.seat_of(1, 0, VERIFIER).status is SeatStatus.REVEALED_FRAUD, "the reveal")


@pytest.mark.timeout(180)
def test_a_jump_claimed_nowhere_gets_a_fraud_vote_from_the_triangle_before_any_replay(serve, tmp_path, daemons):
    """A provider forged boundary 2 and claimed no movement for it; segments 0 and 3 are drawn
    (both replay exactly), and the movement samples find an honest-looking segment: the known
    boundaries 1 and 3 are farther apart than the movement claimed between them."""
    from greenproof.adversaries.forgers import make_forger

    clock = FixedClock()
    market = FakeMarket(clock, commit_window=60, reveal_window=60)
    forger = simulate_run(tiny_spec(), cheat=make_forger("forge_collapse_nowhere", at=2), measure_energy=False)
    server = serve({"/artifacts/": checkpoints(forger)}, prefix=True)
    target = forger.moves[3]  # segment 3's bracket holds it
    post(market, 1, forger, f"{server.url}/artifacts/1", [0, 3], targets=[target])
    daemon, replays = recording_verifier(market, tmp_path, daemons)
    drive(daemon, lambda: committed(market, 1), "the fraud vote")
    assert voted_fraud(daemon, 1) and replays == []  # decided before any replay
    report = report_of(daemon, 1)
    assert report.audit_indices == [0, 3, 3] and report.movement_draws == [target]
    assert report.triangle is not None and sorted(report.triangle.known) == [0, 1, 3, 4]
    [bad] = [p for p in report.triangle.pairs if not p.ok]
    assert (bad.a, bad.b) == (1, 3) and bad.distance > bad.claimed + bad.slack
    assert any(r.startswith("triangle: boundaries 1 and 3 are") for r in report.reasons)


def test_a_forged_first_boundary_is_found_by_replaying_the_bridged_segment_0(serve, tmp_path, daemons):
    """A provider collapsed the weights at boundary 1, claimed the jump on segment 0 and trained
    honestly from there; the draw opened segment 1 only, which replays exactly. Boundaries 0
    (the spec's) and 1 (segment 1's opening) are both known, so the verifier replays segment 0
    too, after the drawn one, and votes fraud."""
    from greenproof.adversaries.forgers import make_forger

    clock = FixedClock()
    market = FakeMarket(clock, commit_window=60, reveal_window=60)
    forger = simulate_run(tiny_spec(), cheat=make_forger("forge_collapse", at=1), measure_energy=False)
    server = serve({"/artifacts/": checkpoints(forger)}, prefix=True)
    post(market, 1, forger, f"{server.url}/artifacts/1", [1])
    daemon, replays = recording_verifier(market, tmp_path, daemons)
    drive(daemon, lambda: committed(market, 1), "the fraud vote")
    assert voted_fraud(daemon, 1) and replays == [1, 0]
    report = report_of(daemon, 1)
    drawn, bridged = report.segments[1], report.segments[0]
    assert (drawn.index, drawn.bridged, drawn.verdict) == (1, False, Verdict.OK)
    assert (bridged.index, bridged.bridged, bridged.verdict) == (0, True, Verdict.FRAUD)
    assert bridged.checks["comparison"].startswith("fraud")


@pytest.mark.timeout(180)
def test_a_commit_whose_receipt_was_lost_is_revealed_after_a_restart_with_the_journaled_digests(
        honest, serve, tmp_path, daemons):
    clock = FixedClock()
    market = FakeMarket(clock, commit_window=60, reveal_window=60)
    server = serve({"/artifacts/": checkpoints(honest)}, prefix=True)
    post(market, 1, honest, f"{server.url}/artifacts/1", [0, 3])
    sent = market.commit_vote

    def lost_receipt(job_id: int, commitment: bytes) -> dict:
        sent(job_id, commitment)
        raise ChainError("chain: commit vote: no receipt after 120 s")

    market.commit_vote = lost_receipt  # type: ignore[method-assign]
    daemon = Verifier(market, settings(tmp_path), audit=quiet_audit)  # type: ignore[arg-type]
    daemons.append(daemon)
    deadline = time.monotonic() + BOUND_S
    while not committed(market, 1):  # the daemon's loop logs a chain error and goes on
        assert time.monotonic() < deadline, "the commit that landed"
        with contextlib.suppress(ChainError):
            daemon.tick()
        time.sleep(0.05)
    assert seat_stage(daemon, 1) is SeatStage.PREPARED
    daemon.stop()
    daemon.journal.close()
    daemons.remove(daemon)

    market.commit_vote = sent  # type: ignore[method-assign]
    restarted = Verifier(market, settings(tmp_path), audit=quiet_audit)  # type: ignore[arg-type]
    daemons.append(restarted)
    clock.t += 60
    drive(restarted, lambda: seat_stage(restarted, 1) is SeatStage.REVEALED, "the reveal after the restart")
    assert market.seat_of(1, 0, VERIFIER).status is SeatStatus.REVEALED_OK
    assert market.tries("commit_vote", 1) == 1


def test_a_provider_that_never_opens_is_slashed_and_the_seats_it_held_busy_are_freed(tmp_path, daemons):
    clock = FixedClock()
    market = FakeMarket(clock)
    market.auditing_job(1, voters=[VERIFIER, OTHER_A, VERIFIER])
    daemon = Verifier(market, settings(tmp_path), audit=quiet_audit)  # type: ignore[arg-type]
    daemons.append(daemon)
    daemon.tick()
    seat = daemon.journal.seat(CHAIN_ID, MARKET, 1, 0, VERIFIER)
    assert seat is not None and seat.seats == 2 and ("slash_unopened", 1) not in market.sent
    clock.t += 120  # the open window passed
    drive(daemon, lambda: daemon.journal.job_stage(CHAIN_ID, MARKET, 1) is JobStage.DONE, "the settlement")
    assert market.state(1) is JobState.SLASHED and market.case_of(1).outcome.value == "DROPPED"
    assert market.seat_of(1, 0, VERIFIER).settled and market.seat_of(1, 0, OTHER_A).settled
    assert ("commit_vote", 1) not in market.sent


def test_a_reset_chain_with_the_same_addresses_is_refused_loudly(tmp_path, daemons):
    """anvil restarted and the contracts redeployed at the same addresses: the journal's
    cursor and seats belong to the old chain, so the daemon refuses to start on it."""
    market = FakeMarket(FixedClock(1_000))
    daemons.append(Verifier(market, settings(tmp_path), audit=quiet_audit))  # type: ignore[arg-type]
    daemons.append(Verifier(market, settings(tmp_path), audit=quiet_audit))  # same chain: fine
    market.genesis = "genesis-2"
    with pytest.raises(VerifierError, match="the chain was reset or redeployed"):
        Verifier(market, settings(tmp_path), audit=quiet_audit)  # type: ignore[arg-type]
