"""The trainer: one thread per device trains the accepted jobs, one at a time.

Jobs train earliest deadline first (a job that was on the device when the
worker died goes first) through :func:`greenproof.run.train_run`, the same
function verifiers replay with. Each boundary is journaled, with its work digest
and cumulative movement, once its checkpoint is durable in the store, so a restarted worker resumes from
the last one. The finished run's record (per-step losses, work digests) is held
private (:mod:`worker.records`) until the job is final on chain, and no loss is
ever logged or shown on the progress bar.
Before each segment the trainer checks that the rest still fits before the
deadline; if not it gives up cleanly (the job is abandoned, no compute wasted).

Sparse checkpoints (:mod:`worker.checkpoints`): a job trains with the interval ``m``
journaled when it was accepted (``--disk-budget-gb``) and writes only the boundaries
it keeps; a resume from a boundary not on disk regenerates it first. The trainer also
owns the device for regenerations after an audit draw: the lifecycle asks
(:meth:`Trainer.ensure_states`) and the trainer replays between two segments of
whatever it trains, or at once when idle.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from greenproof import run as run_mod
from greenproof.chain.clock import ChainClock
from greenproof.energy import make_meter
from greenproof.engine import run_segment
from greenproof.spec import JobSpec, parse_spec
from greenproof.store import ArtifactStore, state_size_cap
from worker.checkpoints import RegenerationError, is_kept, keep_every, regenerate
from worker.config import WorkerConfig
from worker.journal import Boundary, JobRow, Journal, Phase, UnsealedBoundaries, moves, work_digests
from worker.records import RunRecords

log = logging.getLogger("greenproof.worker")


class GiveUp(Exception):
    """Training stops: the job cannot be delivered in time (or was lost)."""


@dataclass
class Throughput:
    """Measured steps per second per model family (an EMA), persisted in the journal."""

    journal: Journal

    def get(self, task: str) -> float | None:
        value = self.journal.get_meta(f"throughput:{task}")
        return None if value is None else float(value)

    def update(self, task: str, steps: int, seconds: float) -> None:
        if seconds <= 0 or steps <= 0:
            return
        rate = steps / seconds
        old = self.get(task)
        new = rate if old is None else 0.5 * old + 0.5 * rate
        self.journal.set_meta(f"throughput:{task}", f"{new:.6g}")


def job_spec(row: JobRow) -> JobSpec:
    """The spec a held job was accepted with (journaled as canonical JSON)."""
    return parse_spec(json.loads(row.spec_json or "{}"))


class Trainer(threading.Thread):
    """Trains queued jobs on one device, one at a time, earliest deadline first."""

    def __init__(
        self,
        journal: Journal,
        store: ArtifactStore,
        config: WorkerConfig,
        clock: ChainClock,
        throughput: Throughput,
        *,
        stopping: threading.Event,
        cheat: Any = None,
    ) -> None:
        super().__init__(name=f"trainer-{config.device}", daemon=True)
        self.journal = journal
        self.store = store
        self.config = config
        self.clock = clock
        self.throughput = throughput
        self.stopping = stopping
        #: TEST/DEMO ONLY: a greenproof.adversaries cheat (train_segment, energy)
        self.cheat = cheat
        self.records = RunRecords(config.runs_dir)
        self.wake = threading.Event()
        self.busy_job: int | None = None
        self._regen_lock = threading.Lock()
        self._regen_todo: dict[int, set[int]] = {}  # job -> boundaries to bring back
        self._regen_failed: dict[int, str] = {}

    def run(self) -> None:
        while not self.stopping.is_set():
            self.serve_regenerations()
            row = self.next_job()
            if row is None:
                self.wake.wait(self.config.poll_s)
                self.wake.clear()
                continue
            self.busy_job = row.job_id
            try:
                self.train(row)
            except Exception as exc:  # noqa: BLE001 - one bad job must not stop the device
                log.exception("job %d: training failed: %s", row.job_id, exc)
                self.journal.set_phase(row.job_id, Phase.ABANDONED, f"training failed: {exc}")
            finally:
                self.busy_job = None

    def next_job(self) -> JobRow | None:
        rows = self.journal.jobs([Phase.TRAINING, Phase.QUEUED])
        # a job that was on the device when the worker died goes first
        rows.sort(key=lambda r: (r.phase is not Phase.TRAINING, r.deadline, r.job_id))
        return rows[0] if rows else None

    # ------------------------------------------------------------------ sparse checkpoints
    def interval(self, row: JobRow, spec: JobSpec) -> int:
        """The job's checkpoint interval ``m``: the journaled one (set at accept), else the one
        the disk budget gives now, journaled before the first boundary is written."""
        m = self.journal.keep_every(row.job_id)
        if m is None:
            budget = self.config.policy.disk_budget_bytes
            m = keep_every(spec.num_segments, state_size_cap(spec), budget) if budget is not None else 1
            m = self.journal.set_keep_every(row.job_id, m or spec.num_segments)
        return m

    def _segment_fn(self) -> Any:
        """One segment as training runs it (the cheat's, TEST/DEMO ONLY, when there is one)."""
        dev = self.config.device

        def plain(spec: JobSpec, state: Any, k: int) -> Any:
            return run_segment(spec, state, k, dev)

        if self.cheat is None:
            return plain
        return lambda spec, state, k: self.cheat.train_segment(spec, state, k, plain)

    def regenerate(self, job_id: int, boundaries: list[int], *, put: bool = True) -> dict[int, Any]:
        """Bring ``boundaries`` of a held job back by replay (:func:`worker.checkpoints.regenerate`)."""
        row = self.journal.job(job_id)
        if row is None:
            raise RegenerationError(f"job {job_id} is not in the journal")
        hashes = [b.state_hash for b in self.journal.boundaries(job_id)]
        return regenerate(job_spec(row), self.store, hashes, boundaries, device=self.config.device,
                          segment=self._segment_fn(), put=put)

    def ensure_states(self, job_id: int, boundaries: list[int]) -> bool:
        """True once every one of a job's ``boundaries`` is in the store (what opening an audit
        needs). A job with sparse checkpoints gets the missing ones regenerated: at once when
        the training thread is not running (``--once``, tests), else by the training thread
        between two segments (False until then). Raises ``RegenerationError`` when a replay
        did not reproduce a journaled hash."""
        with self._regen_lock:  # a replay that missed a committed hash will miss it again
            failed = self._regen_failed.get(job_id)
        if failed is not None:
            raise RegenerationError(failed)
        m = self.journal.keep_every(job_id)
        if m is None or m <= 1:
            return True  # every boundary was kept
        bounds = self.journal.boundaries(job_id)
        missing = [k for k in boundaries if k < len(bounds) and not self.store.has(bounds[k].state_hash)]
        if not missing:
            return True
        if not self.is_alive():
            self.regenerate(job_id, missing)
            return True
        with self._regen_lock:
            self._regen_todo.setdefault(job_id, set()).update(missing)
        self.wake.set()
        log.info("job %d: boundaries %s are not kept (m = %d); regenerating them before opening",
                 job_id, missing, m)
        return False

    def serve_regenerations(self) -> None:
        """Run the regenerations the lifecycle asked for (on this, the device's, thread)."""
        while True:
            with self._regen_lock:
                if not self._regen_todo:
                    return
                job_id, wanted = self._regen_todo.popitem()
            t0 = time.monotonic()
            try:
                self.regenerate(job_id, sorted(wanted))
                log.info("job %d: regenerated boundaries %s in %.1fs", job_id, sorted(wanted),
                         time.monotonic() - t0)
            except Exception as exc:  # noqa: BLE001 - handed to the lifecycle, which will not open
                log.error("job %d: regenerating boundaries %s failed: %s", job_id, sorted(wanted), exc)
                with self._regen_lock:
                    self._regen_failed[job_id] = f"regenerating boundaries {sorted(wanted)} failed: {exc}"

    # ------------------------------------------------------------------ one job
    def train(self, row: JobRow) -> None:
        """Train one job with the engine, journaling every durable boundary."""
        spec = job_spec(row)
        job_id = row.job_id
        self.journal.set_phase(job_id, Phase.TRAINING)
        prior = self.journal.boundaries(job_id)
        m = self.interval(row, spec)
        try:
            resume = self._resume(job_id, prior)
        except (UnsealedBoundaries, RegenerationError) as exc:  # cannot resume: give the job up
            log.error("job %d: not resuming: %s", job_id, exc)
            self.journal.set_phase(job_id, Phase.ABANDONED, str(exc))
            return
        log.info(
            "job %d: training %d segments x %d steps on %s%s%s",
            job_id, spec.num_segments, spec.segment_steps, self.config.device,
            f", keeping every {m}th boundary and the last" if m > 1 else "",
            f" (resuming at boundary {prior[-1].k})" if prior else "",
        )
        n = spec.num_segments
        started = time.monotonic()
        hooks = _Hooks(self, row, spec, prior)
        meter = make_meter(self.config.device, prefer=self.config.energy_source)
        try:
            record = run_mod.train_run(
                spec,
                self.store,
                meter,
                device=self.config.device,
                on_boundary=hooks.on_boundary,
                segment_hook=hooks.segment,
                progress=sys.stderr.isatty(),
                show_loss=False,
                keep=(lambda k: is_kept(k, m, n)) if m > 1 else None,
                **resume,
            )
        except GiveUp as exc:
            if self.stopping.is_set():
                log.info("job %d: training paused at shutdown; it resumes on restart", job_id)
                return
            self.journal.set_phase(job_id, Phase.ABANDONED, str(exc))
            log.warning("job %d: giving up: %s", job_id, exc)
            return
        bounds = self.journal.boundaries(job_id)
        if len(bounds) != spec.num_segments + 1 or bounds[-1].state_hash != record.final_state_hash:
            raise RuntimeError(
                f"worker: job {job_id}: run ended with {len(bounds)} journaled boundaries, "
                f"expected {spec.num_segments + 1}"
            )
        # The run record (losses, work digests, energy source, device) feeds the dashboard and
        # the report once the job is final; after a resume its losses cover the segments
        # trained since the restart.
        self.records.hold(job_id, record)
        self.journal.set_phase(job_id, Phase.TRAINED)
        log.info(
            "job %d: trained in %.1fs (%d steps this session), final state 0x%s",
            job_id, time.monotonic() - started, hooks.trained_steps, record.final_state_hash.hex(),
        )

    def _resume(self, job_id: int, prior: list[Boundary]) -> dict[str, Any]:
        """``train_run``'s resume arguments from the last journaled boundary (none: from scratch)."""
        if not prior:
            return {}
        last = prior[-1]
        digests = work_digests(job_id, prior)
        moved = moves(job_id, prior)
        if self.store.has(last.state_hash):
            start = self.store.get(last.state_hash)
        else:  # a boundary sparse checkpoints do not keep: replay it from the nearest kept one
            log.info("job %d: boundary %d is not kept; regenerating it to resume", job_id, last.k)
            start = self.regenerate(job_id, [last.k], put=False)[last.k]
        return {
            "start_k": last.k,
            "start_state": start,
            "history": [
                run_mod.BoundaryReport(b.state_hash, b.energy_mj, w, m)
                for b, w, m in zip(prior, digests, moved, strict=True)
            ],
        }


class _Hooks:
    """``train_run``'s callbacks for one job: journal each boundary, check the deadline
    before each segment, measure the throughput (and, test/demo only, cheat)."""

    def __init__(self, trainer: Trainer, row: JobRow, spec: JobSpec, prior: list[Boundary]) -> None:
        self.t = trainer
        self.row = row
        self.spec = spec
        self.start_k = prior[-1].k if prior else None
        self.rate = trainer.throughput.get(spec.task) or trainer.config.policy.steps_per_second
        self.trained_steps = 0

    def on_boundary(self, k: int, state_hash: bytes, energy_mj: int, work_digest: bytes, move: int) -> None:
        # a resumed run reports its start boundary again, already journaled as is
        if self.t.cheat is not None and k != self.start_k:
            energy_mj = int(self.t.cheat.energy(k, energy_mj))
            move = int(self.t.cheat.move(k, move))
        self.t.journal.record_boundary(self.row.job_id, k, state_hash, energy_mj, work_digest, move)
        log.info("job %d: boundary %d/%d state 0x%s energy %d mJ movement %d",
                 self.row.job_id, k, self.spec.num_segments, state_hash.hex()[:16], energy_mj, move)

    def segment(self, spec: JobSpec, state: Any, k: int, run_segment: run_mod.RunSegment) -> Any:
        self.t.serve_regenerations()  # another job's audit may be waiting for the device
        self._check(k)
        t0 = time.monotonic()
        if self.t.cheat is not None:
            result = self.t.cheat.train_segment(spec, state, k, run_segment)
        else:
            result = run_segment(spec, state, k)
        steps = self.spec.segment_steps
        self.trained_steps += steps
        self.t.throughput.update(self.spec.task, steps, time.monotonic() - t0)
        self.rate = self.t.throughput.get(self.spec.task) or self.rate
        return result

    def _check(self, k: int) -> None:
        """Raise ``GiveUp`` when the worker stops, the job left training, or the deadline is out of reach."""
        job_id, policy = self.row.job_id, self.t.config.policy
        if self.t.stopping.is_set():
            raise GiveUp("worker stopping")
        now_row = self.t.journal.job(job_id)
        if now_row is None or now_row.phase is not Phase.TRAINING:
            raise GiveUp(f"job left the training phase ({now_row.phase if now_row else 'gone'})")
        left_segments = self.spec.num_segments - k
        left = left_segments * self.spec.segment_steps / self.rate * policy.safety_factor
        now = self.t.clock.now()
        if now + left + policy.commit_margin_s > self.row.deadline:
            raise GiveUp(
                f"deadline unreachable: {left_segments} segments need ~{left:.0f}s "
                f"+ {policy.commit_margin_s}s commit margin, {self.row.deadline - now}s left"
            )


__all__ = ["GiveUp", "Throughput", "Trainer", "job_spec"]
