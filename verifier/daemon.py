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
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from verifier.audit import AuditConfig, AuditJob, Fetch, OpenedSegment, audit_job
from verifier.evidence import AuditReport, TxRecord
from verifier.votes import JobStage, VoteJournal, VoteRecord, VoteStage

log = logging.getLogger("greenproof.verifier")

VOTE_STATUS_NONE, VOTE_STATUS_COMMITTED = 0, 1


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


def _one(logs: list[Any], what: str, job_id: int) -> Any:
    if not logs:
        raise VerifierError(f"verifier: no {what} event for job {job_id} (wrong --deployment or start block?)")
    return logs[-1]["args"]


def read_audit_job(chain: Any, job_id: int, from_block: int = 0) -> tuple[AuditJob, Any]:
    """Everything the decision needs for ``job_id``, read from events and views."""
    from greenproof.chain.market import Market
    from greenproof.spec import load_spec

    market = Market(chain)
    job = market.job(job_id)
    flt = {"job_id": job_id}
    posted = _one(chain.logs("JobPosted", from_block, args=flt), "JobPosted", job_id)
    accepted = _one(chain.logs("JobAccepted", from_block, args=flt), "JobAccepted", job_id)
    committed = _one(chain.logs("ResultCommitted", from_block, args=flt), "ResultCommitted", job_id)
    opened = [
        OpenedSegment(
            index=int(e["args"]["index"]),
            start_hash=bytes(e["args"]["start_hash"]),
            start_energy_mj=int(e["args"]["start_energy_mj"]),
            end_hash=bytes(e["args"]["end_hash"]),
            end_energy_mj=int(e["args"]["end_energy_mj"]),
        )
        for e in chain.logs("SegmentOpened", from_block, args=flt)
    ]
    spec = load_spec(posted["spec_uri"])
    if spec.spec_hash() != bytes(posted["spec_hash"]):
        raise VerifierError(
            f"verifier: job {job_id}: the spec at {posted['spec_uri']} does not hash to the posted spec_hash"
        )
    audit = AuditJob(
        job_id=job_id,
        spec=spec,
        spec_uri=posted["spec_uri"],
        result_uri=committed["result_uri"],
        provider_class=bytes(accepted["determinism_class"]),
        provider=str(accepted["provider"]),
        audit_indices=market.audit_indices(job_id),
        opened=opened,
        final_state_hash=bytes(committed["final_state_hash"]),
        energy_mj=int(committed["energy_mj"]),
        chain_id=chain.chain_id,
        market=chain.market.address,
    )
    return audit, job


def audit_onchain_job(chain: Any, job_id: int, config: VerifierConfig, from_block: int = 0) -> AuditReport:
    """Read ``job_id`` from the chain and audit it now (``verifier check``)."""
    audit, _job = read_audit_job(chain, job_id, from_block)
    if not audit.opened:
        raise VerifierError(f"verifier: job {job_id} has no opened segments yet (state {_job.state.value})")
    fetch = RetryingFetch(config.fetch_attempts, config.fetch_backoff_s)
    report = audit_job(audit, config.audit_config(), fetch=fetch)
    if chain.account is not None:
        report.verifier = chain.address
    return report


class Verifier:
    """The daemon. ``run()`` loops; ``tick()`` is one pass (tests drive it directly)."""

    def __init__(self, chain: Any, config: VerifierConfig, fetch: Fetch | None = None) -> None:
        from greenproof.chain.market import Market

        self.chain = chain
        self.config = config
        self.market = Market(chain)
        self.journal = VoteJournal(config.data_dir)
        self.fetch = fetch or RetryingFetch(config.fetch_attempts, config.fetch_backoff_s)
        self.me = chain.address
        self.chain_id = chain.chain_id
        self.addr = chain.market.address
        self.deploy_block = int(getattr(chain.deployment, "block", 0) or 0)
        self.stopping = threading.Event()
        self._final: set[int] = set()

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        from greenproof.chain.client import ChainError

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
        now = self.chain.timestamp()
        for job_id in self.journal.jobs(self.chain_id, self.addr, (JobStage.SEEN, JobStage.AUDITED)):
            self.advance(job_id, now)

    # ------------------------------------------------------------------ events
    def scan(self) -> None:
        head = self.chain.block_number()
        start = self.journal.cursor(self.chain_id, self.addr, self.deploy_block)
        if start > head:
            return
        for ev in self.chain.logs("VotingStarted", start, head):
            job_id = int(ev["args"]["job_id"])
            if self.journal.job_stage(self.chain_id, self.addr, job_id) is None:
                log.info("job %d: voting started (commit until %d)", job_id, int(ev["args"]["commit_end"]))
                self.journal.set_job(self.chain_id, self.addr, job_id, JobStage.SEEN)
        self.journal.set_cursor(self.chain_id, self.addr, head + 1)

    # ------------------------------------------------------------------ one job
    def _windows(self, job: Any) -> tuple[int, int]:
        commit_end = job.voting_start + self.market.param("vote_commit_window")
        return commit_end, commit_end + self.market.param("vote_reveal_window")

    def advance(self, job_id: int, now: int) -> None:
        """Move one job forward as far as the chain's clock allows."""
        from greenproof.chain.client import TxError
        from greenproof.chain.market import JobState

        job = self.market.job(job_id)
        stage = self.journal.job_stage(self.chain_id, self.addr, job_id)
        vote = self.journal.vote(self.chain_id, self.addr, job_id, self.me)
        try:
            if job.state is JobState.VOTING:
                commit_end, reveal_end = self._windows(job)
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

    def audit_and_commit(self, job_id: int, job: Any) -> None:
        from greenproof.chain.client import TxError

        if self.me.lower() in (job.requester.lower(), job.provider.lower()):
            self.journal.set_job(self.chain_id, self.addr, job_id, JobStage.SKIPPED, note="own job")
            return
        free = self.market.free_stake(self.me)
        need = self.market.param("min_verifier_stake")
        if free < need:
            log.warning("job %d: free stake %d below min_verifier_stake %d; run `greenproof verifier stake`",
                        job_id, free, need)
            self.journal.set_job(self.chain_id, self.addr, job_id, JobStage.SKIPPED, note="insufficient stake")
            return
        report = self.load_report(job_id)
        if report is None:
            audit, _ = read_audit_job(self.chain, job_id, self.deploy_block)
            report = audit_job(audit, self.config.audit_config(), fetch=self.fetch)
            report.verifier = self.me
            path = report.save(self.config.data_dir)
            self.journal.set_job(self.chain_id, self.addr, job_id, JobStage.AUDITED, report_path=str(path))
            log.info("job %d: audited: %s (report %s)", job_id, report.verdict.value, path)
        # the salt is on disk (synchronous sqlite) before the commit is sent
        vote = self.journal.prepare_vote(self.chain_id, self.addr, job_id, self.me, report.fraud)
        onchain = self.chain.call(self.chain.market.functions.vote_of(job_id, self.me))
        if int(onchain[2]) != VOTE_STATUS_NONE:  # committed before a crash: the receipt was lost
            self.journal.set_vote_stage(vote, VoteStage.COMMITTED)
            return
        try:
            receipt = self.chain.transact(
                self.chain.market.functions.commit_vote(job_id, vote.commitment),
                what="commit vote", context={"job": job_id},
            )
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
        receipt = self.chain.transact(
            self.chain.market.functions.reveal_vote(vote.job_id, vote.fraud, vote.salt),
            what="reveal vote", context={"job": vote.job_id},
        )
        tx = receipt["transactionHash"].to_0x_hex()
        self.journal.set_vote_stage(vote, VoteStage.REVEALED, tx)
        self.record_tx(vote.job_id, "reveal_vote", tx, receipt["blockNumber"])
        log.info("job %d: revealed %s", vote.job_id, "FRAUD" if vote.fraud else "ok")

    def finalize(self, job_id: int) -> None:
        from greenproof.chain.client import TxError

        try:
            receipt = self.chain.transact(self.chain.market.functions.finalize(job_id),
                                          what="finalize", context={"job": job_id})
        except TxError as exc:
            if "not voting" in str(exc):  # someone else finalized first
                return
            raise
        tx = receipt["transactionHash"].to_0x_hex()
        self.record_tx(job_id, "finalize", tx, receipt["blockNumber"])

    def settle(self, job_id: int, vote: VoteRecord) -> None:
        """Settle the job's other unsettled votes (winners are paid only after the
        non-winners), then ours; a ``non-winning votes unsettled`` revert waits."""
        from greenproof.chain.client import TxError

        voters = {str(e["args"]["voter"]) for e in self.chain.logs("VoteCommitted", self.deploy_block,
                                                                    args={"job_id": job_id})}
        others = sorted(v for v in voters if v.lower() != self.me.lower())
        for voter in [*others, self.me]:
            view = self.chain.call(self.chain.market.functions.vote_of(job_id, voter))
            if bool(view[3]):
                continue
            try:
                receipt = self.chain.transact(self.chain.market.functions.settle_vote(job_id, voter),
                                              what="settle vote", context={"job": job_id, "voter": voter})
            except TxError as exc:
                if "non-winning votes unsettled" in str(exc) or "already settled" in str(exc):
                    continue
                raise
            if voter.lower() == self.me.lower():
                tx = receipt["transactionHash"].to_0x_hex()
                self.journal.set_vote_stage(vote, VoteStage.SETTLED, tx)
                self.record_tx(job_id, "settle_vote", tx, receipt["blockNumber"])
        view = self.chain.call(self.chain.market.functions.vote_of(job_id, self.me))
        if bool(view[3]) and vote.stage is not VoteStage.SETTLED:
            self.journal.set_vote_stage(vote, VoteStage.SETTLED)

    def withdraw(self) -> None:
        if self.market.claimable(self.me) > 0:
            receipt = self.chain.transact(self.chain.market.functions.withdraw(), what="withdraw")
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
        from greenproof.chain.market import FINAL_STATES

        if self.journal.jobs(self.chain_id, self.addr, (JobStage.SEEN, JobStage.AUDITED)):
            return False
        pending = self.journal.votes(self.chain_id, self.addr, self.me,
                                     (VoteStage.COMMITTED, VoteStage.REVEALED, VoteStage.MISSED))
        if pending or self.market.claimable(self.me) > 0:
            return False
        last = int(self.market.call("next_job_id"))
        for job_id in range(1, last):
            if job_id in self._final:
                continue
            if self.market.job(job_id).state not in FINAL_STATES:
                return False
            self._final.add(job_id)
        return True
