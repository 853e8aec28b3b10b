"""Read the market's and the court's events into typed views: jobs, pools, providers, verifiers.

The indexer is the one reader behind the dashboard, ``requester status/watch``
and the demo's summary. It is split in two so that the bookkeeping can be
tested without a chain:

* :class:`MarketIndex` — a pure reducer: ``apply(event, timestamp)`` folds one
  JobMarket or VerifierCourt event (a :mod:`greenproof.chain.models` event)
  into :class:`JobView` (with its court :class:`CaseRecord`: rounds, seats,
  votes, decision, pot, settlements), :class:`ClassPoolView`,
  :class:`ProviderView` and :class:`VerifierView` records.
* :class:`Indexer` — follows both contracts' events through the
  :class:`~greenproof.chain.gateway.Gateway` (the client's chunked, retrying
  ``eth_getLogs``, decoded into the event models), merges them in chain order,
  feeds the reducer, and adds a few live view calls (stake, locked, green
  share, pool seats) at snapshot time.

The events are the contracts' own models: a renamed or dropped field fails
where the log is decoded, it never folds in as a default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from greenproof.chain.models import (
    AuditDrawn,
    CaseDecided,
    CaseEvent,
    CaseOpened,
    CaseOutcome,
    CourtVotingStarted,
    Event,
    JobAccepted,
    JobCancelled,
    JobEvent,
    JobExpired,
    JobFinalized,
    JobPosted,
    JobState,
    PoolJoined,
    PoolLeft,
    PotFixed,
    ProviderSlashed,
    ResultCommitted,
    SeatsDrawn,
    SeatSettled,
    SegmentOpened,
    VoteCommitted,
    VoteRevealed,
)

if TYPE_CHECKING:
    from greenproof.chain.gateway import Gateway

log = logging.getLogger(__name__)

#: millijoules per watt-hour (1 Wh = 3600 J = 3.6e6 mJ).
MJ_PER_WH = 3_600_000


def mj_to_wh(energy_mj: int | float) -> float:
    return energy_mj / MJ_PER_WH


# --------------------------------------------------------------------------- court views


class SeatVote(BaseModel):
    """The seats one verifier holds in one round of a case, its vote and its settlement."""

    voter: str
    seats: int = Field(description="seats of this round the voter holds")
    committed: bool = False
    revealed: bool = False
    fraud: bool | None = Field(None, description="the revealed side (None before the reveal)")
    counted: bool = Field(False, description="fraud, or ok with the work digests that prove the replay")
    result: str | None = Field(
        None, description="at the decision: won, lost, no-show, neutral (an undecided round's "
                          "revealer: no reward, no penalty) or dropped")
    settled: bool = False
    reward: int = 0
    penalty: int = 0

    @property
    def vote(self) -> str:
        """What the seat did, in words: ok, fraud, ok without proof, sealed, no vote."""
        if self.revealed:
            if self.fraud:
                return "fraud"
            return "ok" if self.counted else "ok without proof"
        return "sealed" if self.committed else "no vote"


class RoundView(BaseModel):
    """One round of a case: the seats drawn and what each holder did."""

    round: int
    drawn_seats: int = 0
    seats: list[SeatVote] = Field(default_factory=list, description="one entry per seat holder")
    commit_end: int | None = None
    reveal_end: int | None = None

    @property
    def ok_seats(self) -> int:
        return sum(s.seats for s in self.seats if s.counted and not s.fraud)

    @property
    def fraud_seats(self) -> int:
        return sum(s.seats for s in self.seats if s.counted and s.fraud)

    def seat(self, voter: str) -> SeatVote | None:
        return next((s for s in self.seats if s.voter.lower() == voter.lower()), None)


class CaseRecord(BaseModel):
    """A job's case in the court: its terms, rounds, decision and pot."""

    dclass: str
    committee_size: int
    max_rounds: int
    commit_window: int
    reveal_window: int
    voter_slash_bps: int
    noshow_slash_bps: int
    rounds: list[RoundView] = Field(default_factory=list)
    outcome: CaseOutcome = CaseOutcome.NONE
    decided_round: int | None = None
    pot: int = 0
    winning_seats: int = 0
    reward_per_seat: int = 0
    remainder: int = Field(0, description="the part of the pot no seat is paid (to the requester)")

    def round_of(self, number: int) -> RoundView:
        while len(self.rounds) <= number:
            self.rounds.append(RoundView(round=len(self.rounds)))
        return self.rounds[number]


class PoolMemberView(BaseModel):
    address: str
    seats: int = Field(0, description="free + busy seats")
    busy_seats: int = Field(0, description="seats sitting on undecided or unsettled cases")


class ClassPoolView(BaseModel):
    """One determinism class's pool of verifier seats."""

    dclass: str
    seats: int = Field(0, description="free + busy seats of every member")
    busy_seats: int = 0
    stake: int = Field(0, description="seats * SEAT_STAKE (live snapshots only)")
    members: list[PoolMemberView] = Field(default_factory=list)

    def member(self, address: str) -> PoolMemberView:
        found = next((m for m in self.members if m.address.lower() == address.lower()), None)
        if found is None:
            found = PoolMemberView(address=address)
            self.members.append(found)
        return found


class TimelineEntry(BaseModel):
    event: str
    block: int
    timestamp: int | None = None
    tx_hash: str = ""
    detail: str = Field("", description="the round of a court event, the outcome of a decision")


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
    green_premium: int = Field(0, description="escrowed green premium (token base units)")
    green_bps: int = Field(0, description="the provider's attested green share at commit")
    determinism_class: str | None = None
    root: str | None = None
    final_state_hash: str | None = None
    result_uri: str | None = None
    energy_mj: int = 0
    move_total: int = Field(0, description="committed total movement (fixed point)")
    audit_indices: list[int] = Field(default_factory=list, description="uniform samples' segments")
    movement_targets: list[int] = Field(default_factory=list, description="movement samples' targets")
    opened: dict[int, dict[str, Any]] = Field(
        default_factory=dict, description="segment index -> revealed hashes, energies, movements and seals"
    )
    case: CaseRecord | None = Field(None, description="the court's case, from the audit draw on")
    outcome: str | None = None
    paid: int = 0
    bonus: int = 0
    premium: int = Field(0, description="green premium paid to the provider")
    slashed: int = 0
    slash_reason: str | None = None
    carbon_mg: int = 0
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

    @property
    def rounds(self) -> list[RoundView]:
        return self.case.rounds if self.case is not None else []

    @property
    def unaudited(self) -> bool:
        """PAID without a single counted ok vote (no seat proved a replay): the court
        paid optimistically after its last round found no majority."""
        return self.state is JobState.PAID and not any(r.ok_seats for r in self.rounds)


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
    carbon_mg: int = 0
    earned: int = 0
    bonus: int = 0
    premium: int = 0
    slashed_amount: int = 0


class VerifierView(BaseModel):
    """A verifier across every pool and case; vote counts are per (job, round) seat holding."""

    address: str
    staked: int = 0
    pool_seats: int = Field(0, description="free + busy seats over every class pool")
    seats_drawn: int = Field(0, description="committee seats drawn, all rounds")
    votes_committed: int = 0
    votes_revealed: int = 0
    fraud_votes: int = 0
    ok_votes: int = Field(0, description="ok votes that proved the replay")
    unproven_votes: int = Field(0, description="ok votes without valid digests (no-shows)")
    won: int = 0
    lost: int = 0
    no_shows: int = 0
    rewards: int = 0
    penalties: int = 0


class MarketStats(BaseModel):
    block: int = 0
    jobs_total: int = 0
    jobs_by_state: dict[str, int] = Field(default_factory=dict)
    providers: int = 0
    verifiers: int = 0
    pools: int = 0
    pool_seats: int = 0
    total_paid: int = 0
    total_bonus: int = 0
    total_premium: int = 0
    total_slashed: int = 0
    total_energy_mj: int = 0
    total_carbon_mg: int = 0
    verifier_rewards: int = 0
    verifier_penalties: int = 0
    escrow_posted: int = 0


class MarketSnapshot(BaseModel):
    block: int = 0
    jobs: list[JobView] = Field(default_factory=list)
    pools: list[ClassPoolView] = Field(default_factory=list)
    providers: list[ProviderView] = Field(default_factory=list)
    verifiers: list[VerifierView] = Field(default_factory=list)
    stats: MarketStats = Field(default_factory=MarketStats)

    def job(self, job_id: int) -> JobView | None:
        return next((j for j in self.jobs if j.job_id == job_id), None)

    def pool(self, dclass: str) -> ClassPoolView | None:
        return next((p for p in self.pools if p.dclass == dclass), None)


# --------------------------------------------------------------------------- reducer


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def _detail(ev: Event) -> str:
    if isinstance(ev, CaseDecided):
        return f"round {ev.round}: {ev.outcome.value}"
    if isinstance(ev, SeatsDrawn | CourtVotingStarted | VoteCommitted | VoteRevealed | SeatSettled):
        return f"round {ev.round}"
    return ""


def _seat_result(seat: SeatVote, outcome: CaseOutcome, deciding: bool) -> str:
    """What the court makes of one seat holding when the case is decided (docs/court.md, Money)."""
    if outcome is CaseOutcome.DROPPED:
        return "dropped"
    if not seat.counted:  # never revealed, or ok without proof
        return "no-show"
    if deciding and outcome in (CaseOutcome.OK, CaseOutcome.FRAUD):
        return "won" if seat.fraud == (outcome is CaseOutcome.FRAUD) else "lost"
    return "neutral"


class MarketIndex:
    """Folds JobMarket's and VerifierCourt's events into views. Pure, no I/O."""

    def __init__(self) -> None:
        self.jobs: dict[int, JobView] = {}
        self.pools: dict[str, ClassPoolView] = {}
        self.providers: dict[str, ProviderView] = {}
        self.verifiers: dict[str, VerifierView] = {}
        self.block = 0
        self._job_handlers: dict[type[Event], Callable[[Any, JobView, int | None], None]] = {
            JobPosted: self._on_posted,
            JobCancelled: self._on_cancelled,
            JobAccepted: self._on_accepted,
            ResultCommitted: self._on_committed,
            AuditDrawn: self._on_drawn,
            SegmentOpened: self._on_opened,
            JobFinalized: self._on_finalized,
            ProviderSlashed: self._on_slashed,
            JobExpired: self._on_expired,
            CaseOpened: self._on_case_opened,
            SeatsDrawn: self._on_seats_drawn,
            CourtVotingStarted: self._on_voting,
            VoteCommitted: self._on_vote_committed,
            VoteRevealed: self._on_vote_revealed,
            CaseDecided: self._on_decided,
            PotFixed: self._on_pot_fixed,
            SeatSettled: self._on_seat_settled,
        }
        self._pool_handlers: dict[type[Event], Callable[[Any], None]] = {
            PoolJoined: self._on_pool_changed,
            PoolLeft: self._on_pool_changed,
        }

    def provider(self, address: str) -> ProviderView:
        return self.providers.setdefault(address, ProviderView(address=address))

    def verifier(self, address: str) -> VerifierView:
        return self.verifiers.setdefault(address, VerifierView(address=address))

    def pool(self, dclass: str) -> ClassPoolView:
        return self.pools.setdefault(dclass, ClassPoolView(dclass=dclass))

    def apply_all(self, events: Iterable[tuple[Event, int | None]]) -> None:
        """Fold ``(event, block timestamp)`` pairs in chain order."""
        for ev, timestamp in events:
            self.apply(ev, timestamp)

    def apply(self, ev: Event, timestamp: int | None = None) -> None:
        """Fold one event; events that concern neither a job nor a pool (``Withdrawn``,
        ``ParameterSet``, ``MarketSet``) only advance the block."""
        self.block = max(self.block, ev.block_number)
        pool_handler = self._pool_handlers.get(type(ev))
        if pool_handler is not None:
            pool_handler(ev)
            return
        if not isinstance(ev, JobEvent | CaseEvent):
            return
        # an event for a job we never saw posted (a partial range) still gets a view
        job = self.jobs.setdefault(ev.job_id, JobView(job_id=ev.job_id))
        self._job_handlers[type(ev)](ev, job, timestamp)
        job.timeline.append(TimelineEntry(event=ev.event_name(), block=ev.block_number,
                                          timestamp=timestamp, tx_hash=ev.tx_hash,
                                          detail=_detail(ev)))

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
        job.green_premium = ev.green_premium
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
        job.move_total = ev.move_total
        job.green_bps = ev.green_bps
        job.result_uri = ev.result_uri
        job.state = JobState.COMMITTED

    def _on_drawn(self, ev: AuditDrawn, job: JobView, at: int | None) -> None:
        job.audit_indices = list(ev.indices)
        job.movement_targets = list(ev.targets)
        job.state = JobState.AUDITING

    def _on_opened(self, ev: SegmentOpened, job: JobView, at: int | None) -> None:
        job.opened[ev.index] = {
            "start_hash": _hex(ev.start_hash), "start_energy_mj": ev.start_energy_mj,
            "start_move": ev.start_move, "start_seal": _hex(ev.start_seal),
            "end_hash": _hex(ev.end_hash), "end_energy_mj": ev.end_energy_mj,
            "end_move": ev.end_move, "end_seal": _hex(ev.end_seal),
        }

    def _on_finalized(self, ev: JobFinalized, job: JobView, at: int | None) -> None:
        job.state = ev.outcome
        job.outcome = ev.outcome.value
        job.paid = ev.paid
        job.bonus = ev.bonus
        job.premium = ev.premium
        # a slashed job's event carries energy 0: keep the committed claim for the record
        job.energy_mj = ev.energy_mj or job.energy_mj
        job.carbon_mg = ev.carbon_mg
        job.finished_at = at
        if job.provider:
            p = self.provider(job.provider)
            if ev.outcome is JobState.PAID:
                p.jobs_paid += 1
                p.earned += job.paid
                p.bonus += job.bonus
                p.premium += job.premium
            p.energy_mj += job.energy_mj
            p.carbon_mg += job.carbon_mg

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

    # VerifierCourt: pools -----------------------------------------------------

    def _on_pool_changed(self, ev: PoolJoined | PoolLeft) -> None:
        pool = self.pool(_hex(ev.dclass))
        pool.seats = ev.pool_seats
        member = pool.member(ev.member)
        member.seats = ev.member_seats
        if member.seats == 0:
            pool.members.remove(member)
        self.verifier(ev.member).pool_seats += ev.seats if isinstance(ev, PoolJoined) else -ev.seats

    def _busy(self, job: JobView, voter: str, seats: int, *, penalised: bool = False) -> None:
        """Seats of ``voter`` in the pool of the job's class became busy (``seats`` > 0) or were
        settled (< 0); penalised seats leave the pool (their stake is unlocked and slashed)."""
        if job.case is None or job.case.dclass not in self.pools:
            return
        pool = self.pools[job.case.dclass]
        member = pool.member(voter)
        member.busy_seats += seats
        pool.busy_seats += seats
        if penalised:
            member.seats += seats
            pool.seats += seats
            self.verifier(voter).pool_seats += seats
            if member.seats <= 0:
                pool.members.remove(member)

    # VerifierCourt: cases -----------------------------------------------------

    @staticmethod
    def _case(job: JobView) -> CaseRecord:
        """The job's case; a blank one for a case opened before the indexed range."""
        if job.case is None:
            job.case = CaseRecord(dclass=job.determinism_class or "", committee_size=0, max_rounds=0,
                                  commit_window=0, reveal_window=0, voter_slash_bps=0,
                                  noshow_slash_bps=0)
        return job.case

    def _on_case_opened(self, ev: CaseOpened, job: JobView, at: int | None) -> None:
        job.case = CaseRecord(
            dclass=_hex(ev.dclass), committee_size=ev.committee_size, max_rounds=ev.max_rounds,
            commit_window=ev.commit_window, reveal_window=ev.reveal_window,
            voter_slash_bps=ev.voter_slash_bps, noshow_slash_bps=ev.noshow_slash_bps,
        )

    def _on_seats_drawn(self, ev: SeatsDrawn, job: JobView, at: int | None) -> None:
        rnd = self._case(job).round_of(ev.round)
        rnd.drawn_seats = len(ev.voters)
        for voter in ev.voters:
            seat = rnd.seat(voter)
            if seat is None:
                seat = SeatVote(voter=voter, seats=0)
                rnd.seats.append(seat)
            seat.seats += 1
            self.verifier(voter).seats_drawn += 1
            self._busy(job, voter, 1)

    def _on_voting(self, ev: CourtVotingStarted, job: JobView, at: int | None) -> None:
        rnd = self._case(job).round_of(ev.round)
        rnd.commit_end, rnd.reveal_end = ev.commit_end, ev.reveal_end
        if not job.state.final:
            job.state = JobState.VOTING

    def _seat(self, job: JobView, number: int, voter: str, seats: int) -> SeatVote:
        rnd = self._case(job).round_of(number)
        seat = rnd.seat(voter)
        if seat is None:  # its draw fell before the indexed range
            seat = SeatVote(voter=voter, seats=seats)
            rnd.seats.append(seat)
        return seat

    def _on_vote_committed(self, ev: VoteCommitted, job: JobView, at: int | None) -> None:
        self._seat(job, ev.round, ev.voter, ev.seats).committed = True
        self.verifier(ev.voter).votes_committed += 1

    def _on_vote_revealed(self, ev: VoteRevealed, job: JobView, at: int | None) -> None:
        seat = self._seat(job, ev.round, ev.voter, ev.seats)
        seat.committed = seat.revealed = True
        seat.fraud, seat.counted = ev.fraud, ev.counted
        v = self.verifier(ev.voter)
        v.votes_revealed += 1
        if ev.fraud:
            v.fraud_votes += 1
        elif ev.counted:
            v.ok_votes += 1
        else:
            v.unproven_votes += 1

    def _on_decided(self, ev: CaseDecided, job: JobView, at: int | None) -> None:
        case = self._case(job)
        case.outcome, case.decided_round = ev.outcome, ev.round
        case.round_of(ev.round).drawn_seats = ev.drawn_seats
        for rnd in case.rounds[: ev.round + 1]:
            for seat in rnd.seats:
                seat.result = _seat_result(seat, ev.outcome, rnd.round == ev.round)
                v = self.verifier(seat.voter)
                v.won += seat.result == "won"
                v.lost += seat.result == "lost"
                v.no_shows += seat.result == "no-show"

    def _on_pot_fixed(self, ev: PotFixed, job: JobView, at: int | None) -> None:
        case = self._case(job)
        case.pot, case.winning_seats = ev.pot, ev.winning_seats
        case.reward_per_seat, case.remainder = ev.reward_per_seat, ev.remainder

    def _on_seat_settled(self, ev: SeatSettled, job: JobView, at: int | None) -> None:
        seat = self._seat(job, ev.round, ev.voter, ev.seats)
        seat.settled, seat.reward, seat.penalty = True, ev.reward, ev.penalty
        v = self.verifier(ev.voter)
        v.rewards += ev.reward
        v.penalties += ev.penalty
        self._busy(job, ev.voter, -ev.seats, penalised=ev.penalty > 0)

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
            stats.total_carbon_mg += j.carbon_mg
            stats.total_premium += j.premium
            if not j.state.final:
                stats.escrow_posted += j.payment + j.verifier_fee + j.green_premium
        pools = [p.model_copy(deep=True) for _, p in sorted(self.pools.items())]
        verifiers = [v.model_copy() for _, v in sorted(self.verifiers.items())]
        stats.providers = len(self.providers)
        stats.verifiers = len(verifiers)
        stats.pools = sum(1 for p in pools if p.seats > 0)
        stats.pool_seats = sum(p.seats for p in pools)
        stats.verifier_rewards = sum(v.rewards for v in verifiers)
        stats.verifier_penalties = sum(v.penalties for v in verifiers)
        return MarketSnapshot(
            block=self.block,
            jobs=jobs,
            pools=pools,
            providers=[p.model_copy() for _, p in sorted(self.providers.items())],
            verifiers=verifiers,
            stats=stats,
        )


# --------------------------------------------------------------------------- fetcher


class Indexer:
    """Follows JobMarket's and VerifierCourt's events through a :class:`Gateway` and keeps a
    :class:`MarketIndex` current.

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
        """Index every new event of both contracts up to the chain head, in chain order;
        returns the number of events applied."""
        head = self.gateway.chain.block_number() - self.confirmations
        events: list[Event] = []
        if self.next_block <= head:
            events = [*self.gateway.market_events(self.next_block, head),
                      *self.gateway.court_events(self.next_block, head)]
            events.sort(key=lambda ev: (ev.block_number, ev.log_index))
            for ev in events:
                self.index.apply(ev, self._timestamp(ev.block_number))
            self.next_block = head + 1
        self.index.block = max(self.index.block, head)
        return len(events)

    def snapshot(self, *, live: bool = True) -> MarketSnapshot:
        """Refresh, then return the views; ``live`` adds the stake, green-share and pool view
        calls (a pool's seats as the court counts them, and its stake)."""
        self.refresh()
        snap = self.index.snapshot()
        if live:
            gw = self.gateway
            for p in snap.providers:
                p.staked, p.locked, p.green_bps = (gw.staked(p.address), gw.locked_stake(p.address),
                                                   gw.green_bps(p.address))
            for v in snap.verifiers:
                v.staked = gw.staked(v.address)
            for pool in snap.pools:
                _read_pool(gw, pool)
        return snap


def _read_pool(gw: Gateway, pool: ClassPoolView) -> None:
    """Overwrite a pool's folded counts with the court's own (``pool_of``, ``member_of``)."""
    dclass = bytes.fromhex(pool.dclass.removeprefix("0x"))
    onchain = gw.pool_of(dclass)
    pool.seats, pool.busy_seats = onchain.free_seats + onchain.busy_seats, onchain.busy_seats
    pool.stake = onchain.stake
    for member in pool.members:
        seats = gw.member_of(dclass, member.address)
        member.seats, member.busy_seats = seats.seats, seats.busy_seats
    pool.members = [m for m in pool.members if m.seats > 0]
