"""The on-chain life of every job the worker holds: commit, draw, open, finalize; withdraw.

Each pass (:meth:`Lifecycle.step`) reads every held job's on-chain state,
reconciles the journal with it, and takes the job one action further:

    TRAINED -> commit_result -> COMMITTED -> draw_audit -> AUDITING
            -> open_segments -> VOTING -> finalize -> PAID / SLASHED (closed)

and then withdraws whatever the market owes. Reconciling first makes every
action safe to repeat after a crash: a commit that landed before the restart is
seen on chain, never sent twice with another root.

The root commits to every boundary's seal (its journaled work digest) and
cumulative movement, and the commit posts the total movement ``move_N``. The
audit draws uniform segment indices and movement targets: the worker opens every
drawn index and, for each target ``u``, the segment whose journaled cumulative
bracket holds it (``move_k <= u < move_{k+1}``, :mod:`greenproof.sampling`).
Openings carry both boundaries' seals and movements and go in strictly
ascending segment index; every audited segment below the market's
``next_open_index`` is open.
Once a job is final on chain (PAID, SLASHED, EXPIRED, CANCELLED) its held run
record, with the per-step losses, is published (:mod:`worker.records`); never
before.

Each job moves under its own :class:`~greenproof.chain.retries.JobRetries` streak: a
transaction that keeps reverting for one job is logged with its reason and
retried for that job alone, while every other job keeps moving.

The accept is :mod:`worker.discovery`'s, training :mod:`worker.trainer`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from greenproof.chain.clock import ChainClock
from greenproof.chain.errors import TxError
from greenproof.chain.gateway import Gateway
from greenproof.chain.models import JobState, OnchainJob, Opening
from greenproof.chain.retries import JobRetries
from greenproof.merkle import MerkleTree, commitment_tree, seal
from greenproof.sampling import segments_to_open
from worker.journal import Boundary, JobRow, Journal, Phase, UnsealedBoundaries, moves, work_digests
from worker.records import RunRecords

log = logging.getLogger("greenproof.worker")


class LifecycleError(RuntimeError):
    """The journal and the chain disagree about a job in a way the worker must not paper over."""


class Lifecycle:
    """Takes each held job one on-chain action further per pass, each job on its own."""

    def __init__(
        self,
        gateway: Gateway,
        journal: Journal,
        clock: ChainClock,
        retries: JobRetries,
        *,
        result_base: str,
        records: RunRecords,
    ) -> None:
        self.gateway = gateway
        self.journal = journal
        self.clock = clock
        self.retries = retries
        #: run records, held private until a job is final
        self.records = records
        #: committed ``result_uri`` prefix (the artifact server's public URL)
        self.result_base = result_base

    # ------------------------------------------------------------------ one pass
    def step(self, head: int) -> None:
        """Every held job one action further (a failing job only delays itself), then withdraw."""
        for row in self.journal.active_jobs():
            if row.phase is Phase.ACCEPTING:
                continue  # discovery's until the accept has landed
            self.retries.attempt(row.job_id, lambda row=row: self.advance(row, head))
        self.retries.attempt("withdraw", self.collect)

    def advance(self, row: JobRow, head: int) -> None:
        """Move one job one action further, reconciling with its on-chain state."""
        job = self.gateway.job(row.job_id)
        if job.provider.lower() != self.gateway.address.lower():
            self.journal.set_phase(row.job_id, Phase.ABANDONED, f"job is not ours on chain ({job.state})")
            return
        if job.state in (JobState.EXPIRED, JobState.CANCELLED):
            self.records.publish(row.job_id, job.state)
            self.journal.set_phase(row.job_id, Phase.ABANDONED, f"job {job.state} on chain")
            log.warning("job %d: %s on chain; dropping it", row.job_id, job.state)
            return
        if row.phase in (Phase.QUEUED, Phase.TRAINING):
            if self.clock.now() >= job.deadline:
                self.journal.set_phase(row.job_id, Phase.ABANDONED, "deadline passed before training finished")
                log.warning("job %d: deadline passed during training; giving up", row.job_id)
            return
        if row.phase in (Phase.TRAINED, Phase.COMMITTING):
            self.commit(row, job)
        elif job.state in (JobState.PAID, JobState.SLASHED):
            self.records.publish(row.job_id, job.state)
            self.journal.set_phase(row.job_id, Phase.CLOSED, f"finalized: {job.state}")
            log.info("job %d: finalized on chain: %s", row.job_id, job.state)
        elif job.state is JobState.COMMITTED:
            self.draw_audit(row, job, head)
        elif job.state is JobState.AUDITING:
            self.open(row, job)
        elif job.state is JobState.VOTING:
            self.finalize(row, job)

    # ------------------------------------------------------------------ actions
    def commit(self, row: JobRow, job: OnchainJob) -> None:
        """Journal the exact commitment, then send it (or see that it landed)."""
        if job.state is not JobState.ACCEPTED:
            log.info("job %d: commit already on chain (%s)", row.job_id, job.state)
            self.journal.set_phase(row.job_id, Phase.COMMITTED)
            return
        if self.clock.now() >= job.deadline:
            self.journal.set_phase(row.job_id, Phase.ABANDONED, "deadline passed before commit")
            log.warning("job %d: missed the deadline; it will expire", row.job_id)
            return
        if row.phase is Phase.TRAINED or row.root is None:
            bounds = self.journal.boundaries(row.job_id)
            try:
                tree = sealed_tree(row.job_id, bounds)
            except UnsealedBoundaries as exc:
                self.journal.set_phase(row.job_id, Phase.ABANDONED, str(exc))
                log.error("job %d: refusing to commit: %s", row.job_id, exc)
                return
            self.journal.begin_commit(
                row.job_id,
                root=tree.root,
                final_state_hash=bounds[-1].state_hash,
                energy_mj=bounds[-1].energy_mj,
                move_total=moves(row.job_id, bounds)[-1],
                result_uri=f"{self.result_base}/artifacts/{row.job_id}",
            )
            row = self._reload(row)
        assert row.root is not None and row.final_state_hash is not None and row.result_uri is not None
        if row.move_total is None:  # a commitment journaled by a worker before committed movement
            self.journal.set_phase(row.job_id, Phase.ABANDONED, "commitment journaled without its total movement")
            log.error("job %d: refusing to commit: the journaled commitment has no total movement", row.job_id)
            return
        log.info("job %d: committing root 0x%s (energy %d mJ, movement %d)", row.job_id, row.root.hex(),
                 row.energy_mj, row.move_total)
        try:
            self.gateway.commit_result(
                row.job_id, row.root, row.final_state_hash, int(row.energy_mj or 0), row.move_total,
                row.result_uri,
            )
        except TxError:
            if self.gateway.job(row.job_id).state is JobState.ACCEPTED:
                raise
        self.journal.set_phase(row.job_id, Phase.COMMITTED)

    def draw_audit(self, row: JobRow, job: OnchainJob, head: int) -> None:
        """Draw the audit once the seed block is in the past (anyone may; we do not wait)."""
        if row.phase is not Phase.COMMITTED:
            self.journal.set_phase(row.job_id, Phase.COMMITTED)
        if head <= job.seed_block:
            return
        log.info("job %d: drawing the audit (seed block %d)", row.job_id, job.seed_block)
        try:
            self.gateway.draw_audit(row.job_id)
        except TxError as exc:
            if self.gateway.job(row.job_id).state is JobState.COMMITTED:
                raise
            log.info("job %d: draw_audit: %s (someone else drew it)", row.job_id, exc.reason)

    def open(self, row: JobRow, job: OnchainJob) -> None:
        """Open every audited segment not opened yet (the drawn indices and the segments whose
        movement brackets hold the drawn targets), with proofs against the committed root."""
        if row.phase is not Phase.AUDITING:
            self.journal.set_phase(row.job_id, Phase.AUDITING)
        if job.open_deadline and self.clock.now() > job.open_deadline:
            log.error("job %d: open window passed; the collateral will be slashed", row.job_id)
        bounds = self.journal.boundaries(row.job_id)
        audited = audited_of(row.job_id, bounds, self.gateway.audit_indices(row.job_id),
                             self.gateway.movement_draws(row.job_id))
        first = self.gateway.next_open_index(row.job_id)  # openings ascend: every one below is open
        done = [i for i in audited if i < first]
        if done:
            self.journal.record_opened(row.job_id, done)
        todo = [i for i in audited if i >= first]
        if not todo:
            return
        log.info("job %d: opening audited segments %s", row.job_id, todo)
        # the gateway sends them in batches of the contract's MAX_OPENINGS
        self.gateway.open_segments(row.job_id, openings(row, bounds, todo))
        self.journal.record_opened(row.job_id, todo)

    def finalize(self, row: JobRow, job: OnchainJob) -> None:
        """Finalize once the case's current round is over: the court decides (no majority in the
        last round means the optimistic outcome) or draws a larger round, and the job stays
        VOTING until that round is over too."""
        if row.phase is not Phase.VOTING:
            self.journal.set_phase(row.job_id, Phase.VOTING)
        if self.clock.now() < self.gateway.voting_ends(row.job_id):
            return
        log.info("job %d: reveal window over; finalizing", row.job_id)
        try:
            self.gateway.finalize(row.job_id)
        except TxError as exc:
            if self.gateway.job(row.job_id).state is JobState.VOTING:
                raise
            log.info("job %d: finalize: %s (someone else finalized it)", row.job_id, exc.reason)

    def collect(self) -> None:
        """Withdraw whatever the market owes this provider."""
        owed = self.gateway.claimable()
        if owed > 0:
            log.info("withdrawing %d owed by the market", owed)
            self.gateway.withdraw()

    def _reload(self, row: JobRow) -> JobRow:
        fresh = self.journal.job(row.job_id)
        if fresh is None:
            raise LifecycleError(f"worker: job {row.job_id} vanished from the journal")
        return fresh


def seals(job_id: int, bounds: Sequence[Boundary]) -> list[bytes]:
    """``seal(job_id, k, w_k)`` of every journaled boundary; ``UnsealedBoundaries`` when
    a boundary has no work digest (journaled before seals: the worker will not guess one)."""
    return [seal(job_id, b.k, w) for b, w in zip(bounds, work_digests(job_id, bounds), strict=True)]


def sealed_tree(job_id: int, bounds: Sequence[Boundary]) -> MerkleTree:
    """The commitment tree of the journaled boundaries (state hash, energy, movement, seal)."""
    return commitment_tree(
        job_id, [b.state_hash for b in bounds], [b.energy_mj for b in bounds], moves(job_id, bounds),
        seals(job_id, bounds),
    )


def audited_of(job_id: int, bounds: Sequence[Boundary], indices: Sequence[int],
               targets: Sequence[int]) -> list[int]:
    """The distinct audited segments, ascending: the drawn ``indices`` and, per movement
    target, the segment whose journaled bracket ``move_k <= u < move_{k+1}`` holds it."""
    try:
        return segments_to_open(indices, targets, moves(job_id, bounds))
    except ValueError as exc:  # a target beyond the journaled total: the commit was not ours
        raise LifecycleError(f"worker: job {job_id}: {exc}; the journaled movements do not match the "
                             "committed total") from None


def openings(row: JobRow, bounds: Sequence[Boundary], indices: Sequence[int]) -> list[Opening]:
    """The openings of segments ``indices``, in strictly ascending index (as JobMarket
    requires), rebuilt from the journaled boundaries.

    Raises ``LifecycleError`` when the boundaries do not give the committed root
    (opening them would only revert, or worse, prove something else).
    """
    tree = sealed_tree(row.job_id, bounds)
    if tree.root != row.root:
        raise LifecycleError(
            f"worker: job {row.job_id}: journaled boundaries give root 0x{tree.root.hex()}, "
            f"committed 0x{(row.root or b'').hex()}; refusing to open"
        )
    hashes = [b.state_hash for b in bounds]
    energies = [b.energy_mj for b in bounds]
    return [Opening.from_tree(tree, i, hashes, energies, moves(row.job_id, bounds), seals(row.job_id, bounds))
            for i in sorted(set(indices))]


__all__ = ["Lifecycle", "LifecycleError", "audited_of", "openings", "seals", "sealed_tree"]
