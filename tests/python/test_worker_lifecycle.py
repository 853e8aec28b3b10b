"""The worker's on-chain lifecycle against an in-memory market: one job's failure stays that job's.

Stories:

* a job whose ``commit_result`` reverts on every try does not hold back the
  other jobs: they are committed, audited, opened, finalized and paid in the
  same passes, while the failing job is logged with the revert reason and
  retried alone, after its own backoff;
* an audit of 25 distinct segments (more than the contract's MAX_OPENINGS per
  transaction) hands every opening to the gateway, which batches them, in
  ascending order and with both boundaries' seals and movements;
* the movement samples open the segments whose journaled brackets hold their
  targets (the market refuses an opening that satisfies no sample), and the
  commit posts the journaled total movement;
* a node that is away is everybody's problem: the pass stops and the chain
  loop backs off as a whole;
* a job whose boundaries were journaled without work digests (by a worker
  before seals) is never committed: no seal is guessed;
* a job trained by the real trainer journals the work digests a verifier's
  replay in the same class computes bit for bit, and its losses cannot be read
  from the artifact server or the dashboard's data until the job is final;
* a job cancelled or expired on chain frees its checkpoints like a paid one: all
  but its final state and the states a live job journaled, once.

Time is the test's: chain time is a :class:`FixedClock`, the backoff runs on a
counter the test advances; nothing sleeps.
"""

from __future__ import annotations

import logging
import sqlite3
import struct
import threading
from pathlib import Path

import pytest
from eth_utils import keccak
from fake_gateway import MAX_OPENINGS, PROVIDER, VOTE_WINDOWS, FakeGateway, FixedClock
from fastapi.testclient import TestClient

from greenproof.chain.errors import ChainError, TxError
from greenproof.chain.models import JobState
from greenproof.chain.retries import JobRetries
from greenproof.dashboard.rundata import RunDataStore
from greenproof.engine import run_segment
from greenproof.merkle import ZERO32, boundary0_seal, seal, seal_accumulator, work_digest
from greenproof.movement import metric_for
from greenproof.run import RunRecord
from greenproof.spec import JobSpec, parse_spec
from greenproof.store import ArtifactStore
from worker.config import WorkerConfig
from worker.journal import Journal, Phase
from worker.lifecycle import Lifecycle, LifecycleError, openings
from worker.records import RunRecords
from worker.server import JournalIndex, create_app
from worker.trainer import Throughput, Trainer


class Ticker:
    """The retries' monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class World:
    """A journal, the fake market and the lifecycle under test; ``passes(n)`` runs the chain loop's part."""

    def __init__(self, tmp_path: Path) -> None:
        self.clock = FixedClock()
        self.market = FakeGateway(self.clock)
        self.config = WorkerConfig(data_dir=tmp_path / "worker", device="cpu", energy_source="none")
        self.journal = Journal(self.config.journal_path)
        self.ticker = Ticker()
        self.retries = JobRetries(1.0, 30.0, clock=self.ticker)
        self.records = RunRecords(self.config.runs_dir)
        self.lifecycle = Lifecycle(self.market, self.journal, self.clock, self.retries,  # type: ignore[arg-type]
                                   result_base="http://worker.test", records=self.records)

    def accepted_job(self, job_id: int, segments: int, *, draws: list[int] | None = None,
                     targets: list[int] | None = None, spec: JobSpec | None = None) -> None:
        """A job accepted by us on chain and journaled as QUEUED (``spec``: the one it trains);
        its audit will draw the uniform indices ``draws`` and the movement ``targets``."""
        self.market.add_job(job_id, num_segments=segments, provider=PROVIDER, state=JobState.ACCEPTED,
                            audit_samples=len(draws or [0, 1]) + len(targets or []))
        self.market.draws[job_id] = draws if draws is not None else [0, segments - 1]
        self.market.targets[job_id] = list(targets or [])
        self.journal.begin_accept(
            job_id, spec_json=spec.canonical_json().decode() if spec else "{}",
            spec_hash=spec.spec_hash() if spec else b"\0" * 32, determinism_class=b"\1" * 32,
            deadline=self.clock.now() + 86_400, num_segments=segments, posted_block=1,
        )
        self.journal.set_phase(job_id, Phase.QUEUED)

    def trained_job(self, job_id: int, segments: int, *, draws: list[int] | None = None,
                    targets: list[int] | None = None) -> None:
        """A job accepted by us on chain with every boundary journaled (phase TRAINED)."""
        self.accepted_job(job_id, segments, draws=draws, targets=targets)
        for k in range(segments + 1):
            self.journal.record_boundary(job_id, k, boundary_hash(job_id, k), 10 * k, digest(job_id, k),
                                         movement(k))
        self.journal.set_phase(job_id, Phase.TRAINED)

    def trainer(self) -> Trainer:
        """The worker's trainer over this world's journal (trains when asked, on this thread)."""
        return Trainer(self.journal, ArtifactStore(self.config.store_dir), self.config, self.clock,  # type: ignore[arg-type]
                       Throughput(self.journal), stopping=threading.Event())

    def passes(self, n: int) -> None:
        """``n`` passes of the lifecycle, each on a new block (chain time moves only by hand)."""
        for _ in range(n):
            self.market.head += 1
            self.lifecycle.step(self.market.head)

    def vote_windows_pass(self) -> None:
        self.clock.t += VOTE_WINDOWS

    def phase(self, job_id: int) -> Phase:
        row = self.journal.job(job_id)
        assert row is not None
        return row.phase


def boundary_hash(job_id: int, k: int) -> bytes:
    return keccak(f"job {job_id} boundary {k}".encode())


def movement(k: int) -> int:
    """A made-up cumulative movement ``move_k``: segment ``k`` moves ``100 * (k + 1)`` units."""
    return 50 * k * (k + 1)


def digest(job_id: int, k: int) -> bytes:
    """A made-up work digest ``w_k`` (zero at boundary 0, as the protocol fixes it)."""
    return ZERO32 if k == 0 else keccak(f"job {job_id} losses {k}".encode())


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_a_job_whose_commit_keeps_reverting_does_not_hold_back_the_others(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    market = world.market
    for job_id in (1, 2, 3):
        world.trained_job(job_id, segments=4)
    market.reverts[(1, "commit_result")] = "market: commitment refused"

    with caplog.at_level(logging.INFO, logger="greenproof.worker"):
        world.passes(3)  # commit, draw, open
        world.vote_windows_pass()
        world.passes(2)  # finalize; close and withdraw

    # the two healthy jobs went all the way while job 1 kept failing
    for job_id in (2, 3):
        assert market.state(job_id) is JobState.PAID
        assert world.phase(job_id) is Phase.CLOSED
        assert [m for m, j in market.sent if j == job_id] == [
            "commit_result", "draw_audit", "open_segments", "finalize"]
    assert market.owed == 0 and market.tries("withdraw", 0) == 1
    # job 1: logged with the decoded reason, still ours to commit, and retried only on its own schedule
    assert "job 1: commit result failed: market: commitment refused" in caplog.text
    assert market.state(1) is JobState.ACCEPTED
    assert world.phase(1) is Phase.COMMITTING
    assert market.tries("commit_result", 1) == 1  # its backoff (1 s) has not run out

    world.ticker.t += 1.0  # the backoff passes
    world.passes(1)
    assert market.tries("commit_result", 1) == 2
    assert "failure 2" in caplog.text

    market.reverts.clear()  # whatever it was, it is over: the job goes on like the others
    world.ticker.t += 2.0
    world.passes(3)
    world.vote_windows_pass()
    world.passes(2)
    assert market.state(1) is JobState.PAID
    assert world.phase(1) is Phase.CLOSED
    assert world.retries.failure(1) is None


def test_every_audited_segment_is_handed_to_the_gateway_in_one_call(world: World) -> None:
    draws = [*range(0, 50, 2), 0, 2, 4, 6, 8, 10, 12]  # 32 draws, 25 distinct segments
    assert len(set(draws)) == 25 > MAX_OPENINGS
    world.trained_job(7, segments=50, draws=draws)

    world.passes(3)  # commit, draw, open

    assert world.market.state(7) is JobState.VOTING
    [(job_id, openings)] = world.market.open_calls
    assert job_id == 7
    assert [o.index for o in openings] == sorted(set(draws))  # strictly ascending, as JobMarket requires
    for o in openings:  # both leaves carry their seals (the fake market verified them against the root)
        assert (o.start_seal, o.end_seal) == (seal(7, o.index, digest(7, o.index)),
                                              seal(7, o.index + 1, digest(7, o.index + 1)))
        assert (o.start_move, o.end_move) == (movement(o.index), movement(o.index + 1))
    assert openings[0].start_seal == boundary0_seal(7)
    assert world.market.seal_acc[7] == seal_accumulator([o.end_seal for o in openings])
    assert world.journal.opened(7) == set(draws)
    assert world.phase(7) is Phase.AUDITING  # VOTING on the next pass, which finalizes


def test_segments_opened_before_a_crash_are_not_sent_again(world: World) -> None:
    draws = list(range(0, 40, 2))
    world.trained_job(8, segments=40, draws=draws)
    world.passes(2)  # commit, draw
    assert world.market.state(8) is JobState.AUDITING
    # a first batch landed, the worker died before journaling it
    row = world.journal.job(8)
    assert row is not None
    world.market.open_segments(8, openings(row, world.journal.boundaries(8), draws[:16]))
    world.market.open_calls.clear()

    world.passes(1)

    [(_, sent)] = world.market.open_calls
    assert [o.index for o in sent] == draws[16:]
    assert world.journal.opened(8) == set(draws)
    assert world.market.state(8) is JobState.VOTING


def test_boundaries_that_do_not_give_the_committed_root_are_never_opened(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.trained_job(9, segments=4, draws=[1])
    world.passes(2)  # commit, draw
    row = world.journal.job(9)
    assert row is not None and row.final_state_hash is not None and row.result_uri is not None
    # the journal's commitment no longer matches its boundaries (a corrupted or foreign journal)
    world.journal.begin_commit(9, root=b"\7" * 32, final_state_hash=row.final_state_hash,
                               energy_mj=row.energy_mj or 0, move_total=row.move_total or 0,
                               result_uri=row.result_uri)
    world.journal.set_phase(9, Phase.AUDITING)

    with caplog.at_level(logging.WARNING, logger="greenproof.worker"):
        world.passes(1)

    assert world.market.open_calls == []
    assert LifecycleError.__name__ in caplog.text and "refusing to open" in caplog.text
    assert world.retries.failure(9) is not None


def test_movement_samples_open_the_segments_whose_brackets_hold_their_targets(world: World) -> None:
    # move_k = 50 k (k + 1): segment k holds [50 k (k + 1), 50 (k + 1) (k + 2)); move_8 = 3600
    targets = [0, 99, 100, 2799, 2800, 3599]  # segments 0, 0, 1, 6, 7, 7
    world.trained_job(11, segments=8, draws=[3], targets=targets)

    world.passes(3)  # commit (with the total movement), draw, open

    assert world.market.jobs[11]["move_total"] == movement(8) == 3600
    [(_, opened)] = world.market.open_calls
    assert [o.index for o in opened] == [0, 1, 3, 6, 7]  # the drawn index and every bracket, ascending
    assert world.market.state(11) is JobState.VOTING  # every sample satisfied
    assert world.journal.opened(11) == {0, 1, 3, 6, 7}


def test_the_market_refuses_an_opening_that_satisfies_no_sample(world: World) -> None:
    world.trained_job(12, segments=8, draws=[3], targets=[150])  # segment 1's bracket [100, 300)
    world.passes(2)  # commit, draw
    row = world.journal.job(12)
    assert row is not None
    bounds = world.journal.boundaries(12)
    with pytest.raises(TxError, match="segment not audited"):
        world.market.open_segments(12, openings(row, bounds, [2]))
    forged = openings(row, bounds, [1])[0].model_copy(update={"end_move": 299})  # another bracket
    with pytest.raises(TxError, match="bad proof"):
        world.market.open_segments(12, [forged])
    world.market.open_segments(12, openings(row, bounds, [1, 3]))
    with pytest.raises(TxError, match="not auditing|openings not ascending"):
        world.market.open_segments(12, openings(row, bounds, [1]))
    assert world.market.state(12) is JobState.VOTING


def test_a_node_that_is_away_stops_the_pass_for_every_job(world: World) -> None:
    world.trained_job(1, segments=4)
    world.market.node_down = True

    with pytest.raises(ChainError, match="unreachable"):
        world.passes(1)

    assert world.retries.failure(1) is None  # not held against the job: the loop backs off instead
    world.market.node_down = False
    world.passes(1)
    assert world.market.state(1) is JobState.COMMITTED


def test_a_job_journaled_without_work_digests_is_never_committed(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.trained_job(3, segments=4)
    with sqlite3.connect(world.config.journal_path) as db:  # as a migrated schema-1 journal has them
        db.execute("UPDATE boundaries SET work_digest = NULL WHERE job_id = '3' AND k = 2")

    with caplog.at_level(logging.ERROR, logger="greenproof.worker"):
        world.passes(2)

    assert world.market.tries("commit_result", 3) == 0
    row = world.journal.job(3)
    assert row is not None and row.phase is Phase.ABANDONED and row.root is None
    assert "journaled without work digests" in row.reason and "refusing to commit" in caplog.text

    # nor resumed: the trainer gives up a job it could only finish with unknown seals
    world.accepted_job(4, 4, spec=parse_spec(SPEC))
    with sqlite3.connect(world.config.journal_path) as db:
        db.execute("INSERT INTO boundaries VALUES ('4', 0, ?, 0, NULL, '0')", (boundary_hash(4, 0).hex(),))
    world.trainer().train(world.journal.job(4))  # type: ignore[arg-type]
    row = world.journal.job(4)
    assert row is not None and row.phase is Phase.ABANDONED and "cannot be committed" in row.reason
    assert world.journal.boundaries(4)[1:] == []


def test_a_job_journaled_without_movements_is_never_committed(world: World) -> None:
    world.trained_job(13, segments=4)
    with sqlite3.connect(world.config.journal_path) as db:  # as a migrated schema-2 journal has them
        db.execute("UPDATE boundaries SET move = NULL WHERE job_id = '13' AND k = 3")

    world.passes(2)

    assert world.market.tries("commit_result", 13) == 0
    row = world.journal.job(13)
    assert row is not None and row.phase is Phase.ABANDONED and "without their movement" in row.reason


# ------------------------------------------------------------------ a real run: digests and losses

SPEC = {"task": "mlp", "model": {"hidden": 16, "depth": 1, "dropout": 0.1}, "dataset": {"uri": "builtin://digits"},
        "batch_size": 16, "total_steps": 8, "segment_steps": 2, "seed": 4}


def segment_bytes(losses: list[float], spec: JobSpec) -> list[bytes]:
    """Each segment's losses as a verifier's work digest packs them."""
    n = spec.segment_steps
    return [struct.pack(f"<{n}f", *losses[i:i + n]) for i in range(0, len(losses), n)]


@pytest.mark.usefixtures("one_thread")
def test_the_journaled_work_digests_are_what_a_replay_in_the_same_class_computes(world: World) -> None:
    spec = parse_spec(SPEC)
    world.accepted_job(5, spec.num_segments, spec=spec)
    trainer = world.trainer()

    trainer.train(world.journal.job(5))  # type: ignore[arg-type]

    bounds = world.journal.boundaries(5)
    assert len(bounds) == spec.num_segments + 1 and bounds[0].work_digest == ZERO32 and bounds[0].move == 0
    metric = metric_for(spec)
    for k in range(spec.num_segments):  # the verifier's replay of segment k, bit for bit
        start = trainer.store.get(bounds[k].state_hash)
        replay = run_segment(spec, start, k, "cpu")
        assert work_digest(replay.losses) == bounds[k + 1].work_digest
        assert bounds[k + 1].move - bounds[k].move == metric.fixed(start, replay.state)  # the movement too
    world.passes(1)
    row = world.journal.job(5)
    assert row is not None and row.root == RunRecord.load(world.records.held_path(5)).root(5)


@pytest.mark.usefixtures("one_thread")
def test_a_running_jobs_losses_cannot_be_read_until_it_is_final(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    spec = parse_spec(SPEC)
    world.accepted_job(6, spec.num_segments, draws=[3, 1], spec=spec)
    trainer = world.trainer()
    server = TestClient(create_app(JournalIndex(world.journal, trainer.store)), raise_server_exceptions=False)
    dashboard = RunDataStore([world.config.data_dir])

    def nothing_leaks() -> None:
        assert dashboard.for_job(6).losses == []
        assert not world.records.published_path(6).exists()
        for path in ("record.json", "record.private", "losses", "final/record.json", "../runs/6/record.json"):
            assert server.get(f"/artifacts/6/{path}").status_code in (404, 422), path
        for b in world.journal.boundaries(6):  # what the server does serve: checkpoints, without a loss
            body = server.get(f"/artifacts/6/{b.state_hash.hex()}").content
            assert body and not any(seg in body for seg in segments)

    with caplog.at_level(logging.DEBUG):
        trainer.train(world.journal.job(6))  # type: ignore[arg-type]
        losses = RunRecord.load(world.records.held_path(6)).losses
        segments = segment_bytes(losses, spec)
        assert len(losses) == spec.total_steps
        nothing_leaks()
        for state in (JobState.COMMITTED, JobState.AUDITING, JobState.VOTING):
            world.passes(1)
            assert world.market.state(6) is state
            nothing_leaks()
        world.vote_windows_pass()
        world.passes(1)  # finalized: PAID on chain
        assert world.market.state(6) is JobState.PAID
        world.passes(1)  # the worker sees it final, closes it and publishes its run record
    assert world.journal.job(6).phase is Phase.CLOSED  # type: ignore[union-attr]
    assert dashboard.for_job(6).losses == losses
    assert not world.records.held_path(6).exists()
    logged = [r.getMessage().lower() for r in caplog.records if r.name.startswith("greenproof")]
    assert logged and not [m for m in logged if "loss" in m]  # the worker never logs one
    assert not [m for m in logged for x in losses if f"{x:.4f}" in m or repr(x) in m]


@pytest.mark.parametrize("end", [JobState.CANCELLED, JobState.EXPIRED])
def test_a_job_dropped_on_chain_frees_its_checkpoints_but_the_final_and_a_live_jobs(
    world: World, end: JobState, caplog: pytest.LogCaptureFixture
) -> None:
    store = ArtifactStore(world.config.store_dir)
    world.lifecycle.store = store
    world.trained_job(1, segments=4)
    world.trained_job(2, segments=4)
    hashes = {k: boundary_hash(1, k) for k in range(5)}
    for h in [*hashes.values(), boundary_hash(2, 1)]:
        store.put_bytes(h, b"x" * 10)  # the store holds bytes; nothing here reads them back
    # job 2 is live and (content addressed) shares job 1's boundary 2: journal it as its own
    world.journal.set_phase(2, Phase.VOTING)
    world.market.add_job(2, num_segments=4, provider=PROVIDER, state=JobState.VOTING,
                         voting_start=world.clock.now() + 10**6)
    with sqlite3.connect(world.config.journal_path) as db:
        db.execute("UPDATE boundaries SET state_hash = ? WHERE job_id = '2' AND k = 3", (hashes[2].hex(),))
    world.market.jobs[1].update(state=end)

    with caplog.at_level(logging.INFO, logger="greenproof.worker"):
        world.passes(1)
    assert world.phase(1) is Phase.ABANDONED
    assert {h for h in hashes.values() if store.has(h)} == {hashes[4], hashes[2]}  # final; job 2's
    assert store.has(boundary_hash(2, 1))
    assert "job 1: final; freed 3 checkpoint(s), 30 bytes" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="greenproof.worker"):
        world.passes(2)
    assert "freed" not in caplog.text and world.journal.pending_prunes() == []
