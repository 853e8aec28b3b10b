"""One job's audit under a budget, and the audit threads beside the chain loop.

The chain loop (:mod:`verifier.daemon`) reads a job's facts from the chain and
hands an :class:`AuditTask` to the :class:`AuditPool`, which runs it in its own
thread and puts the :class:`Outcome` on a queue the chain loop drains; the
chain loop commits the vote. Commits, reveals, finalizes and settlements never
wait behind an audit.

One task, in order, each step inside the budget (:class:`verifier.fetching.Budget`):

1. **spec** from ``spec_uri``; unreadable -> ``RETRY`` (the daemon tries the job
   again after a backoff); not hashing to the posted ``spec_hash`` -> abstain;
2. **dataset** (:func:`verifier.fetching.provide_dataset`: the provider's copy,
   then the requester's), within ``dataset_share`` of the budget so the
   provider's checkpoints always keep the rest; not had -> abstain;
3. **checkpoints** (:class:`verifier.fetching.Prefetch`): every checkpoint the
   segments still to check need, plus the delivered model, at once. One that
   failed -> fraud at once (no replay needed); then the job's **triangle** check
   over its known boundaries (:mod:`verifier.movement`, no replay needed: a
   violation is fraud at once);
4. **replays**: :func:`verifier.audit.audit_job` on ``max_parallel`` segments at a
   time (their replays in worker processes when more than one, as ever), each
   call under the pool's replay lock (torch's thread count is process-wide,
   and the audit sets it to the provider's determinism class), each finished
   segment check journaled at once; the first fraud ends the replays;
5. the delivered model is checked and the report concluded.

The decision when the budget runs out first (:meth:`AuditTask.decide`, called
by the chain loop, which never waits for a replay in progress): a checkpoint
that failed, or that had not arrived when the budget ran out (once step 3
began), or a segment already found fraudulent -> **fraud**; otherwise the
verifier could not finish -> **abstain**. A late result is ignored.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from greenproof.spec import JobSpec, JobSpecError
from verifier.audit import (
    AuditConfig,
    AuditJob,
    Fetch,
    OpenedSegment,
    audit_job,
    bridged,
    check_final,
    triangle_check,
)
from verifier.evidence import AuditReport, FinalCheck, SegmentCheck, TriangleCheck, Verdict
from verifier.fetching import Budget, FetchPolicy, LocalCheckpoints, Prefetch, provide_dataset
from verifier.votes import VoteJournal

log = logging.getLogger("greenproof.verifier")

#: the decision, as the audit threads call it (tests wrap it)
AuditFn = Callable[[AuditJob, AuditConfig, Fetch], AuditReport]


class JobFacts(BaseModel):
    """What the chain says about a job in voting: everything the audit needs but the spec."""

    model_config = ConfigDict(frozen=True)

    job_id: int
    chain_id: int
    market: str
    spec_uri: str
    spec_hash: bytes
    num_segments: int
    result_uri: str
    provider: str
    provider_class: bytes
    #: every audited segment: the uniform indices, then the movement samples' segments
    audit_indices: list[int]
    opened: list[OpenedSegment]
    final_state_hash: bytes
    energy_mj: int
    move_total: int
    movement_draws: list[int]

    def audit_job(self, spec: JobSpec) -> AuditJob:
        return AuditJob(
            job_id=self.job_id, spec=spec, spec_uri=self.spec_uri, result_uri=self.result_uri,
            provider_class=self.provider_class, provider=self.provider,
            audit_indices=list(self.audit_indices), opened=list(self.opened),
            final_state_hash=self.final_state_hash, energy_mj=self.energy_mj,
            move_total=self.move_total, movement_draws=list(self.movement_draws),
            chain_id=self.chain_id, market=self.market,
        )

    def segments(self) -> list[OpenedSegment]:
        """The distinct opened segments, by index."""
        seen: dict[int, OpenedSegment] = {}
        for seg in self.opened:
            seen.setdefault(seg.index, seg)
        return [seen[i] for i in sorted(seen)]


class OutcomeKind(StrEnum):
    VOTE = "vote"  # the report's verdict is ok or fraud: commit it
    ABSTAIN = "abstain"  # no vote; the report says why
    RETRY = "retry"  # the job could not be read (its spec): try it again after a backoff


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    report: AuditReport

    @property
    def reason(self) -> str:
        return "; ".join(self.report.reasons or self.report.abstentions) or self.report.verdict.value


@dataclass(frozen=True)
class AuditSettings:
    """How an audit runs (from :class:`verifier.daemon.VerifierConfig`)."""

    audit: AuditConfig
    fetch: FetchPolicy
    #: the job's prefetched checkpoints live under ``{work_dir}/{chain}-job-{id}`` while it is audited
    work_dir: Path
    fetch_threads: int = 4
    #: the most of the budget the spec and dataset may take; the checkpoints keep the rest
    dataset_share: float = 0.5


class Phase(StrEnum):
    SPEC = "spec"
    DATASET = "dataset"
    CHECKPOINTS = "checkpoints"
    REPLAY = "replay"
    DONE = "done"


def _hex(h: bytes) -> str:
    return "0x" + h.hex()


class AuditTask:
    """One job's audit within ``budget``; :meth:`run` in an audit thread, :meth:`decide`
    from the chain loop when the budget ran out first."""

    def __init__(self, facts: JobFacts, budget: Budget, settings: AuditSettings, *,
                 journal: VoteJournal | None, audit: AuditFn = audit_job,
                 replay_lock: threading.Lock | None = None) -> None:
        self.facts = facts
        self.budget = budget
        self.budget_s = max(0.0, budget.remaining())
        self.settings = settings
        self.journal = journal
        self.audit = audit
        self.replay_lock = replay_lock or threading.Lock()
        self.abandoned = threading.Event()
        self.work_dir = settings.work_dir / f"{facts.chain_id}-job-{facts.job_id}"
        self.spec: JobSpec | None = None
        self.prefetch: Prefetch | None = None
        self._lock = threading.Lock()
        self._phase = Phase.SPEC
        self._checks: dict[int, SegmentCheck] = {}
        self._triangle: TriangleCheck | None = None
        self._started = time.monotonic()

    @property
    def job_id(self) -> int:
        return self.facts.job_id

    @property
    def phase(self) -> Phase:
        with self._lock:
            return self._phase

    def _enter(self, phase: Phase) -> None:
        with self._lock:
            self._phase = phase

    # ------------------------------------------------------------------ the audit thread
    def run(self) -> Outcome:
        """The whole audit; its outcome (ignored by the daemon once the task is abandoned)."""
        from greenproof.spec import load_spec

        try:
            spec = load_spec(self.facts.spec_uri)
        except JobSpecError as exc:
            return self.abstention(f"the job's spec cannot be had: {exc}", OutcomeKind.RETRY)
        if spec.spec_hash() != self.facts.spec_hash:
            return self.abstention(f"the spec at {self.facts.spec_uri} does not hash to the posted spec_hash")
        self.spec = spec
        self._enter(Phase.DATASET)
        why = provide_dataset(spec, self.facts.result_uri, self.budget.share(self.settings.dataset_share))
        if why is not None:
            return self.abstention(why)
        with self._lock:
            self._checks = self._journaled()
        todo = [s for s in self.facts.segments() if s.index not in self._checks]
        if self._fraud_found():  # journaled before a restart
            return self._finish(self._withheld_report({}))
        if not self._fetch(spec, todo):
            return self.decide()
        if self._check_triangle(spec):
            return self._finish(self._withheld_report({}))
        if not self._replay(spec, todo):
            return self.decide()
        return self._conclude()

    def _check_triangle(self, spec: JobSpec) -> bool:
        """The job's triangle check over the prefetched boundaries; True when it found fraud.

        Under the replay lock: it builds the spec's initial state, which seeds torch's global
        generator (two threads doing so at once would corrupt each other's state)."""
        if self.abandoned.is_set() or not self.replay_lock.acquire(timeout=max(0.0, self.budget.remaining())):
            return False
        try:
            triangle = triangle_check(self.facts.audit_job(spec), self._local())
        finally:
            self.replay_lock.release()
        with self._lock:
            self._triangle = triangle
        if triangle is not None and not triangle.ok:
            log.info("job %d: triangle check failed: %s", self.job_id, "; ".join(triangle.reasons))
            return True
        return False

    def _journaled(self) -> dict[int, SegmentCheck]:
        if self.journal is None:
            return {}
        done = self.journal.segment_checks(self.facts.chain_id, self.facts.market, self.job_id)
        if done:
            log.info("job %d: resuming the audit: segments %s already checked", self.job_id, sorted(done))
        return done

    def _fetch(self, spec: JobSpec, todo: list[OpenedSegment]) -> bool:
        """Download every checkpoint still needed: the segments still to check, the delivered
        model and, for the triangle check, every other opened boundary (a resumed audit's
        journaled segments included); False when one failed or the budget ran out."""
        from greenproof.store import checkpoint_limits, state_size_cap

        self._enter(Phase.CHECKPOINTS)
        first = [s.start_hash for s in todo if s.index > 0] + [s.end_hash for s in todo]
        known = [h for s in self.facts.segments() for h in ((s.start_hash,) if s.index > 0 else ()) + (s.end_hash,)]
        hashes = list(dict.fromkeys([*first, *known, self.facts.final_state_hash]))
        limits = checkpoint_limits(state_size_cap(spec))
        self.prefetch = Prefetch(self.facts.result_uri, hashes, self.work_dir, limits,
                                 self.settings.fetch, self.budget, self.settings.fetch_threads).start()
        return self.prefetch.wait()

    def _replay(self, spec: JobSpec, todo: list[OpenedSegment]) -> bool:
        """Check the segments ``max_parallel`` at a time, journaling each; False when the
        budget ran out (or the task was abandoned) first."""
        self._enter(Phase.REPLAY)
        config = dataclasses.replace(self.settings.audit, check_final=False, check_triangle=False,
                                     check_bridged=False)
        fetch = self._local()
        job = self.facts.audit_job(spec)
        step = max(1, config.max_parallel)
        for lo in range(0, len(todo), step):
            if not self._check(job, todo[lo: lo + step], config, fetch):
                return False
            if self._fraud_found():
                return True
        return self._replay_bridged(job, config, fetch)

    def _check(self, job: AuditJob, segments: list[OpenedSegment], config: AuditConfig, fetch: Fetch,
               *, bridged: bool = False) -> bool:
        """Check ``segments`` under the replay lock and journal each check; False when the task was
        abandoned or the budget ran out before the lock was had."""
        if self.abandoned.is_set() or not self.replay_lock.acquire(timeout=max(0.0, self.budget.remaining())):
            return False
        try:
            if self.budget.expired():
                return False
            part = self.audit(job.model_copy(update={
                "audit_indices": [s.index for s in segments], "opened": segments, "final_state_hash": None,
            }), config, fetch)
        finally:
            self.replay_lock.release()
        for check in part.segments:
            check.bridged = bridged
            self._record(check)
        return True

    def _replay_bridged(self, job: AuditJob, config: AuditConfig, fetch: Fetch) -> bool:
        """Then the bridged segments (not drawn, both boundaries known: docs/protocol.md §4), one at
        a time while the budget leaves room for twice the slowest replay so far: they add
        detection, never an abstention (a drawn segment's verdict does not wait for them)."""
        if not self.settings.audit.check_bridged or self.abandoned.is_set():
            return True
        if not self.replay_lock.acquire(timeout=max(0.0, self.budget.remaining())):
            return True
        try:
            extra = [s for s in bridged(job) if s.index not in self._checks]
        except Exception as exc:  # noqa: BLE001 - bridged replays add detection; never cost the vote
            log.warning("job %d: no bridged segments: %s: %s", self.job_id, type(exc).__name__, exc)
            return True
        finally:
            self.replay_lock.release()
        for seg in extra:
            with self._lock:
                slowest = max((c.replay_seconds or 0.0 for c in self._checks.values()), default=0.0)
            if self.abandoned.is_set() or self.budget.remaining() < 2 * slowest + 1.0:
                log.info("job %d: bridged segment %d not replayed: %.0f s of the budget left", self.job_id,
                         seg.index, self.budget.remaining())
                return True
            if not self._check(job, [seg], config, fetch, bridged=True) or self._fraud_found():
                break
        return True

    def _record(self, check: SegmentCheck) -> None:
        with self._lock:
            self._checks[check.index] = check
        if self.journal is not None and check.verdict is not Verdict.ABSTAIN:
            self.journal.save_segment_check(self.facts.chain_id, self.facts.market, self.job_id, check)

    def _fraud_found(self) -> bool:
        with self._lock:
            triangle = self._triangle is not None and not self._triangle.ok
            return triangle or any(c.verdict is Verdict.FRAUD for c in self._checks.values())

    def _local(self) -> LocalCheckpoints:
        return self.prefetch.local() if self.prefetch is not None else LocalCheckpoints(self.work_dir, {})

    def _conclude(self) -> Outcome:
        report = self.header()
        with self._lock:
            report.segments = sorted(self._checks.values(), key=lambda c: c.index)
            report.triangle = self._triangle
        report.final = check_final(self.facts.result_uri, self.facts.final_state_hash, self._local())
        return self._finish(report)

    # ------------------------------------------------------------------ the decision at the deadline
    def decide(self) -> Outcome:
        """The verdict from what is known now (the budget ran out, or a checkpoint failed).

        Fraud when a checkpoint failed, when one had not arrived by the end of the
        budget once fetching had begun, or when a finished segment is fraud;
        otherwise an abstention: the verifier could not finish in time.
        """
        phase = self.phase
        if phase in (Phase.SPEC, Phase.DATASET):
            return self.abstention(f"the job's spec and dataset were not had within the audit's budget "
                                   f"({self.budget_s:.0f} s)")
        prefetch = self.prefetch
        withheld = prefetch.failures() if prefetch is not None else {}
        if prefetch is not None and prefetch.broken and not withheld:
            return self.abstention(prefetch.broken)
        if prefetch is not None and self.budget.expired():
            for h in prefetch.missing():
                withheld.setdefault(h, f"not received within the audit's budget ({self.budget_s:.0f} s)")
        if withheld or self._fraud_found():
            return self._finish(self._withheld_report(withheld))
        with self._lock:
            done = len(self._checks)
        return self.abstention(f"the verifier did not finish its replays within the audit's budget "
                               f"({self.budget_s:.0f} s): {done} of {len(self.facts.segments())} "
                               "segments checked")

    def _withheld_report(self, withheld: dict[bytes, str]) -> AuditReport:
        report = self.header()
        with self._lock:
            checks = dict(self._checks)
        for seg in self.facts.segments():
            if seg.index in checks:
                continue
            sides = [("start", seg.start_hash)] if seg.index > 0 else []
            for which, h in [*sides, ("end", seg.end_hash)]:
                if h in withheld:
                    check = checks.setdefault(seg.index, SegmentCheck(
                        index=seg.index, start_hash=_hex(seg.start_hash), end_hash=_hex(seg.end_hash),
                        start_energy_mj=seg.start_energy_mj, end_energy_mj=seg.end_energy_mj))
                    check.fraud(which, f"{which} checkpoint {_hex(h)} not available: {withheld[h]}")
        report.segments = sorted(checks.values(), key=lambda c: c.index)
        with self._lock:
            report.triangle = self._triangle
        final = self.facts.final_state_hash
        blamed = {h for c in report.segments for h in (c.start_hash, c.end_hash) if c.verdict is Verdict.FRAUD}
        others = [h for h in withheld if h != final and _hex(h) not in blamed]
        if others:  # a boundary only the triangle needed (a segment checked before a restart)
            report.triangle = report.triangle or TriangleCheck()
            for h in others:
                report.triangle.fraud(f"boundary checkpoint {_hex(h)} not available: {withheld[h]}")
        if final in withheld:
            report.final = FinalCheck(final_state_hash=_hex(final),
                                      reason=f"checkpoint {_hex(final)} not available: {withheld[final]}")
        return report

    # ------------------------------------------------------------------ reports
    def header(self) -> AuditReport:
        """The report's identification, before any check."""
        from greenproof.engine import determinism_class, select_device

        f, spec = self.facts, self.spec
        mine = "" if spec is None else _hex(determinism_class(spec, select_device(self.settings.audit.device)))
        return AuditReport(
            job_id=f.job_id, chain_id=f.chain_id, market=f.market, provider=f.provider,
            spec_hash=_hex(f.spec_hash), spec_uri=f.spec_uri, result_uri=f.result_uri,
            num_segments=f.num_segments, provider_class=_hex(f.provider_class), verifier_class=mine,
            audit_indices=list(f.audit_indices), movement_draws=list(f.movement_draws),
        )

    def abstention(self, reason: str, kind: OutcomeKind = OutcomeKind.ABSTAIN) -> Outcome:
        report = self.header()
        report.abstentions.append(reason)
        return Outcome(kind, self._done(report.conclude()))

    def _finish(self, report: AuditReport) -> Outcome:
        report.conclude()
        checked = {c.index for c in report.segments}
        unchecked = [i for i in sorted(set(self.facts.audit_indices)) if i not in checked]
        if unchecked and report.fraud:
            report.warnings.append(f"segments {unchecked} not replayed: the verdict was already fraud")
        kind = OutcomeKind.ABSTAIN if report.abstain else OutcomeKind.VOTE
        return Outcome(kind, self._done(report))

    def _done(self, report: AuditReport) -> AuditReport:
        report.audit_seconds = time.monotonic() - self._started
        self._enter(Phase.DONE)
        return report

    def cleanup(self) -> None:
        """Stop the downloads and remove the job's checkpoint files."""
        if self.prefetch is not None:
            self.prefetch.close()
        shutil.rmtree(self.work_dir, ignore_errors=True)


class AuditPool:
    """Audit threads beside the chain loop: one per job being audited, results on a queue.

    Only the chain loop calls :meth:`submit`, :meth:`task`, :meth:`abandon` and
    :meth:`finished`. One replay lock for the pool: one ``audit_job`` call at a
    time (at most ``max_parallel`` replays), since torch's thread count is the
    process's."""

    def __init__(self) -> None:
        self.replay_lock = threading.Lock()
        self._done: queue.SimpleQueue[tuple[AuditTask, Outcome]] = queue.SimpleQueue()
        self._running: dict[int, AuditTask] = {}

    def submit(self, task: AuditTask) -> None:
        self._running[task.job_id] = task
        threading.Thread(target=self._run, args=(task,), name=f"audit-{task.job_id}", daemon=True).start()

    def task(self, job_id: int) -> AuditTask | None:
        """The job's audit in progress, if any."""
        return self._running.get(job_id)

    def abandon(self, job_id: int) -> None:
        """Stop waiting for the job's audit: whatever it returns later is ignored."""
        task = self._running.pop(job_id, None)
        if task is not None:
            task.abandoned.set()
            if task.prefetch is not None:
                task.prefetch.stop.set()

    def finished(self) -> list[tuple[AuditTask, Outcome]]:
        """Audits that finished since the last call (not those abandoned)."""
        out = []
        while True:
            try:
                task, outcome = self._done.get_nowait()
            except queue.Empty:
                return out
            if self._running.get(task.job_id) is task:
                del self._running[task.job_id]
                out.append((task, outcome))

    def _run(self, task: AuditTask) -> None:
        try:
            outcome = task.run()
        except Exception as exc:  # noqa: BLE001 - one job's audit failing is that job's
            log.warning("job %d: the audit failed: %s: %s", task.job_id, type(exc).__name__, exc,
                        exc_info=exc)
            outcome = task.abstention(f"the audit failed: {type(exc).__name__}: {exc}", OutcomeKind.RETRY)
        self._done.put((task, outcome))
        task.cleanup()


__all__ = ["AuditFn", "AuditPool", "AuditSettings", "AuditTask", "JobFacts", "Outcome", "OutcomeKind",
           "Phase"]
