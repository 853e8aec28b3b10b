"""A whole run: boundaries in order, durable checkpoints, work digests a replay
reproduces bit for bit, commitments that verify, resumable."""

from __future__ import annotations

import random
import struct
import time

import pytest
import torch

from greenproof.chain.models import Opening
from greenproof.engine import init_state, run_segment
from greenproof.merkle import (
    ZERO32,
    boundary0_seal,
    complete_end_proof,
    leaf,
    seal,
    verify,
    work_digest,
)
from greenproof.movement import Metric, cumulative, metric_for
from greenproof.run import BoundaryReport, CheckpointWriter, MemoryCheckpoints, RunRecord, train_run
from greenproof.spec import parse_spec
from greenproof.statehash import state_hash
from greenproof.store import ArtifactStore

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def spec():
    return parse_spec(
        {
            "task": "mlp",
            "model": {"hidden": 16, "depth": 1},
            "dataset": {"uri": "builtin://digits"},
            "batch_size": 8,
            "total_steps": 10,
            "segment_steps": 2,
            "seed": 11,
        }
    )


class CountingMeter:
    """A fake meter: 1000 mJ more at every read."""

    source = "fake"

    def __init__(self):
        self.mj, self.started, self.closed = 0, False, False

    def start(self):
        self.started = True

    def read_mj(self):
        self.mj += 1000
        return self.mj

    def close(self):
        self.closed = True


def honest_hashes(spec):
    """Boundaries of a run with no hooks, states kept in memory."""
    return train_run(spec, MemoryCheckpoints(), CountingMeter(), device=CPU, progress=False).state_hashes


def test_run_matches_the_engine_and_reports_boundaries_in_order(spec, tmp_path):
    store, meter, seen = ArtifactStore(tmp_path), CountingMeter(), []

    def on_boundary(k, h, e, w, m):
        assert store.has(h)  # durable before it is reported
        seen.append((k, h, e, w, m))

    record = train_run(spec, store, meter, device=CPU, on_boundary=on_boundary, progress=False)
    hashes = record.state_hashes
    assert hashes[0] == state_hash(init_state(spec, CPU))
    for k in range(spec.num_segments):  # every boundary is the engine's segment from the previous one
        assert state_hash(run_segment(spec, store.get(hashes[k]), k, CPU).state) == hashes[k + 1]
    assert hashes == honest_hashes(spec)  # a memory sink keeps the same run
    assert [k for k, *_ in seen] == list(range(spec.num_segments + 1))
    assert record.energies_mj == [0, 1000, 2000, 3000, 4000, 5000] == [e for _, _, e, _, _ in seen]
    assert record.work_digests == [w for _, _, _, w, _ in seen] and record.work_digests[0] == ZERO32
    # the committed movement: cumulative fixed-point distances of consecutive boundaries
    metric = metric_for(spec)
    states = [store.get(h) for h in hashes]
    assert record.moves == [m for *_, m in seen] == cumulative(
        metric.fixed(states[k], states[k + 1]) for k in range(spec.num_segments))
    assert record.moves[0] == 0 and all(b > a for a, b in zip(record.moves, record.moves[1:], strict=False))
    assert record.move_total == record.moves[-1]
    assert record.final_state_hash == record.state_hashes[-1] and record.energy_mj == 5000
    assert meter.started and meter.closed and record.energy_source == "fake"
    assert len(record.losses) == spec.total_steps
    for h in record.state_hashes:
        assert state_hash(store.get(h)) == h


def test_work_digests_are_the_segments_float32_losses_and_a_replay_reproduces_them(spec, tmp_path):
    store = ArtifactStore(tmp_path)
    record = train_run(spec, store, CountingMeter(), device=CPU, progress=False)
    n = spec.segment_steps
    for k in range(spec.num_segments):
        losses = record.losses[k * n:(k + 1) * n]
        packed = struct.pack(f"<{n}f", *losses)
        assert list(struct.unpack(f"<{n}f", packed)) == losses  # each loss is a float32 value, kept exactly
        assert record.work_digests[k + 1] == work_digest(losses)
        replay = run_segment(spec, store.get(record.state_hashes[k]), k, CPU)  # a verifier, same class
        assert work_digest(replay.losses) == record.work_digests[k + 1]
    assert len(set(record.work_digests)) == spec.num_segments + 1


def test_the_leaves_commit_to_the_seals(spec, tmp_path):
    record = train_run(spec, ArtifactStore(tmp_path), CountingMeter(), device=CPU, progress=False)
    seals = record.seals(7)
    assert seals[0] == boundary0_seal(7)
    assert seals == [seal(7, k, w) for k, w in enumerate(record.work_digests)]
    other = RunRecord(**{**vars(record), "work_digests": [ZERO32, *record.work_digests[2:], ZERO32]})
    assert other.root(7) != record.root(7)  # the same states and energies with other losses: another root
    moved = RunRecord(**{**vars(record), "moves": [0, *[m + 1 for m in record.moves[1:]]]})
    assert moved.root(7) != record.root(7)  # ... or with other movements


def test_openings_verify_against_the_root(spec, tmp_path):
    record = train_run(spec, ArtifactStore(tmp_path), CountingMeter(), device=CPU, progress=False)
    job_id = 7
    root = record.root(job_id)
    tree = record.tree(job_id)
    seals = record.seals(job_id)
    for i in range(record.num_segments):
        o = Opening.from_tree(tree, i, record.state_hashes, record.energies_mj, record.moves, seals)
        assert (o.start_seal, o.end_seal) == (seals[i], seals[i + 1])
        assert (o.start_move, o.end_move) == (record.moves[i], record.moves[i + 1])
        assert verify(o.start_proof, root, leaf(job_id, i, o.start_hash, o.start_energy_mj, o.start_move,
                                                o.start_seal))
        end_proof = complete_end_proof(o.start_proof, o.end_proof, i, record.num_segments + 1)
        assert verify(end_proof, root, leaf(job_id, i + 1, o.end_hash, o.end_energy_mj, o.end_move, o.end_seal))
        assert not verify(end_proof, root, leaf(job_id + 1, i + 1, o.end_hash, o.end_energy_mj, o.end_move,
                                                o.end_seal))
        assert not verify(end_proof, root, leaf(job_id, i + 1, o.end_hash, o.end_energy_mj, o.end_move,
                                                o.start_seal))
        assert not verify(end_proof, root, leaf(job_id, i + 1, o.end_hash, o.end_energy_mj, o.end_move + 1,
                                                o.end_seal))
    last = Opening.from_tree(tree, record.num_segments - 1, record.state_hashes, record.energies_mj,
                             record.moves, seals)
    assert last.end_hash == record.final_state_hash and last.end_energy_mj == record.energy_mj
    assert last.end_move == record.move_total


def test_record_round_trips_through_json(spec, tmp_path):
    record = train_run(spec, ArtifactStore(tmp_path), CountingMeter(), device=CPU, progress=False)
    record.save(tmp_path / "run.json")
    back = RunRecord.load(tmp_path / "run.json")
    assert back.root(3) == record.root(3) and back.determinism_class == record.determinism_class
    assert back.work_digests == record.work_digests and back.losses == record.losses
    assert back.moves == record.moves


def test_resume_from_a_boundary_gives_the_uninterrupted_hashes(spec, tmp_path):
    full = train_run(spec, ArtifactStore(tmp_path / "a"), CountingMeter(), device=CPU, progress=False)
    journal = []

    class Crash(Exception):
        pass

    def crash_after_2(spec_, state, k, run):
        if k == 2:
            raise Crash
        return run(spec_, state, k)

    store = ArtifactStore(tmp_path / "b")
    with pytest.raises(Crash):
        train_run(spec, store, CountingMeter(), device=CPU, progress=False,
                  on_boundary=lambda k, h, e, w, m: journal.append(BoundaryReport(h, e, w, m)),
                  segment_hook=crash_after_2)
    assert len(journal) == 3  # boundaries 0, 1, 2 were durable and reported
    k = len(journal) - 1
    resumed = train_run(
        spec, store, CountingMeter(), device=CPU, progress=False,
        start_state=store.get(journal[k].state_hash), start_k=k, history=journal,
    )
    assert resumed.state_hashes == full.state_hashes
    assert resumed.work_digests == full.work_digests  # carried over, then the same losses
    assert resumed.moves == full.moves  # carried over, then measured from the resumed start
    assert resumed.root(4) == full.root(4)
    assert resumed.energies_mj[: k + 1] == [r.energy_mj for r in journal]
    assert resumed.energies_mj == sorted(resumed.energies_mj)
    assert len(resumed.losses) == (spec.num_segments - k) * spec.segment_steps  # this session's steps


def test_resume_needs_history(spec, tmp_path):
    with pytest.raises(ValueError, match="needs history of boundaries 0..2"):
        train_run(spec, ArtifactStore(tmp_path), CountingMeter(), start_k=2, start_state={}, progress=False)


def test_segment_hook_sees_every_segment_and_can_cheat(spec, tmp_path):
    calls = []

    def lazy(spec_, state, k, run):
        calls.append(k)
        result = run(spec_, state, k)
        if k == 3:  # a cheat: perturb the output
            result.state["model.1.bias"] = result.state["model.1.bias"] + 1
        return result

    record = train_run(spec, ArtifactStore(tmp_path), CountingMeter(), device=CPU, progress=False, segment_hook=lazy)
    honest = honest_hashes(spec)
    assert calls == list(range(spec.num_segments))
    assert record.state_hashes[:4] == honest[:4] and record.state_hashes[4] != honest[4]


class SlowStore(ArtifactStore):
    def put_state(self, h, state):
        time.sleep(random.uniform(0, 0.02))
        super().put_state(h, state)


class BrokenStore(ArtifactStore):
    def put_state(self, h, state):
        raise OSError("disk full")


def test_background_writer_keeps_order_under_a_slow_store(tmp_path):
    writer = CheckpointWriter(SlowStore(tmp_path), maxsize=2)
    states = [{"x": torch.full((3,), float(i))} for i in range(12)]
    done = []
    for i, s in enumerate(states):
        writer.submit(i, s)
        done += writer.done()
    writer.close()
    done += writer.done()
    assert [(k, h) for k, h, _ in done] == [(i, state_hash(s)) for i, s in enumerate(states)]
    assert all(m is None for _, _, m in done)  # no metric: no movement measured


def test_background_writer_measures_each_boundary_from_the_previous_one(tmp_path):
    states = [{"w": torch.full((4,), float(i) ** 2)} for i in range(5)]
    metric = Metric(states[0])  # RMS 0 at boundary 0: the weight is the floor
    writer = CheckpointWriter(MemoryCheckpoints(), metric=metric)
    for i, s in enumerate(states):
        writer.submit(i, s)
    writer.close()
    done = writer.done()
    assert done[0].movement is None
    assert [d.movement for d in done[1:]] == [metric.fixed(states[i - 1], states[i]) for i in range(1, 5)]


def test_background_writer_failure_stops_the_run_without_hanging(spec, tmp_path):
    with pytest.raises(RuntimeError, match="checkpoint writer failed: disk full"):
        train_run(spec, BrokenStore(tmp_path), CountingMeter(), device=CPU, progress=False)
    writer = CheckpointWriter(BrokenStore(tmp_path), maxsize=1)
    writer.submit(0, {"x": torch.zeros(1)})
    with pytest.raises(RuntimeError, match="disk full"):
        for i in range(1, 50):  # never blocks forever on the full queue
            writer.submit(i, {"x": torch.zeros(1)})
            time.sleep(0.01)
    with pytest.raises(RuntimeError):
        writer.close()


def test_default_meter_is_used_when_none_is_given(spec, tmp_path):
    record = train_run(spec, ArtifactStore(tmp_path), None, device=CPU, progress=False)
    assert record.energy_source and record.energy_source != "fake"
    assert record.energies_mj[0] == 0 and record.energies_mj == sorted(record.energies_mj)


def test_a_resumed_run_warms_up_before_its_meter_starts(spec, monkeypatch):
    """After a kill -9 the first segment's energy must be that segment's own: the dataset
    load and first allocations happen before the meter starts, as on a fresh run."""
    from greenproof.spec import JobSpec

    events: list[str] = []
    real_load = JobSpec.load_data
    monkeypatch.setattr(JobSpec, "load_data", lambda self: events.append("load") or real_load(self))

    class Recording(CountingMeter):
        def start(self):
            events.append("meter")
            super().start()

    store = MemoryCheckpoints()
    first = train_run(spec, store, CountingMeter(), device=CPU, progress=False)
    events.clear()
    history = [BoundaryReport(h, e, d, m) for h, e, d, m in
               zip(first.state_hashes[:3], first.energies_mj[:3], first.work_digests[:3], first.moves[:3],
                   strict=True)]
    train_run(spec, store, Recording(), device=CPU, progress=False, start_k=2,
              start_state=store.get(first.state_hashes[2]), history=history)
    assert "load" in events and events.index("load") < events.index("meter")
