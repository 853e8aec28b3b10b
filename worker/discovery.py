"""Discovery: follow ``JobPosted``, decide with the accept policy, send the accept.

Each pass reads the ``JobPosted`` events from the journal's cursor up to
``head - confirmations`` and decides on every job once: skipped (the first rule
that failed is journaled and logged) or accepted. Besides the accept policy, the
court must be able to judge the worker's determinism class: a class whose
verifier pool holds less than ``min_class_stake`` is a skip with that reason
(``accept_job`` would revert). The intent to accept is
journaled *before* ``accept_job`` is sent; an accept whose fate a crash hid
(phase ``ACCEPTING``) is resolved on the next pass from on-chain state, never
by a second blind accept.

One posted job never stops the next: a job that cannot be evaluated (its view
reverts, its spec breaks the engine) is skipped with the reason. Only a node
failure stops the scan, before the cursor moves past the chunk, so the chunk
is read again once the node is back (jobs decided already are not decided
twice: the journal knows them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from greenproof import engine
from greenproof.chain.clock import ChainClock
from greenproof.chain.errors import TxError
from greenproof.chain.gateway import Gateway
from greenproof.chain.models import JobPosted, JobState, OnchainJob
from greenproof.chain.retries import JobRetries, describe, is_node_failure
from greenproof.spec import JobSpec, JobSpecError, load_spec
from greenproof.store import state_size_cap
from worker.config import WorkerConfig
from worker.journal import JobRow, Journal, Phase
from worker.policy import Offer, Standing, checkpoint_interval, evaluate
from worker.trainer import Throughput, job_spec

log = logging.getLogger("greenproof.worker")

#: blocks of events read per cursor step (the client chunks ``eth_getLogs`` itself)
SCAN_CHUNK = 2000


class Refused(Exception):
    """A posted job the worker will not take; the message is the journaled reason."""


class Discovery:
    """Finds posted jobs and takes the ones the policy allows."""

    def __init__(
        self,
        gateway: Gateway,
        journal: Journal,
        config: WorkerConfig,
        clock: ChainClock,
        throughput: Throughput,
        retries: JobRetries,
        *,
        from_block: int,
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self.gateway = gateway
        self.journal = journal
        self.config = config
        self.clock = clock
        self.throughput = throughput
        self.retries = retries
        #: where the scan starts on a fresh journal (the deployment block)
        self.from_block = from_block
        #: called when a job is queued for the device (wakes the trainer)
        self.on_queued = on_queued

    # ------------------------------------------------------------------ one pass
    def step(self, head: int) -> None:
        """Resolve accepts a crash interrupted, then decide on newly posted jobs."""
        for row in self.journal.jobs([Phase.ACCEPTING]):
            self.retries.attempt(row.job_id, lambda row=row: self.resume(row))
        self.scan(head)

    def scan(self, head: int) -> None:
        """Decide on the ``JobPosted`` events up to ``head - confirmations``, from the cursor."""
        target = head - self.config.confirmations
        cursor = self.journal.cursor
        lo = self.from_block if cursor is None else cursor + 1
        while lo <= target:
            hi = min(target, lo + SCAN_CHUNK - 1)
            for posted in self.gateway.events(JobPosted, lo, hi):
                self._consider_alone(posted)
            self.journal.set_cursor(hi)
            lo = hi + 1

    def _consider_alone(self, posted: JobPosted) -> None:
        try:
            self.consider(posted)
        except Exception as exc:  # noqa: BLE001 - one posted job never stops the next
            if is_node_failure(exc):
                raise
            reason = f"cannot evaluate: {describe(exc)}"
            if self.journal.record_skip(posted.job_id, reason, posted.block_number):
                log.warning("job %d: skipped: %s", posted.job_id, reason,
                            exc_info=None if isinstance(exc, TxError) else exc)

    # ------------------------------------------------------------------ deciding
    def consider(self, posted: JobPosted) -> None:
        """Decide on a posted job; accept it if the policy says so."""
        if self.journal.job(posted.job_id) is not None:
            return
        job = self.gateway.job(posted.job_id)
        try:
            spec = self._usable_spec(posted, job)
            reason, keep = self._decide(job, spec)
            dclass = engine.determinism_class(spec, self.config.device)
            self._check_court(dclass)
        except Refused as refusal:
            self._skip(posted, str(refusal))
            return
        if not self.journal.begin_accept(
            posted.job_id,
            spec_json=spec.canonical_json().decode(),
            spec_hash=job.spec_hash,
            determinism_class=dclass,
            deadline=job.deadline,
            num_segments=job.num_segments,
            posted_block=posted.block_number,
        ):
            return
        self.journal.set_keep_every(posted.job_id, keep)  # before the accept: a restart keeps it
        log.info("job %d: accepting (%s)", posted.job_id, reason)
        self.accept(posted.job_id, dclass)

    def _usable_spec(self, posted: JobPosted, job: OnchainJob) -> JobSpec:
        """The job's spec, if the job is open and its spec is the one committed to."""
        if job.state is not JobState.OPEN:
            raise Refused(f"job is {job.state}, not OPEN")
        try:
            spec = load_spec(posted.spec_uri)
        except JobSpecError as exc:
            raise Refused(f"spec unusable: {exc}") from None
        if spec.spec_hash() != job.spec_hash:
            raise Refused(
                f"spec hash mismatch: {posted.spec_uri[:80]} hashes to 0x{spec.spec_hash().hex()}, "
                f"job commits to 0x{job.spec_hash.hex()}"
            )
        if spec.num_segments != job.num_segments:
            raise Refused(f"spec has {spec.num_segments} segments, job says {job.num_segments}")
        return spec

    def _decide(self, job: OnchainJob, spec: JobSpec) -> tuple[str, int]:
        """The accept policy on this job and our standing; returns why it is taken and the
        job's sparse checkpoint interval ``m`` (1: every boundary, without a disk budget)."""
        try:
            memory = int(spec.estimate_memory_bytes())
            # the exact checkpoint size, needed only to size sparse checkpoints
            state_bytes = state_size_cap(spec) if self.config.policy.disk_budget_gb is not None else 0
        except (JobSpecError, ValueError) as exc:
            raise Refused(f"spec unusable: {exc}") from None
        offer = Offer(
            job_id=job.job_id,
            payment=job.payment,
            collateral=job.collateral,
            deadline=job.deadline,
            min_green_bps=job.min_green_bps,
            total_steps=spec.total_steps,
            memory_bytes=memory,
            steps_per_second=self.throughput.get(spec.task),
            num_segments=spec.num_segments,
            segment_steps=spec.segment_steps,
            state_bytes=state_bytes,
            audit_samples=job.audit_samples,
            # an OPEN job's terms are not fixed yet (zero): the accept fixes the market's current one
            open_window_s=job.open_window or self.gateway.param("open_window"),
        )
        standing = Standing(
            now=self.clock.now(),
            green_bps=self.gateway.green_bps(),
            free_stake=self.gateway.free_stake(),
            queued_seconds=self.queued_seconds(),
        )
        decision = evaluate(offer, standing, self.config.policy)
        if not decision:
            raise Refused(decision.reason)
        return decision.reason, checkpoint_interval(offer, self.config.policy) or 1

    def _check_court(self, dclass: bytes) -> None:
        """The court must be able to judge this class: its verifier pool holds at least
        ``min_class_stake`` (``accept_job`` reverts otherwise; docs/court.md)."""
        stake = self.gateway.pool_stake(dclass)
        need = self.gateway.court_param("min_class_stake")
        if stake < need:
            raise Refused(
                f"no court for our determinism class 0x{dclass.hex()}: its verifier pool holds {stake} "
                f"of the {need} stake (min_class_stake) accept_job requires; verifiers of this class "
                "join it with `greenproof verifier join`"
            )

    def queued_seconds(self) -> float:
        """Estimated training time of the jobs already waiting for (or on) the device."""
        total = 0.0
        policy = self.config.policy
        for row in self.journal.jobs([Phase.QUEUED, Phase.TRAINING]):
            spec = job_spec(row)
            done = len(self.journal.boundaries(row.job_id))
            left = max(0, spec.num_segments + 1 - done) * spec.segment_steps
            rate = self.throughput.get(spec.task) or policy.steps_per_second
            total += left / rate * policy.safety_factor
        return total

    # ------------------------------------------------------------------ accepting
    def accept(self, job_id: int, dclass: bytes) -> None:
        """Send ``accept_job`` (journaled ACCEPTING already); queue the job once it landed."""
        try:
            self.gateway.accept_job(job_id, dclass)
        except TxError as exc:
            job = self.gateway.job(job_id)
            if self._ours(job) and job.state is not JobState.OPEN:
                log.info("job %d: accept already landed (%s)", job_id, exc.reason)
            else:
                self.journal.set_phase(job_id, Phase.SKIPPED, f"accept failed: {exc.reason}")
                log.warning("job %d: accept failed: %s", job_id, exc.reason)
                return
        self.journal.set_phase(job_id, Phase.QUEUED)
        self.on_queued()
        log.info("job %d: accepted, queued for %s", job_id, self.config.device)

    def resume(self, row: JobRow) -> None:
        """An ``ACCEPTING`` job after a restart: landed, worth sending again, or gone."""
        job = self.gateway.job(row.job_id)
        if self._ours(job) and job.state is not JobState.OPEN:
            log.info("job %d: accept landed before the restart", row.job_id)
            self.journal.set_phase(row.job_id, Phase.QUEUED)
            self.on_queued()
        elif job.state is JobState.OPEN and self.clock.now() < job.deadline:
            log.info("job %d: accept did not land before the restart; sending it again", row.job_id)
            self.accept(row.job_id, row.determinism_class or b"\0" * 32)
        else:
            self.journal.set_phase(row.job_id, Phase.SKIPPED, f"taken or gone ({job.state})")

    def _ours(self, job: OnchainJob) -> bool:
        return job.provider.lower() == self.gateway.address.lower()

    def _skip(self, posted: JobPosted, reason: str) -> None:
        if self.journal.record_skip(posted.job_id, reason, posted.block_number):
            log.info("job %d: skipped: %s", posted.job_id, reason)


__all__ = ["Discovery", "Refused"]
