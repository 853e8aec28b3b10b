"""The verifier daemon: follow the market, audit jobs in voting, vote, collect.

Loop (one ``tick`` every ``poll_s``):

1. read ``VotingStarted`` events from the persisted cursor: each is a job
   whose audited segments are all open;
2. for each such job still inside its commit window: gather what the audit
   needs from the chain (``JobPosted`` spec URI, ``JobAccepted`` determinism
   class, ``ResultCommitted`` result URI, ``SegmentOpened`` leaves), audit it
   (:func:`verifier.audit.audit_job`, replays in parallel within the budget),
   save the report, write the salt durably, then ``commit_vote``;
3. inside the reveal window: ``reveal_vote`` with the saved salt;
4. after the reveal window: ``finalize`` (anyone may; the first caller wins);
5. once finalized: ``settle_vote`` for every unsettled vote of the job (ours
   last: winners are settled after the others) and ``withdraw`` what is claimable.

Everything needed across a crash is on disk: the cursor and the salts in
``{data_dir}/verifier.sqlite`` (:mod:`verifier.votes`), the reports in
``{data_dir}/reports``. Time is the chain's (the latest block's timestamp).
Every read, transaction and event goes through the contracts' one gateway
(:class:`greenproof.chain.gateway.Gateway`); logs are searched from the
manifest's ``deployment_block``, never from genesis.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from greenproof.chain.errors import ChainError, TxError
from greenproof.chain.gateway import Gateway
from greenproof.chain.models import (
    JobAccepted,
    JobEvent,
    JobPosted,
    JobState,
    OnchainJob,
    ResultCommitted,
    SegmentOpened,
    VoteCommitted,
    VoteStatus,
    VotingStarted,
)
from verifier.audit import AuditConfig, AuditJob, Fetch, OpenedSegment, audit_job
from verifier.evidence import AuditReport, TxRecord
from verifier.votes import JobStage, VoteJournal, VoteRecord, VoteStage

log = logging.getLogger("greenproof.verifier")
E = TypeVar("E", bound=JobEvent)


class VerifierError(RuntimeError):
    """The verifier cannot do what was asked; the message says why and what to do."""


class VerifierConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_dir: Path = Field(description="where the vote journal and the reports live")
    max_parallel: int = Field(1, ge=1, description="replays at once (processes)")
    threads_per_replay: int | None = Field(None, ge=1, description="torch threads per replay")
    device: str | None = Field(None, description="replay device (default: CUDA if present, else CPU)")
    poll_s: float = Field(1.0, gt=0)
    exit_when_idle: bool = False
    energy_warn_ratio: float = Field(3.0, gt=1)
    fetch_attempts: int = Field(4, ge=1, description="tries per checkpoint before calling it unfetchable")
    fetch_backoff_s: float = Field(2.0, ge=0)
    progress: bool = True

    def audit_config(self) -> AuditConfig:
        return AuditConfig(
            energy_warn_ratio=self.energy_warn_ratio,
            max_parallel=self.max_parallel,
            threads_per_replay=self.threads_per_replay,
            device=self.device,
            progress=self.progress,
        )


class RetryingFetch:
    """``fetch_state`` with retries: a transient network error must not become a fraud vote.

    Picklable (replays may run in worker processes)."""

    def __init__(self, attempts: int, backoff_s: float) -> None:
        self.attempts = attempts
        self.backoff_s = backoff_s

    def __call__(self, result_uri: str, h: bytes) -> Any:
        from greenproof.store import fetch_state

        for attempt in range(1, self.attempts + 1):
            try:
                return fetch_state(result_uri, h)
            except Exception as exc:
                if attempt == self.attempts:
                    raise
                log.info("fetch %s/%s failed (%s), retry %d", result_uri, h.hex()[:12], exc, attempt)
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
        raise AssertionError("unreachable")


def _last(gw: Gateway, event: type[E], job_id: int) -> E:
    """The job's latest ``event``, searched from the deployment block."""
    found = gw.events(event, gw.deployment.deployment_block, job_id=job_id)
    if not found:
        raise VerifierError(
            f"verifier: no {event.__name__} event for job {job_id} (wrong --deployment?)"
        )
    return found[-1]


def read_audit_job(gw: Gateway, job_id: int) -> tuple[AuditJob, OnchainJob]:
    """Everything the decision needs for ``job_id``, read from events and views."""
    from greenproof.spec import load_spec

    job = gw.job(job_id)
    posted = _last(gw, JobPosted, job_id)
    accepted = _last(gw, JobAccepted, job_id)
    committed = _last(gw, ResultCommitted, job_id)
    opened = [
        OpenedSegment(index=e.index, start_hash=e.start_hash, start_energy_mj=e.start_energy_mj,
                      end_hash=e.end_hash, end_energy_mj=e.end_energy_mj)
        for e in gw.events(SegmentOpened, gw.deployment.deployment_block, job_id=job_id)
    ]
    spec = load_spec(posted.spec_uri)
    if spec.spec_hash() != posted.spec_hash:
        raise VerifierError(
            f"verifier: job {job_id}: the spec at {posted.spec_uri} does not hash to the posted spec_hash"
        )
    audit = AuditJob(
        job_id=job_id,
        spec=spec,
        spec_uri=posted.spec_uri,
        result_uri=committed.result_uri,
        provider_class=accepted.determinism_class,
        provider=accepted.provider,
        audit_indices=gw.audit_indices(job_id),
        opened=opened,
        final_state_hash=committed.final_state_hash,
        energy_mj=committed.energy_mj,
        chain_id=gw.chain.chain_id,
        market=gw.market_address,
    )
    return audit, job


def audit_onchain_job(gw: Gateway, job_id: int, config: VerifierConfig) -> AuditReport:
    """Read ``job_id`` from the chain and audit it now (``verifier check``)."""
    audit, job = read_audit_job(gw, job_id)
    if not audit.opened:
        raise VerifierError(f"verifier: job {job_id} has no opened segments yet (state {job.state.value})")
    fetch = RetryingFetch(config.fetch_attempts, config.fetch_backoff_s)
    report = audit_job(audit, config.audit_config(), fetch=fetch)
    if gw.chain.account is not None:
        report.verifier = gw.address
    return report


class Verifier:
    """The daemon. ``run()`` loops; ``tick()`` is one pass (tests drive it directly)."""

    def __init__(self, gw: Gateway, config: VerifierConfig, fetch: Fetch | None = None) -> None:
        self.gw = gw
        self.config = config
        self.journal = VoteJournal(config.data_dir)
        self.fetch = fetch or RetryingFetch(config.fetch_attempts, config.fetch_backoff_s)
        self.me = gw.address
        self.chain_id = gw.chain.chain_id
        self.addr = gw.market_address
        self.deploy_block = gw.deployment.deployment_block
        self.stopping = threading.Event()
        self._final: set[int] = set()

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        log.info("verifier %s on chain %d, market %s, data dir %s",
                 self.me, self.chain_id, self.addr, self.config.data_dir)
        backoff = self.config.poll_s
        while not self.stopping.is_set():
            try:
                self.tick()
                backoff = self.config.poll_s
                if self.config.exit_when_idle and self.idle():
                    log.info("verifier: every job closed, votes settled, nothing to withdraw; exiting")
                    return
            except ChainError as exc:
                backoff = min(60.0, backoff * 2)
                log.warning("verifier: chain error: %s; retrying in %.0fs", str(exc)[:300], backoff)
            self.stopping.wait(backoff)

    def stop(self) -> None:
        self.stopping.set()

    def tick(self) -> None:
        self.scan()
        now = self.gw.chain.timestamp()
        for job_id in self.journal.jobs(self.chain_id, self.addr, (JobStage.SEEN, JobStage.AUDITED)):
            self.advance(job_id, now)

    # ------------------------------------------------------------------ events
    def scan(self) -> None:
        head = self.gw.chain.block_number()
        start = self.journal.cursor(self.chain_id, self.addr, self.deploy_block)
        if start > head:
            return
        for ev in self.gw.events(VotingStarted, start, head):
            if self.journal.job_stage(self.chain_id, self.addr, ev.job_id) is None:
                log.info("job %d: voting started (commit until %d)", ev.job_id, ev.commit_end)
                self.journal.set_job(self.chain_id, self.addr, ev.job_id, JobStage.SEEN)
        self.journal.set_cursor(self.chain_id, self.addr, head + 1)

    # ------------------------------------------------------------------ one job
    def advance(self, job_id: int, now: int) -> None:
        """Move one job forward as far as the chain's clock allows."""
        job = self.gw.job(job_id)
        stage = self.journal.job_stage(self.chain_id, self.addr, job_id)
        vote = self.journal.vote(self.chain_id, self.addr, job_id, self.me)
        try:
            if job.state is JobState.VOTING:
                commit_end, reveal_end = self.gw.vote_windows(job)
                if vote is None or vote.stage is VoteStage.PREPARED:
                    if now >= commit_end:
                        if stage is not JobStage.DONE:
                            log.warning("job %d: commit window closed before we voted", job_id)
                            self.journal.set_job(self.chain_id, self.addr, job_id, JobStage.SKIPPED,
                                                 note="commit window missed")
                        return
                    self.audit_and_commit(job_id, job)
                    return
                if vote.stage is VoteStage.COMMITTED and commit_end <= now < reveal_end:
                    self.reveal(vote)
                elif vote.stage is VoteStage.COMMITTED and now >= reveal_end:
                    log.warning("job %d: reveal window passed before we revealed", job_id)
                    self.journal.set_vote_stage(vote, VoteStage.MISSED)
                if now >= reveal_end:
                    self.finalize(job_id)
                return
            if job.state in (JobState.PAID, JobState.SLASHED):
                if vote is not None and vote.stage in (VoteStage.COMMITTED, VoteStage.REVEALED, VoteStage.MISSED):
                    self.settle(job_id, vote)
                    vote = self.journal.vote(self.chain_id, self.addr, job_id, self.me)
                if vote is None or vote.stage in (VoteStage.SETTLED, VoteStage.PREPARED):
                    self.journal.set_job(self.chain_id, self.addr, job_id, JobStage.DONE)
                self.withdraw()
                return
            # any other state: nothing for a verifier to do
            self.journal.set_job(self.chain_id, self.addr, job_id, JobStage.DONE, note=job.state.value)
        except TxError as exc:
            log.warning("job %d: %s", job_id, exc)

    def audit_and_commit(self, job_id: int, job: OnchainJob) -> None:
        if self.me.lower() in (job.requester.lower(), job.provider.lower()):
            self.journal.set_job(self.chain_id, self.addr, job_id, JobStage.SKIPPED, note="own job")
            return
        free = self.gw.free_stake(self.me)
        need = self.gw.param("min_verifier_stake")
        if free < need:
            log.warning("job %d: free stake %d below min_verifier_stake %d; run `greenproof verifier stake`",
                        job_id, free, need)
            self.journal.set_job(self.chain_id, self.addr, job_id, JobStage.SKIPPED, note="insufficient stake")
            return
        report = self.load_report(job_id)
        if report is None:
            audit, _ = read_audit_job(self.gw, job_id)
            report = audit_job(audit, self.config.audit_config(), fetch=self.fetch)
            report.verifier = self.me
            path = report.save(self.config.data_dir)
            self.journal.set_job(self.chain_id, self.addr, job_id, JobStage.AUDITED, report_path=str(path))
            log.info("job %d: audited: %s (report %s)", job_id, report.verdict.value, path)
        # the salt is on disk (synchronous sqlite) before the commit is sent
        vote = self.journal.prepare_vote(self.chain_id, self.addr, job_id, self.me, report.fraud)
        if self.gw.vote_of(job_id, self.me).status is not VoteStatus.NONE:
            # committed before a crash: the receipt was lost
            self.journal.set_vote_stage(vote, VoteStage.COMMITTED)
            return
        try:
            receipt = self.gw.commit_vote(job_id, vote.commitment)
        except TxError as exc:
            if "already voted" in str(exc):
                self.journal.set_vote_stage(vote, VoteStage.COMMITTED)
                return
            raise
        tx = receipt["transactionHash"].to_0x_hex()
        self.journal.set_vote_stage(vote, VoteStage.COMMITTED, tx)
        self.record_tx(job_id, "commit_vote", tx, receipt["blockNumber"])
        log.info("job %d: committed a sealed %s vote", job_id, "FRAUD" if vote.fraud else "ok")

    def reveal(self, vote: VoteRecord) -> None:
        receipt = self.gw.reveal_vote(vote.job_id, vote.fraud, vote.salt)
        tx = receipt["transactionHash"].to_0x_hex()
        self.journal.set_vote_stage(vote, VoteStage.REVEALED, tx)
        self.record_tx(vote.job_id, "reveal_vote", tx, receipt["blockNumber"])
        log.info("job %d: revealed %s", vote.job_id, "FRAUD" if vote.fraud else "ok")

    def finalize(self, job_id: int) -> None:
        try:
            receipt = self.gw.finalize(job_id)
        except TxError as exc:
            if "not voting" in str(exc):  # someone else finalized first
                return
            raise
        tx = receipt["transactionHash"].to_0x_hex()
        self.record_tx(job_id, "finalize", tx, receipt["blockNumber"])

    def settle(self, job_id: int, vote: VoteRecord) -> None:
        """Settle the job's other unsettled votes (winners are paid only after the
        non-winners), then ours; a ``non-winning votes unsettled`` revert waits."""
        voters = {e.voter for e in self.gw.events(VoteCommitted, self.deploy_block, job_id=job_id)}
        others = sorted(v for v in voters if v.lower() != self.me.lower())
        for voter in [*others, self.me]:
            if self.gw.vote_of(job_id, voter).settled:
                continue
            try:
                receipt = self.gw.settle_vote(job_id, voter)
            except TxError as exc:
                if "non-winning votes unsettled" in str(exc) or "already settled" in str(exc):
                    continue
                raise
            if voter.lower() == self.me.lower():
                tx = receipt["transactionHash"].to_0x_hex()
                self.journal.set_vote_stage(vote, VoteStage.SETTLED, tx)
                self.record_tx(job_id, "settle_vote", tx, receipt["blockNumber"])
        if self.gw.vote_of(job_id, self.me).settled and vote.stage is not VoteStage.SETTLED:
            self.journal.set_vote_stage(vote, VoteStage.SETTLED)

    def withdraw(self) -> None:
        if self.gw.claimable() > 0:
            receipt = self.gw.withdraw()
            log.info("withdrew rewards in tx %s", receipt["transactionHash"].to_0x_hex())

    # ------------------------------------------------------------------ reports
    def load_report(self, job_id: int) -> AuditReport | None:
        path = AuditReport.path_for(self.config.data_dir, job_id, self.chain_id)
        return AuditReport.load(path) if path.exists() else None

    def record_tx(self, job_id: int, action: str, tx: str, block: int | None) -> None:
        report = self.load_report(job_id)
        if report is not None:
            report.transactions.append(TxRecord(action=action, tx_hash=tx, block=block))
            report.save(self.config.data_dir)

    # ------------------------------------------------------------------ idle
    def idle(self) -> bool:
        """Every market job closed, every vote of ours settled, nothing claimable."""
        if self.journal.jobs(self.chain_id, self.addr, (JobStage.SEEN, JobStage.AUDITED)):
            return False
        pending = self.journal.votes(self.chain_id, self.addr, self.me,
                                     (VoteStage.COMMITTED, VoteStage.REVEALED, VoteStage.MISSED))
        if pending or self.gw.claimable() > 0:
            return False
        for job_id in range(1, self.gw.next_job_id()):
            if job_id in self._final:
                continue
            if not self.gw.job(job_id).state.final:
                return False
            self._final.add(job_id)
        return True
