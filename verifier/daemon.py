"""The verifier daemon: sit on the court's committees, audit, vote with proof of replay, collect.

The chain loop (one ``tick`` every ``poll_s``) never waits for an audit:

1. read ``SeatsDrawn`` events (VerifierCourt) from the persisted cursor: a round
   whose voters include this account is a seat to vote (the account may hold
   several seats of one round: one vote covers them all); only seated
   verifiers vote (docs/court.md);
2. take each job it sits on one step further, each on its own (a job that cannot
   be read or acted on is logged with its reason and retried alone after its own
   backoff, :class:`greenproof.chain.retries.JobRetries`; every other job keeps moving):

   * the case's round 0 is drawn at the audit draw, its windows start once every
     audited segment is open (``case_of``: ``commit_end``, ``reveal_end``); a
     provider that does not open them by the open deadline is slashed
     (``slash_unopened``: the case is dropped and the seats freed);
   * inside the current round's commit window, seated, no vote yet: gather the
     job's facts from the chain (``JobPosted``, ``JobAccepted``,
     ``ResultCommitted`` with the total movement, ``SegmentOpened`` with the
     seals and movements, the draw's indices and movement targets)
     and hand the audit to the pool (:mod:`verifier.auditor`: its own thread, its
     results on a queue), with a **budget** ending ``commit margin`` before the
     round's commit window closes;
   * an audit that finished: save the report; its ballot
     (:func:`verifier.votes.ballot_of`: fraud, or ok with the replayed work
     digests of the distinct audited segments, ascending) is written with a
     fresh salt durably, then ``commit_vote``; an abstention casts no vote (the
     seat is a no-show; logged at WARNING, the report says why); a job whose
     spec could not be read is tried again after its backoff while time is left;
   * an audit whose budget ran out: decide from what is known
     (:meth:`verifier.auditor.AuditTask.decide`: the provider's checkpoints not
     arriving is fraud, the verifier's own slowness an abstention) and ignore
     the late result;
   * inside the reveal window: ``reveal_vote`` with the saved salt and digests;
     after it: ``finalize`` (anyone may; the first caller wins). A round without a
     majority draws the next, larger round at ``finalize``: its ``SeatsDrawn``
     is followed like the first (a saved vote is cast again with a new salt; an
     abstention is audited again with the new round's budget);
   * once the case is decided: ``settle_seat`` for every seat of every round of
     the job (ours too: seats stay busy in the pool until settled), then
     ``withdraw`` from the market.

Everything needed across a crash is on disk: the cursor, the seats with their
salts and digests, and every finished segment check in
``{data_dir}/verifier.sqlite`` (:mod:`verifier.votes`; a restarted audit resumes
with the segments still to check), the reports in ``{data_dir}/reports``. Time
is the chain's (the latest block's timestamp, and
:class:`greenproof.chain.clock.ChainClock` between blocks). Every read,
transaction and event goes through the contracts' one gateway
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

from greenproof.chain.clock import ChainClock, chain_time
from greenproof.chain.errors import ChainError, TxError
from greenproof.chain.gateway import Gateway
from greenproof.chain.models import (
    CaseView,
    JobAccepted,
    JobEvent,
    JobPosted,
    JobState,
    OnchainJob,
    ResultCommitted,
    SeatsDrawn,
    SegmentOpened,
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
from verifier.votes import (
    OPEN_SEATS,
    Abstention,
    JobStage,
    SeatRecord,
    SeatStage,
    VoteJournal,
    VoteJournalError,
    ballot_of,
)

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
    event that cannot be found (a drawn index, or a movement target no opened
    segment's bracket holds) means the read is incomplete: VerifierError (try later).
    The audited segments are the drawn indices, then per movement target the opened
    segment with ``start_move <= u < end_move``.
    """
    job = gw.job(job_id)
    posted = _last(gw, JobPosted, job_id)
    accepted = _last(gw, JobAccepted, job_id)
    committed = _last(gw, ResultCommitted, job_id)
    opened = [
        OpenedSegment(index=e.index, start_hash=e.start_hash, start_energy_mj=e.start_energy_mj,
                      start_seal=e.start_seal, end_hash=e.end_hash, end_energy_mj=e.end_energy_mj,
                      end_seal=e.end_seal, start_move=e.start_move, end_move=e.end_move)
        for e in gw.events(SegmentOpened, gw.deployment.deployment_block, job_id=job_id)
    ]
    indices = gw.audit_indices(job_id)
    targets = gw.movement_draws(job_id)
    brackets = [bracket_of(opened, u) for u in targets]
    missing = sorted(set(indices) - {s.index for s in opened})
    unheld = [u for u, k in zip(targets, brackets, strict=True) if k is None]
    if job.state is JobState.VOTING and (missing or unheld):
        raise VerifierError(f"verifier: job {job_id}: no SegmentOpened event found for audited "
                            f"segment(s) {missing} or movement target(s) {unheld} although the job is in voting")
    facts = JobFacts(
        job_id=job_id, chain_id=gw.chain.chain_id, market=gw.market_address,
        spec_uri=posted.spec_uri, spec_hash=posted.spec_hash, num_segments=posted.num_segments,
        result_uri=committed.result_uri, provider=accepted.provider,
        provider_class=accepted.determinism_class,
        audit_indices=[*indices, *(k for k in brackets if k is not None)], opened=opened,
        final_state_hash=committed.final_state_hash, energy_mj=committed.energy_mj,
        move_total=committed.move_total, movement_draws=targets,
    )
    return facts, job


def bracket_of(opened: list[OpenedSegment], target: int) -> int | None:
    """The opened segment whose movement bracket ``start_move <= target < end_move`` holds a
    movement target (the market accepted no opening otherwise), or None."""
    for seg in opened:
        if seg.start_move is not None and seg.end_move is not None and seg.start_move <= target < seg.end_move:
            return seg.index
    return None


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
        try:
            self.journal.bind(self.chain_id, self.addr, gw.chain.identity(self.deploy_block))
        except VoteJournalError as exc:
            raise VerifierError(str(exc)) from None
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
                    log.info("verifier: every job closed, seats settled, nothing to withdraw; exiting")
                    return
            except ChainError as exc:
                backoff = min(60.0, backoff * 2)
                log.warning("verifier: chain error: %s; retrying in %.0fs", str(exc)[:300], backoff)
            self.stopping.wait(backoff)

    def stop(self) -> None:
        self.stopping.set()

    def tick(self) -> None:
        """One pass: new seats, finished audits, then every job we sit on one step further, each on its own."""
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
        """Record the seats the court drew for this account since the cursor."""
        head = self.gw.chain.block_number()
        start = self.journal.cursor(self.chain_id, self.addr, self.deploy_block)
        if start > head:
            return
        for ev in self.gw.events(SeatsDrawn, start, head):
            self._seated(ev)
        self.journal.set_cursor(self.chain_id, self.addr, head + 1)

    def _seated(self, ev: SeatsDrawn) -> None:
        seats = sum(v.lower() == self.me.lower() for v in ev.voters)
        if seats == 0:
            return
        self.journal.add_seat(self.chain_id, self.addr, ev.job_id, ev.round, self.me, seats)
        log.info("job %d: seated in round %d (%d of its %d seat(s))", ev.job_id, ev.round, seats, len(ev.voters))
        if self.journal.job_stage(self.chain_id, self.addr, ev.job_id) is None:
            self.journal.set_job(self.chain_id, self.addr, ev.job_id, JobStage.SEEN)

    # ------------------------------------------------------------------ one job
    def advance(self, job_id: int, now: int) -> None:
        """Move one job forward as far as the chain's clock allows (never waiting for its audit)."""
        case = self.gw.case_of(job_id)
        if case.decided:
            self.pool.abandon(job_id)
            self._closed(job_id, case)
        elif case.voting:
            seat = self.journal.seat(self.chain_id, self.addr, job_id, case.round, self.me)
            if seat is not None:
                self._vote(seat, case, now)
            if now >= case.reveal_end:
                self.finalize(job_id)
        else:  # round 0 is drawn; the provider is still opening the audited segments
            self._opening(job_id, now)

    def _opening(self, job_id: int, now: int) -> None:
        """Past the open window nobody will vote: ``slash_unopened`` ends the job and drops
        its case, which frees our seats (anyone may call it; the first caller wins)."""
        job = self.gw.job(job_id)
        if job.state is not JobState.AUDITING or not job.open_deadline or now < job.open_deadline:
            return
        try:
            self.gw.slash_unopened(job_id)
        except TxError as exc:
            if "not auditing" in str(exc):
                return
            raise
        log.warning("job %d: the provider did not open its audited segments by %s; slashed it, the case "
                    "is dropped", job_id, chain_time(job.open_deadline))

    def _vote(self, seat: SeatRecord, case: CaseView, now: int) -> None:
        """Our seat in the current round: audit and commit, reveal, or record a missed window."""
        if seat.stage is SeatStage.PREPARED:
            self._landed(seat)
        if seat.stage in (SeatStage.SEATED, SeatStage.PREPARED):
            if now >= case.commit_end:
                self._missed(seat, "the commit window closed before we voted")
            else:
                self._decide(seat, case)
        elif seat.stage is SeatStage.COMMITTED:
            if case.commit_end <= now < case.reveal_end:
                self.reveal(seat)
            elif now >= case.reveal_end:
                self._missed(seat, "the reveal window passed before we revealed")

    def _landed(self, seat: SeatRecord) -> None:
        """A PREPARED vote whose commit is on chain after all (its receipt was lost) becomes COMMITTED."""
        if self.gw.seat_of(seat.job_id, seat.round, self.me).committed:
            self.journal.set_seat_stage(seat, SeatStage.COMMITTED)

    def _missed(self, seat: SeatRecord, why: str) -> None:
        self.pool.abandon(seat.job_id)
        self._outcomes.pop(seat.job_id, None)
        log.warning("job %d: round %d: %s (the seat is a no-show)", seat.job_id, seat.round, why)
        self.journal.set_seat_stage(seat, SeatStage.MISSED, note=why)

    def _decide(self, seat: SeatRecord, case: CaseView) -> None:
        """Commit the saved report's vote, or the finished audit's; start the audit if none runs
        (a saved abstention from an earlier round is audited again with this round's budget)."""
        report = self.load_report(seat.job_id)
        if report is not None and not report.abstain:
            self._commit(seat, report)
            return
        outcome = self._outcomes.pop(seat.job_id, None) or self._await(seat, case)
        if outcome is not None:
            self._apply(seat, outcome)

    def _await(self, seat: SeatRecord, case: CaseView) -> Outcome | None:
        """The job's audit outcome once it is known: None while it runs within its budget."""
        job_id = seat.job_id
        task = self.pool.task(job_id)
        if task is None:
            self._start(seat, case)
            return None
        if not task.budget.expired():
            return None
        self.collect()  # finished just now?
        if job_id in self._outcomes:
            return self._outcomes.pop(job_id)
        self.pool.abandon(job_id)
        outcome = task.decide()
        log.warning("job %d: the audit's budget (%.0f s) ran out in its %s phase; decided on what is known: %s",
                    job_id, task.budget_s, task.phase.value, outcome.report.verdict.value)
        return outcome

    def _start(self, seat: SeatRecord, case: CaseView) -> None:
        job_id = seat.job_id
        budget = self._budget(case)
        if budget.expired():
            self._give_up(seat)
            return
        facts, _ = read_job_facts(self.gw, job_id)
        self.pool.submit(AuditTask(facts, budget, self.settings, journal=self.journal, audit=self.audit,
                                   replay_lock=self.pool.replay_lock))
        log.info("job %d: auditing %d segment(s) within %.0f s (round %d's commit window ends at %s)",
                 job_id, len(facts.segments()), budget.remaining(), case.round, chain_time(case.commit_end))

    def _budget(self, case: CaseView) -> Budget:
        """Until the round's ``commit_end`` less the margin (at most a quarter of the window), in chain time."""
        margin = min(self.config.commit_margin_s, case.commit_window * MAX_MARGIN_SHARE)
        return Budget.of(case.commit_end - margin - self.clock.now())

    def _give_up(self, seat: SeatRecord) -> None:
        """No time left to audit before the commit deadline: abstain, saying why."""
        job_id = seat.job_id
        failure = self.retries.failure(job_id)
        reason = "no time left to audit before the commit deadline"
        if failure is not None:
            reason += f" (last try: {failure.reason})"
        report = self._retried.pop(job_id, None)
        path = None
        if report is not None:
            report.abstentions.append(reason)
            path = str(report.conclude().save(self.config.data_dir))
        self._abstain(seat, reason, path)

    def _abstain(self, seat: SeatRecord, reason: str, report_path: str | None = None) -> None:
        """No vote in this round (the seat is a no-show): logged at WARNING with the reason."""
        log.warning("job %d: abstaining in round %d (no vote): %s", seat.job_id, seat.round, reason)
        self.journal.set_seat_stage(seat, SeatStage.ABSTAINED, note=f"abstain: {reason}")
        if report_path is not None:
            self.journal.set_job(self.chain_id, self.addr, seat.job_id, JobStage.SEEN, report_path=report_path,
                                 note=f"abstain: {reason}"[:1000])

    def _apply(self, seat: SeatRecord, outcome: Outcome) -> None:
        """Act on a finished audit: commit its vote, record the abstention, or retry the job later."""
        job_id = seat.job_id
        report = outcome.report
        report.verifier = self.me
        if outcome.kind is OutcomeKind.RETRY:
            self._retried[job_id] = report
            raise VerifierError(f"verifier: job {job_id}: {outcome.reason}")
        self._retried.pop(job_id, None)
        path = report.save(self.config.data_dir)
        if outcome.kind is OutcomeKind.ABSTAIN:
            self._abstain(seat, f"{outcome.reason} (report {path})", str(path))
            return
        self.journal.set_job(self.chain_id, self.addr, job_id, JobStage.AUDITED, report_path=str(path))
        log.info("job %d: audited in %.1f s: %s (report %s)", job_id, report.audit_seconds or 0.0,
                 report.verdict.value, path)
        self._commit(seat, report)

    def audit_and_commit(self, job_id: int) -> None:
        """Audit ``job_id`` now in this thread, unless its report is saved, and commit the vote of
        this account's seats in the current round (``verifier check --vote``); an abstention
        commits nothing. VerifierError when the case is not voting or this account holds no seat."""
        case = self.gw.case_of(job_id)
        if not case.voting:
            raise VerifierError(f"verifier: job {job_id}'s case is not voting (outcome {case.outcome.value}, "
                                f"voting start {case.voting_start})")
        view = self.gw.seat_of(job_id, case.round, self.me)
        if not view.seated:
            raise VerifierError(f"verifier: {self.me} holds no seat in round {case.round} of job {job_id}: "
                                "only seated verifiers vote (`greenproof verifier join` to enter the pool)")
        seat = self.journal.add_seat(self.chain_id, self.addr, job_id, case.round, self.me, view.seats)
        if self.journal.job_stage(self.chain_id, self.addr, job_id) is None:
            self.journal.set_job(self.chain_id, self.addr, job_id, JobStage.SEEN)
        report = self.load_report(job_id)
        if report is None or report.abstain:
            report = audit_onchain_job(self.gw, job_id, self.config, self.audit)
            path = report.save(self.config.data_dir)
            stage = JobStage.SEEN if report.abstain else JobStage.AUDITED
            self.journal.set_job(self.chain_id, self.addr, job_id, stage, report_path=str(path))
        if report.abstain:
            log.warning("job %d: abstaining (no vote): %s", job_id, "; ".join(report.abstentions))
            return
        self._commit(seat, report)

    def _commit(self, seat: SeatRecord, report: AuditReport) -> None:
        """Commit the report's ballot for our seats of ``seat.round`` (its salt and digests on disk
        first), or abstain when the report cannot support a vote the court counts."""
        ballot = ballot_of(report)
        if isinstance(ballot, Abstention):
            self._abstain(seat, ballot.reason)
            return
        seat = self.journal.prepare_vote(seat, ballot)
        if self.gw.seat_of(seat.job_id, seat.round, self.me).committed:
            self.journal.set_seat_stage(seat, SeatStage.COMMITTED)  # committed before a crash
            return
        try:
            receipt = self.gw.commit_vote(seat.job_id, seat.commitment or b"")
        except TxError as exc:
            if "already committed" in str(exc):
                self.journal.set_seat_stage(seat, SeatStage.COMMITTED)
                return
            raise
        tx = receipt["transactionHash"].to_0x_hex()
        self.journal.set_seat_stage(seat, SeatStage.COMMITTED, tx)
        self.record_tx(seat.job_id, "commit_vote", tx, receipt["blockNumber"])
        log.info("job %d: committed a sealed %s vote for %d seat(s) of round %d", seat.job_id,
                 "FRAUD" if ballot.fraud else "ok", seat.seats, seat.round)

    def reveal(self, seat: SeatRecord) -> None:
        ballot = seat.ballot
        receipt = self.gw.reveal_vote(seat.job_id, ballot.fraud, seat.salt or b"", ballot.digests,
                                      ballot.segments)
        tx = receipt["transactionHash"].to_0x_hex()
        self.journal.set_seat_stage(seat, SeatStage.REVEALED, tx)
        self.record_tx(seat.job_id, "reveal_vote", tx, receipt["blockNumber"])
        log.info("job %d: revealed %s in round %d (%d digest(s))", seat.job_id,
                 "FRAUD" if ballot.fraud else "ok", seat.round, len(ballot.digests))

    def finalize(self, job_id: int) -> None:
        """Ask the court to decide the round (a round without a majority draws the next one)."""
        try:
            receipt = self.gw.finalize(job_id)
        except TxError as exc:
            if "not voting" in str(exc):  # someone else finalized first
                return
            raise
        tx = receipt["transactionHash"].to_0x_hex()
        self.record_tx(job_id, "finalize", tx, receipt["blockNumber"])

    # ------------------------------------------------------------------ after the decision
    def _closed(self, job_id: int, case: CaseView) -> None:
        """A decided case: settle every seat of every round (ours too), mark the job done, withdraw."""
        for rnd, voter in self._seat_holders(job_id, case.round):
            self._settle(job_id, rnd, voter)
        mine = self.journal.seats_of(self.chain_id, self.addr, job_id, self.me)
        if all(s.stage is SeatStage.SETTLED for s in mine):
            self.journal.set_job(self.chain_id, self.addr, job_id, JobStage.DONE, note=case.outcome.value)
            log.info("job %d: case decided %s in round %d; our seats settled", job_id, case.outcome.value,
                     case.round)
        self.withdraw()

    def _seat_holders(self, job_id: int, last_round: int) -> list[tuple[int, str]]:
        """Every ``(round, voter)`` seated on the job's case, from its ``SeatsDrawn`` events."""
        holders = {(ev.round, voter) for ev in self.gw.events(SeatsDrawn, self.deploy_block, job_id=job_id)
                   if ev.round <= last_round for voter in ev.voters}
        return sorted(holders)

    def _settle(self, job_id: int, rnd: int, voter: str) -> None:
        """``settle_seat`` unless already settled; ours is recorded in the journal and the report."""
        ours = voter.lower() == self.me.lower()
        seat = self.journal.seat(self.chain_id, self.addr, job_id, rnd, self.me) if ours else None
        tx: str | None = None
        if not self.gw.seat_of(job_id, rnd, voter).settled:
            try:
                receipt = self.gw.settle_seat(job_id, rnd, voter)
                tx = receipt["transactionHash"].to_0x_hex()
                if ours:
                    self.record_tx(job_id, "settle_seat", tx, receipt["blockNumber"])
            except TxError as exc:
                if "already settled" not in str(exc):
                    raise
        if seat is not None and seat.stage is not SeatStage.SETTLED:
            self.journal.set_seat_stage(seat, SeatStage.SETTLED, tx)

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
        """Every market job closed, every seat of ours settled, nothing claimable."""
        if self.journal.jobs(self.chain_id, self.addr, (JobStage.SEEN, JobStage.AUDITED)):
            return False
        if self.journal.seats(self.chain_id, self.addr, self.me, OPEN_SEATS) or self.gw.claimable() > 0:
            return False
        for job_id in range(1, self.gw.next_job_id()):
            if job_id in self._final:
                continue
            if not self.gw.job(job_id).state.final:
                return False
            self._final.add(job_id)
        return True
