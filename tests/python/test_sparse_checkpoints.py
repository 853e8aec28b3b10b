"""Sparse checkpoints (issue 14): a worker with a disk budget keeps every m-th boundary and
the last, commits to every boundary exactly as before, and regenerates the audited ones it
did not keep by replay before it opens them.

Stories:

* m is the smallest interval whose ``ceil(N/m) + 2`` states fit the budget;
* a job trained under a budget leaves ``ceil(N/m)`` checkpoint files (within N/m + 2) and
  commits to the very hashes, energies, digests and movements of a run keeping them all;
* an audited boundary that was not kept is regenerated with the committed hash, stored
  and served by the artifact server; a replay that misses the committed hash opens nothing;
* a worker killed mid-job resumes with the journaled m (not its new budget's), replaying
  the unkept boundary it stopped at;
* through discovery and the lifecycle (fake market): the job is accepted with its m
  journaled, trained sparse, committed, and its audited segments' boundaries are
  regenerated, then opened against the committed root and served;
* once a job is final its checkpoints are freed: all but the final state and the states
  a live job journaled; a second pass frees nothing; a prune cut short by a crash is
  finished by the restarted worker; a job that may reach the same states (same seed)
  while it is queued or training holds the prune back until it has journaled them;
* on CPU the CUDA staging path is never taken, and the step loop reads no loss back
  unless a progress callback shows it.
"""

from __future__ import annotations

import base64
import logging
import math
import threading
from pathlib import Path

import pytest
import torch
from fake_gateway import PROVIDER, VOTE_WINDOWS, FakeGateway, FixedClock
from fastapi.testclient import TestClient

import greenproof.run as run_mod
from greenproof.chain.models import JobState
from greenproof.chain.retries import JobRetries
from greenproof.engine import run_segment
from greenproof.run import MemoryCheckpoints, stage_to_host, train_run
from greenproof.spec import parse_spec
from greenproof.statehash import state_hash
from greenproof.store import ArtifactStore, state_from_bytes, state_size_cap
from worker.checkpoints import (
    RegenerationError,
    is_kept,
    keep_every,
    kept_boundaries,
    regenerate,
    states_on_disk,
    worst_replays,
)
from worker.config import WorkerConfig
from worker.discovery import Discovery
from worker.journal import Journal, Phase
from worker.lifecycle import Lifecycle
from worker.policy import GIB, PolicyConfig
from worker.records import RunRecords
from worker.server import JournalIndex, create_app
from worker.trainer import Throughput, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = parse_spec({"task": "mlp", "model": {"hidden": 8, "depth": 1}, "dataset": {"uri": "builtin://digits"},
                   "batch_size": 8, "total_steps": 8, "segment_steps": 1, "seed": 5})
N = SPEC.num_segments  # 8
STATE_BYTES = state_size_cap(SPEC)


def budget_gb(m: int) -> float:
    """A budget that fits ``ceil(N/m) + 2`` states exactly (and no fewer m)."""
    return states_on_disk(N, m) * STATE_BYTES / GIB


@pytest.fixture(scope="module")
def reference():
    """The run keeping every boundary: what every sparse run must commit to."""
    return train_run(SPEC, MemoryCheckpoints(), run_mod.ZeroMeter(), device="cpu", progress=False)


def files(store: ArtifactStore) -> set[str]:
    return {p.name for p in Path(store.root).iterdir() if p.is_file() and not p.name.startswith(".")}


class World:
    """A worker's journal, store and trainer (not started: it trains and regenerates when asked)
    against the fake market, with the lifecycle handing regenerations to the trainer."""

    def __init__(self, tmp_path: Path, m: int | None) -> None:
        self.clock = FixedClock()
        self.market = FakeGateway(self.clock)
        policy = PolicyConfig(disk_budget_gb=budget_gb(m) if m else None, steps_per_second=1000)
        self.config = WorkerConfig(data_dir=tmp_path / "w", device="cpu", energy_source="none", policy=policy)
        self.journal = Journal(self.config.journal_path)
        self.store = ArtifactStore(self.config.store_dir)
        self.retries = JobRetries(1.0, 30.0, clock=lambda: 0.0)
        self.trainer = self.new_trainer(self.config)
        self.lifecycle = Lifecycle(self.market, self.journal, self.clock, self.retries,  # type: ignore[arg-type]
                                   result_base="http://worker.test", records=RunRecords(self.config.runs_dir),
                                   prepare=self.trainer.ensure_states, store=self.store)

    def new_trainer(self, config: WorkerConfig) -> Trainer:
        return Trainer(self.journal, self.store, config, self.clock, Throughput(self.journal),  # type: ignore[arg-type]
                       stopping=threading.Event())

    def queued_job(self, job_id: int, draws: list[int]) -> None:
        self.market.add_job(job_id, num_segments=N, provider=PROVIDER, state=JobState.ACCEPTED,
                            audit_samples=len(draws))
        self.market.draws[job_id] = draws
        self.journal.begin_accept(job_id, spec_json=SPEC.canonical_json().decode(), spec_hash=SPEC.spec_hash(),
                                  determinism_class=b"\1" * 32, deadline=self.clock.now() + 86_400,
                                  num_segments=N, posted_block=1)
        self.journal.set_phase(job_id, Phase.QUEUED)

    def hashes(self, job_id: int) -> list[bytes]:
        return [b.state_hash for b in self.journal.boundaries(job_id)]

    def passes(self, n: int) -> None:
        for _ in range(n):
            self.market.head += 1
            self.lifecycle.step(self.market.head)


# ---------------------------------------------------------------------------- choosing m


def test_m_is_the_smallest_interval_whose_states_fit_the_budget() -> None:
    for n in (1, 2, 7, 8, 9, 100, 1000):
        for state_bytes in (1, 7, 1000):
            for budget in range(0, 40 * state_bytes, max(1, state_bytes // 3)):
                fits = [m for m in range(1, n + 1) if (math.ceil(n / m) + 2) * state_bytes <= budget]
                assert keep_every(n, state_bytes, budget) == (min(fits) if fits else None), (n, state_bytes, budget)
    assert keep_every(1000, 10**12, None) == 1  # no budget: every boundary
    assert keep_every(N, STATE_BYTES, budget_gb(3) * GIB) == 3
    assert keep_every(N, STATE_BYTES, budget_gb(3) * GIB - 1) == 4


def test_kept_boundaries_and_the_worst_regeneration() -> None:
    assert kept_boundaries(8, 3) == [3, 6, 8] and kept_boundaries(8, 1) == list(range(1, 9))
    assert not is_kept(0, 3, 8) and is_kept(8, 3, 8) and not is_kept(7, 3, 8)
    assert worst_replays(8, 1, 5) == 0
    assert worst_replays(8, 3, 2) == 2 * 2 and worst_replays(8, 3, 32) == 3 * 2  # min(samples, ceil(N/m))


# ---------------------------------------------------------------------------- a sparse run


def test_a_budgeted_job_keeps_n_over_m_states_and_commits_as_a_full_run(tmp_path: Path, reference) -> None:
    w = World(tmp_path, m=3)
    w.queued_job(1, draws=[0])
    w.trainer.train(w.journal.job(1))  # type: ignore[arg-type]

    assert w.journal.job(1).phase is Phase.TRAINED  # type: ignore[union-attr]
    assert w.journal.keep_every(1) == 3
    bounds = w.journal.boundaries(1)
    assert [b.state_hash for b in bounds] == reference.state_hashes  # the commitment is unchanged
    assert [b.work_digest for b in bounds] == reference.work_digests
    assert [b.move for b in bounds] == reference.moves
    on_disk = files(w.store)
    assert on_disk == {reference.state_hashes[k].hex() for k in (3, 6, 8)}
    assert len(on_disk) <= N / 3 + 2


def test_an_unkept_boundary_is_regenerated_with_the_committed_hash(tmp_path: Path, reference) -> None:
    store = ArtifactStore(tmp_path / "s")
    train_run(SPEC, store, run_mod.ZeroMeter(), device="cpu", progress=False, keep=lambda k: is_kept(k, 4, N))
    assert files(store) == {reference.state_hashes[4].hex(), reference.state_hashes[8].hex()}

    regenerate(SPEC, store, reference.state_hashes, [2, 3, 6, 7])  # from 0 (init_state), and from 4

    for k in (2, 3, 6, 7):
        assert store.has(reference.state_hashes[k])
        assert state_hash(store.get(reference.state_hashes[k])) == reference.state_hashes[k]
    states = regenerate(SPEC, store, reference.state_hashes, [1, 5], put=False)
    assert {k: state_hash(s) for k, s in states.items()} == {1: reference.state_hashes[1],
                                                               5: reference.state_hashes[5]}
    assert not store.has(reference.state_hashes[1])  # put=False writes nothing


def test_a_replay_that_misses_the_committed_hash_stores_nothing(tmp_path: Path, reference,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    store = ArtifactStore(tmp_path / "s")
    train_run(SPEC, store, run_mod.ZeroMeter(), device="cpu", progress=False, keep=lambda k: is_kept(k, 4, N))
    forged = list(reference.state_hashes)
    forged[6] = b"\x66" * 32  # a commitment this code path does not reproduce
    with pytest.raises(RegenerationError, match="boundary 6"):
        regenerate(SPEC, store, forged, [7])
    assert not store.has(reference.state_hashes[7]) and not store.has(forged[6])
    assert "REGENERATION MISMATCH" in caplog.text


def test_a_killed_job_resumes_with_its_journaled_m(tmp_path: Path, reference) -> None:
    w = World(tmp_path, m=4)
    w.queued_job(1, draws=[0])
    record = w.journal.record_boundary

    def killed_at_2(job_id, k, *args):  # the process dies as boundary 2 is about to be journaled
        if k >= 2:
            raise SystemExit("kill -9")
        return record(job_id, k, *args)

    w.journal.record_boundary = killed_at_2  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        w.trainer.train(w.journal.job(1))  # type: ignore[arg-type]
    w.journal.record_boundary = record  # type: ignore[method-assign]
    assert [b.k for b in w.journal.boundaries(1)] == [0, 1]
    # neither 0 nor 1 is kept (the writer may have got as far as 4): the resume replays boundary 1
    assert not w.store.has(reference.state_hashes[1]) and not w.store.has(reference.state_hashes[0])
    assert files(w.store) <= {reference.state_hashes[4].hex()}

    # restarted with another budget (none: it would keep every boundary), the job keeps m = 4
    w.trainer = w.new_trainer(WorkerConfig(data_dir=w.config.data_dir, device="cpu", energy_source="none"))
    w.trainer.train(w.journal.job(1))  # type: ignore[arg-type]

    assert w.journal.keep_every(1) == 4
    assert w.journal.job(1).phase is Phase.TRAINED  # type: ignore[union-attr]
    assert w.hashes(1) == reference.state_hashes
    assert [b.work_digest for b in w.journal.boundaries(1)] == reference.work_digests
    assert files(w.store) == {reference.state_hashes[4].hex(), reference.state_hashes[8].hex()}


def test_the_training_thread_regenerates_between_segments_when_asked(tmp_path: Path, reference,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(tmp_path, m=4)
    w.queued_job(1, draws=[0])
    w.trainer.train(w.journal.job(1))  # type: ignore[arg-type]
    monkeypatch.setattr(w.trainer, "is_alive", lambda: True)  # as if the device thread were running

    assert w.trainer.ensure_states(1, [5, 6]) is False  # queued for the device's thread
    assert not w.store.has(reference.state_hashes[5])
    w.trainer.serve_regenerations()  # what the thread does between segments (or when idle)
    assert w.trainer.ensure_states(1, [5, 6]) is True
    assert w.store.has(reference.state_hashes[5]) and w.store.has(reference.state_hashes[6])


# ---------------------------------------------------------------------------- through the worker


def test_discovery_journals_m_and_the_audited_boundaries_are_regenerated_opened_and_served(
    tmp_path: Path, reference
) -> None:
    w = World(tmp_path, m=3)
    uri = "data:application/json;base64," + base64.b64encode(SPEC.canonical_json()).decode()
    # an OPEN job's terms read zero on chain (the accept fixes the open window): the worker
    # sizes its regeneration against the market's current open window
    w.market.post(7, uri, 11, spec_hash=SPEC.spec_hash(), num_segments=N, audit_samples=2, open_window=0)
    w.market.draws[7] = [4, 1]  # segments 1 and 4: boundaries 1, 2, 4, 5 (none of them kept)
    discovery = Discovery(w.market, w.journal, w.config, w.clock, Throughput(w.journal),  # type: ignore[arg-type]
                          w.retries, from_block=10, on_queued=lambda: None)
    discovery.step(head=12)
    row = w.journal.job(7)
    assert row is not None and row.phase is Phase.QUEUED, row
    assert w.journal.keep_every(7) == 3

    w.trainer.train(w.journal.job(7))  # type: ignore[arg-type]
    assert len(files(w.store)) == 3  # boundaries 3, 6, 8
    w.passes(3)  # commit, draw, regenerate and open

    assert w.market.state(7) is JobState.VOTING
    assert sorted(o.index for _, ops in w.market.open_calls for o in ops) == [1, 4]
    server = TestClient(create_app(JournalIndex(w.journal, w.store)))
    for k in (1, 2, 4, 5):
        body = server.get(f"/artifacts/7/{reference.state_hashes[k].hex()}")
        assert body.status_code == 200, k
        assert state_hash(state_from_bytes(body.content)) == reference.state_hashes[k]
    assert len(files(w.store)) == 3 + 4


def test_a_job_whose_regeneration_misses_its_commitment_is_not_opened(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    w = World(tmp_path, m=4)
    w.queued_job(2, draws=[2])
    w.trainer.train(w.journal.job(2))  # type: ignore[arg-type]
    w.passes(1)  # committed
    original = w.trainer._segment_fn

    def drifting():  # a replay that no longer reproduces the training (another class, a bug)
        seg = original()
        return lambda spec, state, k: seg(spec.model_copy(update={"seed": spec.seed + 1}), state, k)

    w.trainer._segment_fn = drifting  # type: ignore[method-assign]
    w.passes(3)
    assert w.market.state(2) is JobState.AUDITING
    assert w.market.open_calls == []
    assert "NOT OPENING" in caplog.text and "REGENERATION MISMATCH" in caplog.text


# ---------------------------------------------------------------------------- once the job is final


def live_job_sharing(w: World, job_id: int, shared: list[bytes]) -> None:
    """A live job (voting, its vote windows far off) of another seed whose journaled
    boundaries 1.. are the states ``shared`` (the store is content addressed)."""
    other = SPEC.model_copy(update={"seed": SPEC.seed + 1})
    w.market.add_job(job_id, num_segments=len(shared), provider=PROVIDER, state=JobState.VOTING,
                     voting_start=w.clock.now() + 10**6)
    w.journal.begin_accept(job_id, spec_json=other.canonical_json().decode(), spec_hash=other.spec_hash(),
                           determinism_class=b"\1" * 32, deadline=w.clock.now() + 86_400,
                           num_segments=len(shared), posted_block=1)
    for k, h in enumerate([b"\x02" * 32, *shared]):
        w.journal.record_boundary(job_id, k, h, k, b"\0" * 32 if k == 0 else bytes([k]) * 32, k)
    w.journal.set_phase(job_id, Phase.VOTING)


def paid(w: World, job_id: int) -> None:
    """Commit, draw, regenerate and open; then the vote windows pass and the job is finalized."""
    w.passes(3)
    assert w.market.state(job_id) is JobState.VOTING
    w.clock.t += VOTE_WINDOWS
    w.passes(2)
    assert w.market.state(job_id) is JobState.PAID


def test_a_final_job_frees_its_checkpoints_but_the_final_state_and_those_a_live_job_needs(
    tmp_path: Path, reference, caplog: pytest.LogCaptureFixture
) -> None:
    w = World(tmp_path, m=3)
    w.queued_job(1, draws=[4, 1])  # segments 1 and 4: boundaries 1, 2, 4, 5 regenerated
    w.trainer.train(w.journal.job(1))  # type: ignore[arg-type]
    ref = reference.state_hashes
    live_job_sharing(w, 2, [ref[4], ref[6]])  # a regenerated state and a kept one
    w.passes(3)
    assert files(w.store) == {ref[k].hex() for k in (1, 2, 3, 4, 5, 6, 8)}
    size = (Path(w.store.root) / ref[8].hex()).stat().st_size

    w.clock.t += VOTE_WINDOWS
    with caplog.at_level(logging.INFO, logger="greenproof.worker"):
        w.passes(2)  # finalized, closed, checkpoints freed in the same pass

    assert w.market.state(1) is JobState.PAID and w.journal.job(1).phase is Phase.CLOSED  # type: ignore[union-attr]
    assert files(w.store) == {ref[8].hex(), ref[4].hex(), ref[6].hex()}  # final; job 2's
    assert w.journal.pending_prunes() == []
    assert f"job 1: final; freed 4 checkpoint(s), {4 * size} bytes" in caplog.text
    server = TestClient(create_app(JournalIndex(w.journal, w.store)))
    assert server.get("/artifacts/1/final").status_code == 200  # the requester's model
    assert state_hash(state_from_bytes(server.get("/artifacts/1/final").content)) == ref[8]
    assert server.get(f"/artifacts/1/{ref[1].hex()}").status_code == 404
    assert server.get(f"/artifacts/2/{ref[4].hex()}").status_code == 200

    # a second pass, and a second prune of the same job, change nothing
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="greenproof.worker"):
        w.passes(1)
        assert "freed" not in caplog.text
        w.journal.mark_prune(1)
        w.passes(1)
    assert "job 1: final; freed 0 checkpoint(s), 0 bytes" in caplog.text
    assert files(w.store) == {ref[8].hex(), ref[4].hex(), ref[6].hex()}

    # once job 2 is final too, its states go; job 1's final model stays
    w.market.jobs[2].update(state=JobState.PAID)
    w.passes(1)
    assert w.journal.job(2).phase is Phase.CLOSED  # type: ignore[union-attr]
    assert files(w.store) == {ref[8].hex(), ref[6].hex()}  # job 2's boundary 2 is its final state


def test_a_prune_cut_short_is_finished_by_the_restarted_worker(tmp_path: Path, reference,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(tmp_path, m=3)
    w.queued_job(1, draws=[4, 1])
    w.trainer.train(w.journal.job(1))  # type: ignore[arg-type]
    ref = reference.state_hashes
    delete = w.store.delete
    gone: list[bytes] = []

    def killed_after_two(h):  # kill -9 after two files are deleted
        if len(gone) == 2:
            raise SystemExit("kill -9")
        size = delete(h)
        if size is not None:
            gone.append(h)
        return size

    monkeypatch.setattr(w.store, "delete", killed_after_two)
    with pytest.raises(SystemExit):
        paid(w, 1)
    assert w.journal.pending_prunes() == [1] and len(files(w.store)) == 7 - 2
    monkeypatch.undo()

    # the restarted worker: a new lifecycle over the same journal and store
    w.lifecycle = Lifecycle(w.market, w.journal, w.clock, JobRetries(1.0, 30.0, clock=lambda: 0.0),  # type: ignore[arg-type]
                            result_base="http://worker.test", records=RunRecords(w.config.runs_dir),
                            prepare=w.trainer.ensure_states, store=w.store)
    w.passes(1)
    assert w.journal.pending_prunes() == []
    assert files(w.store) == {ref[8].hex()}


def test_the_prune_waits_for_a_queued_job_of_the_same_seed_then_keeps_what_it_journaled(
    tmp_path: Path, reference, caplog: pytest.LogCaptureFixture
) -> None:
    w = World(tmp_path, m=3)
    w.queued_job(1, draws=[4, 1])
    w.trainer.train(w.journal.job(1))  # type: ignore[arg-type]
    w.queued_job(3, draws=[0])  # the same spec: it trains through the very states of job 1
    ref = reference.state_hashes
    with caplog.at_level(logging.INFO, logger="greenproof.worker"):
        paid(w, 1)
    # job 3 may find job 1's states in the store (and write nothing) before it journals them
    assert w.journal.pending_prunes() == [1]
    assert "job 1: freeing its checkpoints once job(s) [3], which may share its states, are trained" in caplog.text
    assert files(w.store) == {ref[k].hex() for k in (1, 2, 3, 4, 5, 6, 8)}

    w.trainer.train(w.journal.job(3))  # type: ignore[arg-type]
    w.passes(1)  # job 3 committed; job 1 pruned: every state it had is one job 3 journaled
    assert w.journal.pending_prunes() == []
    assert files(w.store) == {ref[k].hex() for k in (1, 2, 3, 4, 5, 6, 8)}
    assert w.hashes(3) == ref


# ---------------------------------------------------------------------------- off the critical path


def test_the_cuda_staging_is_never_taken_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_cuda(*_a, **_k):
        raise AssertionError("the CUDA staging path ran on CPU")

    stager = run_mod.HostStager
    monkeypatch.setattr(run_mod, "HostStager", no_cuda)
    record = train_run(SPEC, MemoryCheckpoints(), run_mod.ZeroMeter(), device="cpu", progress=False)
    assert record.num_segments == N
    state = {"a": torch.zeros(3)}
    assert stage_to_host(state, None) is state  # CPU: the writer reads the state itself
    with pytest.raises(ValueError, match="CUDA"):
        stager(torch.device("cpu"))


def test_the_step_loop_reads_no_loss_back_unless_progress_shows_it(monkeypatch: pytest.MonkeyPatch,
                                                                   reference) -> None:
    from greenproof.engine import init_state

    state = init_state(SPEC, "cpu")
    shown: list[float] = []
    with_item = run_segment(SPEC, state, 0, "cpu", progress=lambda _s, loss: shown.append(loss))

    real_item = torch.Tensor.item

    def item(self):  # reading a loss (a tensor of the graph) back is what would wait for a GPU;
        # AdamW's step counters are CPU tensors (engine._materialize): reading those is no device sync
        if self.grad_fn is not None or self.dim() == 0 and self.dtype.is_floating_point and not self.is_leaf:
            raise AssertionError("host sync (.item() of a loss) in the step loop")
        return real_item(self)

    monkeypatch.setattr(torch.Tensor, "item", item)
    quiet = run_segment(SPEC, state, 0, "cpu")
    nan_progress: list[float] = []
    no_loss = run_segment(SPEC, state, 0, "cpu", progress=lambda _s, loss: nan_progress.append(loss),
                          progress_loss=False)
    assert quiet.losses == with_item.losses == shown == no_loss.losses  # bit for bit
    assert len(nan_progress) == SPEC.segment_steps and all(math.isnan(x) for x in nan_progress)
    assert state_hash(quiet.state) == reference.state_hashes[1]
