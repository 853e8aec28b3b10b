"""Read the market's events into typed views: jobs, providers, verifiers.

The indexer is the one reader behind the dashboard, ``requester status/watch``
and the demo's summary. It is split in two so that the bookkeeping can be
tested without a chain:

* :class:`MarketIndex` — a pure reducer: ``apply(event)`` folds one decoded
  event (:class:`ChainEvent`) into :class:`JobView`, :class:`ProviderView` and
  :class:`VerifierView` records.
* :class:`Indexer` — fetches the logs of JobMarket, StakeManager and
  GreenRegistry in block ranges (one ``eth_getLogs`` per range for all three
  addresses, decoded against their ABIs), feeds the reducer, and adds a few
  live view calls (stake, locked, green share, claimable) at snapshot time.

Event argument names follow the contracts; :func:`_arg` accepts the few
spellings a contract may use so that a renamed field degrades to a default
instead of crashing a dashboard.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, Field

from greenproof.chain.market import STATE_ORDER, JobState, decode_state

log = logging.getLogger(__name__)

#: millijoules per watt-hour (1 Wh = 3600 J = 3.6e6 mJ).
MJ_PER_WH = 3_600_000


def mj_to_wh(energy_mj: int | float) -> float:
    return energy_mj / MJ_PER_WH


class ChainEvent(BaseModel):
    """One decoded log, independent of web3's types."""

    name: str
    args: dict[str, Any]
    block: int
    log_index: int = 0
    tx_hash: str = ""
    timestamp: int | None = None


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


# --------------------------------------------------------------------------- helpers


def _arg(args: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        if name in args:
            return args[name]
    return default


def _hex(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    return str(value) if value is not None else ""


def _addr(value: Any) -> str:
    return str(value) if value is not None else ""


def _outcome(value: Any) -> JobState:
    """JobFinalized's outcome code -> PAID or SLASHED (anything unknown counts as PAID)."""
    slashed = (
        isinstance(value, int) and 0 <= value < len(STATE_ORDER)
        and decode_state(value) is JobState.SLASHED
    )
    return JobState.SLASHED if slashed else JobState.PAID


# --------------------------------------------------------------------------- reducer


class MarketIndex:
    """Folds decoded market/stake/registry events into views. Pure, no I/O."""

    def __init__(self) -> None:
        self.jobs: dict[int, JobView] = {}
        self.providers: dict[str, ProviderView] = {}
        self.verifiers: dict[str, VerifierView] = {}
        self.block = 0

    def provider(self, address: str) -> ProviderView:
        return self.providers.setdefault(address, ProviderView(address=address))

    def verifier(self, address: str) -> VerifierView:
        return self.verifiers.setdefault(address, VerifierView(address=address))

    def apply_all(self, events: Iterable[ChainEvent]) -> None:
        for ev in events:
            self.apply(ev)

    def apply(self, ev: ChainEvent) -> None:
        self.block = max(self.block, ev.block)
        handler = getattr(self, f"_on_{ev.name}", None)
        if handler is None:
            return
        a = ev.args
        job_id = _arg(a, "job_id", "jobId", "id")
        job = None
        if job_id is not None and ev.name != "JobPosted":
            job = self.jobs.get(int(job_id))
            if job is None:  # an event for a job we never saw posted (partial range)
                job = self.jobs.setdefault(int(job_id), JobView(job_id=int(job_id)))
        handler(ev, a, job)
        if job_id is not None:
            j = self.jobs[int(job_id)]
            j.timeline.append(
                TimelineEntry(event=ev.name, block=ev.block, timestamp=ev.timestamp, tx_hash=ev.tx_hash)
            )

    # JobMarket ---------------------------------------------------------------

    def _on_JobPosted(self, ev: ChainEvent, a: Mapping[str, Any], _: JobView | None) -> None:
        job_id = int(_arg(a, "job_id", "jobId", "id"))
        job = self.jobs.setdefault(job_id, JobView(job_id=job_id))
        job.requester = _addr(_arg(a, "requester"))
        job.spec_hash = _hex(_arg(a, "spec_hash"))
        job.spec_uri = str(_arg(a, "spec_uri", default="") or "")
        job.num_segments = int(_arg(a, "num_segments", default=0))
        job.audit_samples = int(_arg(a, "audit_samples", default=0))
        job.payment = int(_arg(a, "payment", default=0))
        job.verifier_fee = int(_arg(a, "verifier_fee", default=0))
        job.collateral = int(_arg(a, "collateral", default=0))
        job.deadline = int(_arg(a, "deadline", default=0))
        job.min_green_bps = int(_arg(a, "min_green_bps", default=0))
        job.posted_at = ev.timestamp
        job.state = JobState.OPEN

    def _on_JobCancelled(self, ev: ChainEvent, a: Mapping[str, Any], job: JobView) -> None:
        job.state = JobState.CANCELLED
        job.finished_at = ev.timestamp

    def _on_JobAccepted(self, ev: ChainEvent, a: Mapping[str, Any], job: JobView) -> None:
        job.provider = _addr(_arg(a, "provider"))
        dc = _arg(a, "determinism_class")
        job.determinism_class = _hex(dc) if dc is not None else None
        job.collateral = int(_arg(a, "collateral", default=job.collateral))
        job.state = JobState.ACCEPTED
        self.provider(job.provider).jobs_accepted += 1

    def _on_ResultCommitted(self, ev: ChainEvent, a: Mapping[str, Any], job: JobView) -> None:
        job.root = _hex(_arg(a, "root"))
        job.final_state_hash = _hex(_arg(a, "final_state_hash"))
        job.energy_mj = int(_arg(a, "energy_mj", default=0))
        job.result_uri = str(_arg(a, "result_uri", default="") or "")
        job.state = JobState.COMMITTED

    def _on_AuditDrawn(self, ev: ChainEvent, a: Mapping[str, Any], job: JobView) -> None:
        indices = _arg(a, "indices", "audit_indices")
        if indices is not None:
            job.audit_indices = [int(i) for i in indices]
        job.state = JobState.AUDITING

    def _on_SegmentOpened(self, ev: ChainEvent, a: Mapping[str, Any], job: JobView) -> None:
        index = int(_arg(a, "index", "segment", default=0))
        job.opened[index] = {
            k: (_hex(v) if isinstance(v, bytes | bytearray) else v)
            for k, v in a.items()
            if k not in ("job_id", "index", "segment")
        }

    def _on_VotingStarted(self, ev: ChainEvent, a: Mapping[str, Any], job: JobView) -> None:
        job.state = JobState.VOTING

    def _on_VoteCommitted(self, ev: ChainEvent, a: Mapping[str, Any], job: JobView) -> None:
        voter = _addr(_arg(a, "verifier", "voter"))
        weight = int(_arg(a, "vote_stake", "weight", "stake", default=0))
        job.votes.append(VoteView(verifier=voter, committed_block=ev.block, weight=weight))
        job.state = JobState.VOTING
        self.verifier(voter).votes_committed += 1

    def _on_VoteRevealed(self, ev: ChainEvent, a: Mapping[str, Any], job: JobView) -> None:
        voter = _addr(_arg(a, "verifier", "voter"))
        fraud = bool(_arg(a, "fraud", default=False))
        for vote in job.votes:
            if vote.verifier == voter:
                vote.revealed = True
                vote.fraud = fraud
                vote.weight = int(_arg(a, "weight", "vote_stake", default=vote.weight))
        v = self.verifier(voter)
        v.votes_revealed += 1
        if fraud:
            v.fraud_votes += 1
        else:
            v.ok_votes += 1

    def _on_VoteSettled(self, ev: ChainEvent, a: Mapping[str, Any], job: JobView) -> None:
        voter = _addr(_arg(a, "verifier", "voter"))
        reward = int(_arg(a, "reward", "amount", "paid", default=0))
        penalty = int(_arg(a, "penalty", "slashed", default=0))
        for vote in job.votes:
            if vote.verifier == voter:
                vote.settled, vote.reward, vote.penalty = True, reward, penalty
        v = self.verifier(voter)
        v.rewards += reward
        v.penalties += penalty

    def _on_JobFinalized(self, ev: ChainEvent, a: Mapping[str, Any], job: JobView) -> None:
        state = _outcome(_arg(a, "outcome"))
        job.state = state
        job.outcome = state.value
        job.paid = int(_arg(a, "paid", "payment", default=0))
        job.bonus = int(_arg(a, "bonus", default=0))
        # a slashed job's event carries energy 0: keep the committed claim for the record
        job.energy_mj = int(_arg(a, "energy_mj", default=0)) or job.energy_mj
        job.carbon_g = int(_arg(a, "carbon_g", "carbon", default=0))
        job.finished_at = ev.timestamp
        if job.provider:
            p = self.provider(job.provider)
            if state is JobState.PAID:
                p.jobs_paid += 1
                p.earned += job.paid
                p.bonus += job.bonus
            p.energy_mj += job.energy_mj
            p.carbon_g += job.carbon_g

    def _on_ProviderSlashed(self, ev: ChainEvent, a: Mapping[str, Any], job: JobView) -> None:
        amount = int(_arg(a, "amount", "slashed", default=job.collateral))
        job.slashed += amount
        reason = _arg(a, "reason")
        job.slash_reason = _hex(reason) if isinstance(reason, bytes) else (reason or job.slash_reason)
        expired = job.slash_reason == "expired"  # JobExpired follows and sets the state
        if not expired:
            job.state = JobState.SLASHED
            job.outcome = JobState.SLASHED.value
        job.finished_at = job.finished_at or ev.timestamp
        provider = _addr(_arg(a, "provider", default=job.provider))
        if provider:
            p = self.provider(provider)
            p.slashed_amount += amount
            if not expired:
                p.jobs_slashed += 1

    def _on_JobExpired(self, ev: ChainEvent, a: Mapping[str, Any], job: JobView) -> None:
        job.state = JobState.EXPIRED
        job.outcome = JobState.EXPIRED.value
        job.finished_at = ev.timestamp
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
    """Follows the three contracts' logs and keeps a :class:`MarketIndex` current.

    ``contracts`` are web3 contract objects (``Chain.market``, ``.stake``,
    ``.registry``); ``from_block`` is the deployment block from the manifest.
    ``refresh()`` is incremental and cheap to call often (the dashboard calls it
    per request, rate-limited by ``min_interval``).
    """

    def __init__(
        self,
        market: Any,
        stake: Any = None,
        registry: Any = None,
        *,
        from_block: int = 0,
        chunk: int = 5_000,
        confirmations: int = 0,
    ) -> None:
        from eth_utils import event_abi_to_log_topic

        self.market, self.stake, self.registry = market, stake, registry
        self.w3 = market.w3
        self.index = MarketIndex()
        self.next_block = from_block
        self.chunk = chunk
        self.confirmations = confirmations
        self._timestamps: dict[int, int] = {}
        self._decoders: dict[tuple[str, bytes], tuple[Any, str]] = {}
        for contract in (market, stake, registry):
            if contract is None:
                continue
            for item in contract.abi:
                if item.get("type") == "event" and not item.get("anonymous"):
                    topic = event_abi_to_log_topic(item)
                    self._decoders[(contract.address.lower(), topic)] = (contract, item["name"])
        self.addresses = [c.address for c in (market, stake, registry) if c is not None]

    @classmethod
    def from_chain(cls, chain: Any, **kw: Any) -> Indexer:
        """Build from a :class:`greenproof.chain.Chain` (uses its manifest's deployment block)."""
        deployment = getattr(chain, "deployment", None)
        block = int(getattr(deployment, "deployment_block", 0) or 0)
        return cls(chain.market, getattr(chain, "stake", None), getattr(chain, "registry", None),
                   from_block=kw.pop("from_block", block), **kw)

    def _timestamp(self, block: int) -> int:
        if block not in self._timestamps:
            self._timestamps[block] = int(self.w3.eth.get_block(block)["timestamp"])
        return self._timestamps[block]

    def _decode(self, raw: Any) -> ChainEvent | None:
        topics = raw["topics"]
        if not topics:
            return None
        key = (str(raw["address"]).lower(), bytes(topics[0]))
        found = self._decoders.get(key)
        if found is None:
            return None
        contract, name = found
        try:
            decoded = contract.events[name]().process_log(raw)
        except Exception as exc:  # a log we cannot decode must not stop the indexer
            log.warning("indexer: cannot decode %s log at block %s: %s", name, raw["blockNumber"], exc)
            return None
        block = int(raw["blockNumber"])
        return ChainEvent(
            name=name,
            args=dict(decoded["args"]),
            block=block,
            log_index=int(raw["logIndex"]),
            tx_hash=_hex(raw["transactionHash"]),
            timestamp=self._timestamp(block),
        )

    def refresh(self) -> int:
        """Index every new log up to the chain head; returns the number of events applied."""
        head = int(self.w3.eth.block_number) - self.confirmations
        applied = 0
        while self.next_block <= head:
            to_block = min(head, self.next_block + self.chunk - 1)
            logs = self.w3.eth.get_logs(
                {"address": self.addresses, "fromBlock": self.next_block, "toBlock": to_block}
            )
            for raw in sorted(logs, key=lambda r: (int(r["blockNumber"]), int(r["logIndex"]))):
                ev = self._decode(raw)
                if ev is not None:
                    self.index.apply(ev)
                    applied += 1
            self.next_block = to_block + 1
        self.index.block = max(self.index.block, head)
        return applied

    def _view(self, contract: Any, fn: str, *args: Any, default: int = 0) -> int:
        if contract is None or not any(
            i.get("type") == "function" and i.get("name") == fn for i in contract.abi
        ):
            return default
        try:
            return int(contract.functions[fn](*args).call())
        except Exception as exc:
            log.debug("indexer: %s(%s) failed: %s", fn, args, exc)
            return default

    def snapshot(self, *, live: bool = True) -> MarketSnapshot:
        """Refresh, then return the views; ``live`` adds stake/green share/claimable view calls."""
        self.refresh()
        snap = self.index.snapshot()
        if live:
            for p in snap.providers:
                p.staked = self._view(self.stake, "staked", p.address)
                p.locked = self._view(self.stake, "locked", p.address)
                p.green_bps = self._view(self.registry, "green_bps_of", p.address)
            for v in snap.verifiers:
                v.staked = self._view(self.stake, "staked", v.address)
        return snap
