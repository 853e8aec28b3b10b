"""The verifier daemon: follow the market, audit jobs in voting, vote, collect.

The chain loop (one ``tick`` every ``poll_s``) never waits for an audit:

1. read ``VotingStarted`` events from the persisted cursor: each is a job
   whose audited segments are all open;
2. take each job one step further, each on its own (a job that cannot be read
   or acted on is logged with its reason and retried alone after its own
   backoff, :class:`greenproof.chain.retries.JobRetries`; every other job keeps moving):

   * inside its commit window with no vote yet: gather the job's facts from the
     chain (``JobPosted``, ``JobAccepted``, ``ResultCommitted``,
     ``SegmentOpened``, ``audit_indices``) and hand the audit to the pool
     (:mod:`verifier.auditor`: its own thread, its results on a queue), with a
     **budget** ending ``commit margin`` before the commit window closes;
   * an audit that finished: save the report; a vote (ok or fraud) is written
     with a fresh salt durably, then ``commit_vote``; an abstention casts no vote
     (logged at WARNING, the report says why); a job whose spec could not be
     read is tried again after its backoff while time is left;
   * an audit whose budget ran out: decide from what is known
     (:meth:`verifier.auditor.AuditTask.decide`: the provider's checkpoints not
     arriving is fraud, the verifier's own slowness an abstention) and ignore
     the late result;
   * inside the reveal window: ``reveal_vote`` with the saved salt; after it:
     ``finalize`` (anyone may; the first caller wins);
   * once finalized: ``settle_vote`` for every unsettled vote of the job (ours
     last: winners are settled after the others) and ``withdraw``.

Everything needed across a crash is on disk: the cursor, the salts and every
finished segment check in ``{data_dir}/verifier.sqlite`` (:mod:`verifier.votes`;
a restarted audit resumes with the segments still to check), the reports in
``{data_dir}/reports``. Time is the chain's (the latest block's timestamp, and
:class:`greenproof.chain.clock.ChainClock` between blocks). Every read, transaction and
event goes through the contracts' one gateway
(:class:`greenproof.chain.gateway.Gateway`); logs are searched from the
manifest's ``deployment_block``, never from genesis.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from greenproof.chain.clock import ChainClock
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
from greenproof.chain.retries import JobRetries
from verifier.audit import AuditConfig, AuditJob, OpenedSegment, audit_job
from verifier.auditor import (
    AuditFn,
    AuditPool,
    AuditSettings,
    AuditTask,
    JobFacts,
    Outcome,
    OutcomeKind,
)
from verifier.evidence import AuditReport, TxRecord
from verifier.fetching import Budget, FetchPolicy
from verifier.votes import JobStage, VoteJournal, VoteRecord, VoteStage

log = logging.getLogger("greenproof.verifier")
E = TypeVar("E", bound=JobEvent)

#: the commit margin never takes more than this share of the commit window (short dev windows)
MAX_MARGIN_SHARE = 0.25
#: ``verifier check``'s budget: no commit window binds a check run by hand
CHECK_BUDGET_S = 86_400.0


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
    fetch_attempts: int = Field(4, ge=1, description="tries per checkpoint before calling it withheld")
    fetch_backoff_s: float = Field(2.0, ge=0)
    progress: bool = True
    commit_margin_s: float = Field(
        120.0, ge=0, description="the audit's budget ends this long before the commit window closes "
        "(at most a quarter of the window), leaving time to get the commit mined")
    fetch_threads: int = Field(4, ge=1, description="checkpoints of one job downloading at once")
    dataset_share: float = Field(0.5, gt=0, lt=1, description="the most of the budget the spec and "
                                 "dataset may take; the provider's checkpoints keep the rest")
    retry_s: float = Field(5.0, gt=0, description="first backoff of a job that could not be read or acted on")
    retry_max_s: float = Field(300.0, gt=0)

    def audit_config(self) -> AuditConfig:
        return AuditConfig(
            energy_warn_ratio=self.energy_warn_ratio,
            max_parallel=self.max_parallel,
            threads_per_replay=self.threads_per_replay,
            device=self.device,
            progress=self.progress,
        )

    def audit_settings(self, work_dir: Path | None = None) -> AuditSettings:
        return AuditSettings(
            audit=self.audit_config(),
            fetch=FetchPolicy(self.fetch_attempts, self.fetch_backoff_s),
            work_dir=work_dir or self.data_dir / "checkpoints",
            fetch_threads=self.fetch_threads,
            dataset_share=self.dataset_share,
        )


def _last(gw: Gateway, event: type[E], job_id: int) -> E:
    """The job's latest ``event``, searched from the deployment block."""
    found = gw.events(event, gw.deployment.deployment_block, job_id=job_id)
    if not found:
        raise VerifierError(
            f"verifier: no {event.__name__} event for job {job_id} (wrong --deployment?)"
        )
    return found[-1]


def read_job_facts(gw: Gateway, job_id: int) -> tuple[JobFacts, OnchainJob]:
    """What the chain says about ``job_id`` (events and views); the spec is the audit's to read.

    A job in VOTING has every audited segment open on chain, so a ``SegmentOpened``
    event that cannot be found means the read is incomplete: VerifierError (try later).
    """
    job = gw.job(job_id)
    posted = _last(gw, JobPosted, job_id)
    accepted = _last(gw, JobAccepted, job_id)
    committed = _last(gw, ResultCommitted, job_id)
    opened = [
        OpenedSegment(index=e.index, start_hash=e.start_hash, start_energy_mj=e.start_energy_mj,
                      end_hash=e.end_hash, end_energy_mj=e.end_energy_mj)
        for e in gw.events(SegmentOpened, gw.deployment.deployment_block, job_id=job_id)
    ]
    indices = gw.audit_indices(job_id)
    missing = sorted(set(indices) - {s.index for s in opened})
    if job.state is JobState.VOTING and missing:
        raise VerifierError(f"verifier: job {job_id}: no SegmentOpened event found for audited "
                            f"segment(s) {missing} although the job is in voting")
    facts = JobFacts(
        job_id=job_id, chain_id=gw.chain.chain_id, market=gw.market_address,
        spec_uri=posted.spec_uri, spec_hash=posted.spec_hash, num_segments=posted.num_segments,
        result_uri=committed.result_uri, provider=accepted.provider,
        provider_class=accepted.determinism_class, audit_indices=indices, opened=opened,
        final_state_hash=committed.final_state_hash, energy_mj=committed.energy_mj,
    )
    return facts, job


def read_audit_job(gw: Gateway, job_id: int) -> tuple[AuditJob, OnchainJob]:
    """Everything the decision needs for ``job_id``: the facts and the spec they name."""
    from greenproof.spec import load_spec

    facts, job = read_job_facts(gw, job_id)
    spec = load_spec(facts.spec_uri)
    if spec.spec_hash() != facts.spec_hash:
        raise VerifierError(
            f"verifier: job {job_id}: the spec at {facts.spec_uri} does not hash to the posted spec_hash"
        )
    return facts.audit_job(spec), job


def audit_onchain_job(gw: Gateway, job_id: int, config: VerifierConfig,
                      audit: AuditFn = audit_job) -> AuditReport:
    """Read ``job_id`` from the chain and audit it now, in this thread (``verifier check``).

    The same audit as the daemon's (:class:`verifier.auditor.AuditTask`), with a
    day's budget and its own checkpoint directory; a spec that cannot be read
    raises VerifierError."""
    facts, job = read_job_facts(gw, job_id)
    if not facts.opened:
        raise VerifierError(f"verifier: job {job_id} has no opened segments yet (state {job.state.value})")
    config.data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".check-", dir=config.data_dir) as work:
        task = AuditTask(facts, Budget.of(CHECK_BUDGET_S), config.audit_settings(Path(work)),
                         journal=None, audit=audit)
        try:
            outcome = task.run()
        finally:
            task.cleanup()
    if outcome.kind is OutcomeKind.RETRY:
        raise VerifierError(f"verifier: job {job_id}: {outcome.reason}")
    if gw.chain.account is not None:
        outcome.report.verifier = gw.address
    return outcome.report


class Verifier:
    """The daemon. ``run()`` loops; ``tick()`` is one pass (tests drive it directly).

    ``audit`` is the decision the audit threads call (tests wrap it)."""

    def __init__(self, gw: Gateway, config: VerifierConfig, audit: AuditFn = audit_job) -> None:
        self.gw = gw
        self.config = config
        self.journal = VoteJournal(config.data_dir)
        self.audit = audit
        self.settings = config.audit_settings()
        self.pool = AuditPool()
        self.clock = ChainClock()
        self.retries = JobRetries(config.retry_s, config.retry_max_s, logger=log,
                                  expected=(VerifierError,))
        self.me = gw.address
        self.chain_id = gw.chain.chain_id
        self.addr = gw.market_address
        self.deploy_block = gw.deployment.deployment_block
        self.stopping = threading.Event()
        self._final: set[int] = set()
        self._outcomes: dict[int, Outcome] = {}
        #: the last abstention of a job being retried (its spec could not be read), saved if it stays so
        self._retried: dict[int, AuditReport] = {}

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
        """One pass: new jobs, finished audits, then every open job one step further, each on its own."""
        self.scan()
        now = self.gw.chain.timestamp()
        self.clock.observe(now)
        self.collect()
        for job_id in self.journal.jobs(self.chain_id, self.addr, (JobStage.SEEN, JobStage.AUDITED)):
            self.retries.attempt(job_id, lambda job_id=job_id: self.advance(job_id, now))

    def collect(self) -> None:
        """Take in the audits that finished (the pool's queue)."""
        for task, outcome in self.pool.finished():
            self._outcomes[task.job_id] = outcome

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
        """Move one job forward as far as the chain's clock allows (never waiting for its audit)."""
        job = self.gw.job(job_id)
        if job.state is JobState.VOTING:
            self._voting(job, now)
        elif job.state in (JobState.PAID, JobState.SLASHED):
            self.pool.abandon(job_id)
            self._closed(job)
        else:  # any other state: nothing for a verifier to do
            self.pool.abandon(job_id)
            self.journal.set_job(self.chain_id, self.addr, job_id, JobStage.DONE, note=job.state.value)

    def _voting(self, job: OnchainJob, now: int) -> None:
        job_id = job.job_id
        commit_end, reveal_end = self.gw.vote_windows(job)
        vote = self.journal.vote(self.chain_id, self.addr, job_id, self.me)
        if vote is not None and vote.stage is VoteStage.PREPARED and self._landed(vote):
            pass  # committed before a crash: the receipt was lost
        elif vote is None or vote.stage is VoteStage.PREPARED:
            if now >= commit_end:
                self._missed(job_id)
            else:
                self._decide(job, commit_end)
            return
        if vote.stage is VoteStage.COMMITTED and commit_end <= now < reveal_end:
            self.reveal(vote)
        elif vote.stage is VoteStage.COMMITTED and now >= reveal_end:
            log.warning("job %d: reveal window passed before we revealed", job_id)
            self.journal.set_vote_stage(vote, VoteStage.MISSED)
        if now >= reveal_end:
            self.finalize(job_id)

    def _landed(self, vote: VoteRecord) -> bool:
        """Whether a PREPARED vote's commit is on chain after all (then it becomes COMMITTED)."""
        if self.gw.vote_of(vote.job_id, self.me).status is VoteStatus.NONE:
            return False
        self.journal.set_vote_stage(vote, VoteStage.COMMITTED)
        return True

    def _missed(self, job_id: int) -> None:
        self.pool.abandon(job_id)
        self._outcomes.pop(job_id, None)
        log.warning("job %d: commit window closed before we voted", job_id)
        self.journal.set_job(self.chain_id, self.addr, job_id, JobStage.SKIPPED, note="commit window missed")

    def _decide(self, job: OnchainJob, commit_end: int) -> None:
        """Commit the saved report's vote, or the finished audit's; start the audit if none runs."""
        report = self.load_report(job.job_id)
        if report is not None and not report.abstain:
            self._commit(job.job_id, report)
            return
        outcome = self._outcomes.pop(job.job_id, None) or self._await(job, commit_end)
        if outcome is not None:
            self._apply(job.job_id, outcome)

    def _await(self, job: OnchainJob, commit_end: int) -> Outcome | None:
        """The job's audit outcome once it is known: None while it runs within its budget."""
        task = self.pool.task(job.job_id)
        if task is None:
            self._start(job, commit_end)
            return None
        if not task.budget.expired():
            return None
        self.collect()  # finished just now?
        if job.job_id in self._outcomes:
            return self._outcomes.pop(job.job_id)
        self.pool.abandon(job.job_id)
        outcome = task.decide()
        log.warning("job %d: the audit's budget (%.0f s) ran out in its %s phase; decided on what is known: %s",
                    job.job_id, task.budget_s, task.phase.value, outcome.report.verdict.value)
        return outcome

    def _start(self, job: OnchainJob, commit_end: int) -> None:
        job_id = job.job_id
        if not self._may_vote(job):
            return
        budget = self._budget(job, commit_end)
        if budget.expired():
            self._give_up(job_id)
            return
        facts, _ = read_job_facts(self.gw, job_id)
        self.pool.submit(AuditTask(facts, budget, self.settings, journal=self.journal, audit=self.audit,
                                   replay_lock=self.pool.replay_lock))
        log.info("job %d: auditing %d segment(s) within %.0f s (commit window ends at %d)",
                 job_id, len(facts.segments()), budget.remaining(), commit_end)

    def _budget(self, job: OnchainJob, commit_end: int) -> Budget:
        """Until ``commit_end`` less the margin (at most a quarter of the window), in chain time."""
        window = commit_end - job.voting_start
        margin = min(self.config.commit_margin_s, window * MAX_MARGIN_SHARE)
        return Budget.of(commit_end - margin - self.clock.now())

    def _may_vote(self, job: OnchainJob) -> bool:
        """Not our own job, and enough free stake (else the job is skipped, with the reason)."""
        job_id = job.job_id
        if self.me.lower() in (job.requester.lower(), job.provider.lower()):
            self.journal.set_job(self.chain_id, self.addr, job_id, JobStage.SKIPPED, note="own job")
            return False
        free = self.gw.free_stake(self.me)
        need = self.gw.param("min_verifier_stake")
        if free < need:
            log.warning("job %d: free stake %d below min_verifier_stake %d; run `greenproof verifier stake`",
                        job_id, free, need)
            self.journal.set_job(self.chain_id, self.addr, job_id, JobStage.SKIPPED, note="insufficient stake")
            return False
        return True

    def _give_up(self, job_id: int) -> None:
        """No time left to audit before the commit deadline: abstain, saying why."""
        failure = self.retries.failure(job_id)
        reason = "no time left to audit before the commit deadline"
        if failure is not None:
            reason += f" (last try: {failure.reason})"
        report = self._retried.pop(job_id, None)
        path = None
        if report is not None:
            report.abstentions.append(reason)
            path = str(report.conclude().save(self.config.data_dir))
        log.warning("job %d: abstaining (no vote): %s", job_id, reason)
        self.journal.set_job(self.chain_id, self.addr, job_id, JobStage.SKIPPED, report_path=path,
                             note=f"abstain: {reason}"[:1000])

    def _apply(self, job_id: int, outcome: Outcome) -> None:
        """Act on a finished audit: commit its vote, record the abstention, or retry the job later."""
        report = outcome.report
        report.verifier = self.me
        if outcome.kind is OutcomeKind.RETRY:
            self._retried[job_id] = report
            raise VerifierError(f"verifier: job {job_id}: {outcome.reason}")
        self._retried.pop(job_id, None)
        path = report.save(self.config.data_dir)
        if outcome.kind is OutcomeKind.ABSTAIN:
            log.warning("job %d: abstaining (no vote): %s (report %s)", job_id, outcome.reason, path)
            self.journal.set_job(self.chain_id, self.addr, job_id, JobStage.SKIPPED, report_path=str(path),
                                 note=f"abstain: {outcome.reason}"[:1000])
            return
        self.journal.set_job(self.chain_id, self.addr, job_id, JobStage.AUDITED, report_path=str(path))
        log.info("job %d: audited in %.1f s: %s (report %s)", job_id, report.audit_seconds or 0.0,
                 report.verdict.value, path)
        self._commit(job_id, report)

    def audit_and_commit(self, job_id: int, job: OnchainJob) -> None:
        """Audit ``job_id`` now in this thread, unless its report is saved, and commit the
        vote (``verifier check --vote``); an abstention commits nothing."""
        if not self._may_vote(job):
            return
        report = self.load_report(job_id)
        if report is None:
            report = audit_onchain_job(self.gw, job_id, self.config, self.audit)
            path = report.save(self.config.data_dir)
            self.journal.set_job(self.chain_id, self.addr, job_id, JobStage.AUDITED, report_path=str(path))
        if report.abstain:
            log.warning("job %d: abstaining (no vote): %s", job_id, "; ".join(report.abstentions))
            return
        self._commit(job_id, report)

    def _commit(self, job_id: int, report: AuditReport) -> None:
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

    def _closed(self, job: OnchainJob) -> None:
        """A finalized job: settle the votes, mark it done, withdraw."""
        job_id = job.job_id
        vote = self.journal.vote(self.chain_id, self.addr, job_id, self.me)
        if vote is not None and vote.stage in (VoteStage.COMMITTED, VoteStage.REVEALED, VoteStage.MISSED):
            self.settle(job_id, vote)
            vote = self.journal.vote(self.chain_id, self.addr, job_id, self.me)
        if vote is None or vote.stage in (VoteStage.SETTLED, VoteStage.PREPARED):
            self.journal.set_job(self.chain_id, self.addr, job_id, JobStage.DONE)
        self.withdraw()

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
