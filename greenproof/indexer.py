"""Read the market's events into typed views: jobs, providers, verifiers.

The indexer is the one reader behind the dashboard, ``requester status/watch``
and the demo's summary. It is split in two so that the bookkeeping can be
tested without a chain:

* :class:`MarketIndex` — a pure reducer: ``apply(event, timestamp)`` folds one
  JobMarket event (a :mod:`greenproof.chain.models` event) into
  :class:`JobView`, :class:`ProviderView` and :class:`VerifierView` records.
* :class:`Indexer` — follows JobMarket's events through the
  :class:`~greenproof.chain.gateway.Gateway` (the client's chunked, retrying
  ``eth_getLogs``, decoded into the event models), feeds the reducer, and adds
  a few live view calls (stake, locked, green share) at snapshot time.

The events are the contract's own models: a renamed or dropped field fails
where the log is decoded, it never folds in as a default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from greenproof.chain.models import (
    AuditDrawn,
    AuditRearmed,
    Event,
    JobAccepted,
    JobCancelled,
    JobEvent,
    JobExpired,
    JobFinalized,
    JobPosted,
    JobState,
    ProviderSlashed,
    ResultCommitted,
    SegmentOpened,
    VoteCommitted,
    VoteRevealed,
    VoteSettled,
    VotingStarted,
)

if TYPE_CHECKING:
    from greenproof.chain.gateway import Gateway

log = logging.getLogger(__name__)

#: millijoules per watt-hour (1 Wh = 3600 J = 3.6e6 mJ).
MJ_PER_WH = 3_600_000


def mj_to_wh(energy_mj: int | float) -> float:
    return energy_mj / MJ_PER_WH


class VoteView(BaseModel):
    verifier: str
    committed_block: int
    revealed: bool = False
    fraud: bool | None = None
    weight: int = 0
    settled: bool = False
    reward: int = 0
    penalty: int = 0


class TimelineEntry(BaseModel):
    event: str
    block: int
    timestamp: int | None = None
    tx_hash: str = ""


class JobView(BaseModel):
    job_id: int
    state: JobState = JobState.OPEN
    requester: str = ""
    provider: str | None = None
    spec_hash: str = ""
    spec_uri: str = ""
    num_segments: int = 0
    audit_samples: int = 0
    payment: int = 0
    verifier_fee: int = 0
    collateral: int = 0
    deadline: int = 0
    min_green_bps: int = 0
    determinism_class: str | None = None
    root: str | None = None
    final_state_hash: str | None = None
    result_uri: str | None = None
    energy_mj: int = 0
    audit_indices: list[int] = Field(default_factory=list)
    opened: dict[int, dict[str, Any]] = Field(
        default_factory=dict, description="segment index -> revealed hashes and energies"
    )
    votes: list[VoteView] = Field(default_factory=list)
    outcome: str | None = None
    paid: int = 0
    bonus: int = 0
    slashed: int = 0
    slash_reason: str | None = None
    carbon_g: int = 0
    posted_at: int | None = None
    finished_at: int | None = None
    timeline: list[TimelineEntry] = Field(default_factory=list)

    @property
    def energy_wh(self) -> float:
        return mj_to_wh(self.energy_mj)

    @property
    def wall_s(self) -> float | None:
        if self.posted_at is None or self.finished_at is None:
            return None
        return float(self.finished_at - self.posted_at)


class ProviderView(BaseModel):
    address: str
    staked: int = 0
    locked: int = 0
    green_bps: int = 0
    jobs_accepted: int = 0
    jobs_paid: int = 0
    jobs_slashed: int = 0
    jobs_expired: int = 0
    energy_mj: int = 0
    carbon_g: int = 0
    earned: int = 0
    bonus: int = 0
    slashed_amount: int = 0


class VerifierView(BaseModel):
    address: str
    staked: int = 0
    votes_committed: int = 0
    votes_revealed: int = 0
    fraud_votes: int = 0
    ok_votes: int = 0
    rewards: int = 0
    penalties: int = 0


class MarketStats(BaseModel):
    block: int = 0
    jobs_total: int = 0
    jobs_by_state: dict[str, int] = Field(default_factory=dict)
    providers: int = 0
    verifiers: int = 0
    total_paid: int = 0
    total_bonus: int = 0
    total_slashed: int = 0
    total_energy_mj: int = 0
    total_carbon_g: int = 0
    escrow_posted: int = 0


class MarketSnapshot(BaseModel):
    block: int = 0
    jobs: list[JobView] = Field(default_factory=list)
    providers: list[ProviderView] = Field(default_factory=list)
    verifiers: list[VerifierView] = Field(default_factory=list)
    stats: MarketStats = Field(default_factory=MarketStats)

    def job(self, job_id: int) -> JobView | None:
        return next((j for j in self.jobs if j.job_id == job_id), None)


# --------------------------------------------------------------------------- reducer


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


class MarketIndex:
    """Folds JobMarket's events into views. Pure, no I/O."""

    def __init__(self) -> None:
        self.jobs: dict[int, JobView] = {}
        self.providers: dict[str, ProviderView] = {}
        self.verifiers: dict[str, VerifierView] = {}
        self.block = 0
        self._handlers: dict[type[JobEvent], Callable[[Any, JobView, int | None], None]] = {
            JobPosted: self._on_posted,
            JobCancelled: self._on_cancelled,
            JobAccepted: self._on_accepted,
            ResultCommitted: self._on_committed,
            AuditRearmed: self._on_rearmed,
            AuditDrawn: self._on_drawn,
            SegmentOpened: self._on_opened,
            VotingStarted: self._on_voting,
            VoteCommitted: self._on_vote_committed,
            VoteRevealed: self._on_vote_revealed,
            VoteSettled: self._on_vote_settled,
            JobFinalized: self._on_finalized,
            ProviderSlashed: self._on_slashed,
            JobExpired: self._on_expired,
        }

    def provider(self, address: str) -> ProviderView:
        return self.providers.setdefault(address, ProviderView(address=address))

    def verifier(self, address: str) -> VerifierView:
        return self.verifiers.setdefault(address, VerifierView(address=address))

    def apply_all(self, events: Iterable[tuple[Event, int | None]]) -> None:
        """Fold ``(event, block timestamp)`` pairs in chain order."""
        for ev, timestamp in events:
            self.apply(ev, timestamp)

    def apply(self, ev: Event, timestamp: int | None = None) -> None:
        """Fold one event; events that concern no job (``Withdrawn``, ``ParameterSet``) only
        advance the block."""
        self.block = max(self.block, ev.block_number)
        if not isinstance(ev, JobEvent):
            return
        # an event for a job we never saw posted (a partial range) still gets a view
        job = self.jobs.setdefault(ev.job_id, JobView(job_id=ev.job_id))
        self._handlers[type(ev)](ev, job, timestamp)
        job.timeline.append(TimelineEntry(event=type(ev).__name__, block=ev.block_number,
                                          timestamp=timestamp, tx_hash=ev.tx_hash))

    # JobMarket ---------------------------------------------------------------

    def _on_posted(self, ev: JobPosted, job: JobView, at: int | None) -> None:
        job.requester = ev.requester
        job.spec_hash = _hex(ev.spec_hash)
        job.spec_uri = ev.spec_uri
        job.num_segments = ev.num_segments
        job.audit_samples = ev.audit_samples
        job.payment = ev.payment
        job.verifier_fee = ev.verifier_fee
        job.collateral = ev.collateral
        job.deadline = ev.deadline
        job.min_green_bps = ev.min_green_bps
        job.posted_at = at
        job.state = JobState.OPEN

    def _on_cancelled(self, ev: JobCancelled, job: JobView, at: int | None) -> None:
        job.state = JobState.CANCELLED
        job.finished_at = at

    def _on_accepted(self, ev: JobAccepted, job: JobView, at: int | None) -> None:
        job.provider = ev.provider
        job.determinism_class = _hex(ev.determinism_class)
        job.collateral = ev.collateral
        job.state = JobState.ACCEPTED
        self.provider(ev.provider).jobs_accepted += 1

    def _on_committed(self, ev: ResultCommitted, job: JobView, at: int | None) -> None:
        job.root = _hex(ev.root)
        job.final_state_hash = _hex(ev.final_state_hash)
        job.energy_mj = ev.energy_mj
        job.result_uri = ev.result_uri
        job.state = JobState.COMMITTED

    def _on_rearmed(self, ev: AuditRearmed, job: JobView, at: int | None) -> None:
        """The seed block fell out of the blockhash window: the draw waits for a new one."""

    def _on_drawn(self, ev: AuditDrawn, job: JobView, at: int | None) -> None:
        job.audit_indices = list(ev.indices)
        job.state = JobState.AUDITING

    def _on_opened(self, ev: SegmentOpened, job: JobView, at: int | None) -> None:
        job.opened[ev.index] = {
            "start_hash": _hex(ev.start_hash), "start_energy_mj": ev.start_energy_mj,
            "end_hash": _hex(ev.end_hash), "end_energy_mj": ev.end_energy_mj,
        }

    def _on_voting(self, ev: VotingStarted, job: JobView, at: int | None) -> None:
        job.state = JobState.VOTING

    def _on_vote_committed(self, ev: VoteCommitted, job: JobView, at: int | None) -> None:
        job.votes.append(VoteView(verifier=ev.voter, committed_block=ev.block_number, weight=ev.weight))
        job.state = JobState.VOTING
        self.verifier(ev.voter).votes_committed += 1

    def _on_vote_revealed(self, ev: VoteRevealed, job: JobView, at: int | None) -> None:
        for vote in job.votes:
            if vote.verifier == ev.voter:
                vote.revealed, vote.fraud, vote.weight = True, ev.fraud, ev.weight
        v = self.verifier(ev.voter)
        v.votes_revealed += 1
        if ev.fraud:
            v.fraud_votes += 1
        else:
            v.ok_votes += 1

    def _on_vote_settled(self, ev: VoteSettled, job: JobView, at: int | None) -> None:
        for vote in job.votes:
            if vote.verifier == ev.voter:
                vote.settled, vote.reward, vote.penalty = True, ev.reward, ev.penalty
        v = self.verifier(ev.voter)
        v.rewards += ev.reward
        v.penalties += ev.penalty

    def _on_finalized(self, ev: JobFinalized, job: JobView, at: int | None) -> None:
        job.state = ev.outcome
        job.outcome = ev.outcome.value
        job.paid = ev.paid
        job.bonus = ev.bonus
        # a slashed job's event carries energy 0: keep the committed claim for the record
        job.energy_mj = ev.energy_mj or job.energy_mj
        job.carbon_g = ev.carbon_g
        job.finished_at = at
        if job.provider:
            p = self.provider(job.provider)
            if ev.outcome is JobState.PAID:
                p.jobs_paid += 1
                p.earned += job.paid
                p.bonus += job.bonus
            p.energy_mj += job.energy_mj
            p.carbon_g += job.carbon_g

    def _on_slashed(self, ev: ProviderSlashed, job: JobView, at: int | None) -> None:
        job.slashed += ev.amount
        job.slash_reason = ev.reason
        expired = ev.reason == "expired"  # JobExpired follows and sets the state
        if not expired:
            job.state = JobState.SLASHED
            job.outcome = JobState.SLASHED.value
        job.finished_at = job.finished_at or at
        p = self.provider(ev.provider)
        p.slashed_amount += ev.amount
        if not expired:
            p.jobs_slashed += 1

    def _on_expired(self, ev: JobExpired, job: JobView, at: int | None) -> None:
        job.state = JobState.EXPIRED
        job.outcome = JobState.EXPIRED.value
        job.finished_at = at
        if job.provider:
            self.provider(job.provider).jobs_expired += 1

    # ------------------------------------------------------------------ views

    def snapshot(self) -> MarketSnapshot:
        jobs = [self.jobs[k].model_copy(deep=True) for k in sorted(self.jobs)]
        stats = MarketStats(block=self.block, jobs_total=len(jobs))
        for j in jobs:
            stats.jobs_by_state[j.state.value] = stats.jobs_by_state.get(j.state.value, 0) + 1
            stats.total_paid += j.paid
            stats.total_bonus += j.bonus
            stats.total_slashed += j.slashed
            stats.total_energy_mj += j.energy_mj
            stats.total_carbon_g += j.carbon_g
            if not j.state.final:
                stats.escrow_posted += j.payment + j.verifier_fee
        stats.providers = len(self.providers)
        stats.verifiers = len(self.verifiers)
        return MarketSnapshot(
            block=self.block,
            jobs=jobs,
            providers=[p.model_copy() for _, p in sorted(self.providers.items())],
            verifiers=[v.model_copy() for _, v in sorted(self.verifiers.items())],
            stats=stats,
        )


# --------------------------------------------------------------------------- fetcher


class Indexer:
    """Follows JobMarket's events through a :class:`Gateway` and keeps a :class:`MarketIndex` current.

    ``from_block`` defaults to the manifest's ``deployment_block`` (a testnet
    indexer never rescans from genesis). ``refresh()`` is incremental and cheap
    to call often (the dashboard calls it per request, rate-limited by its source).
    """

    def __init__(self, gateway: Gateway, *, from_block: int | None = None,
                 confirmations: int = 0) -> None:
        self.gateway = gateway
        self.index = MarketIndex()
        self.next_block = gateway.deployment.deployment_block if from_block is None else from_block
        self.confirmations = confirmations
        self._timestamps: dict[int, int] = {}

    def _timestamp(self, block: int) -> int:
        if block not in self._timestamps:
            self._timestamps[block] = self.gateway.chain.timestamp(block)
        return self._timestamps[block]

    def refresh(self) -> int:
        """Index every new event up to the chain head; returns the number of events applied."""
        head = self.gateway.chain.block_number() - self.confirmations
        events: list[Event] = []
        if self.next_block <= head:
            events = self.gateway.market_events(self.next_block, head)
            for ev in events:
                self.index.apply(ev, self._timestamp(ev.block_number))
            self.next_block = head + 1
        self.index.block = max(self.index.block, head)
        return len(events)

    def snapshot(self, *, live: bool = True) -> MarketSnapshot:
        """Refresh, then return the views; ``live`` adds the stake and green-share view calls."""
        self.refresh()
        snap = self.index.snapshot()
        if live:
            gw = self.gateway
            for p in snap.providers:
                p.staked, p.locked, p.green_bps = (gw.staked(p.address), gw.locked_stake(p.address),
                                                   gw.green_bps(p.address))
            for v in snap.verifiers:
                v.staked = gw.staked(v.address)
        return snap
