"""Typed views of what the contracts return and emit (docs/protocol.md §2, docs/court.md).

Every struct a view returns and every event a contract emits is a model here
with the ABI's own field names. A model is built strictly: a field the ABI
renames or drops fails loudly (``ValidationError``), it never defaults to 0.
An event model is named after its ABI event unless two contracts share the
name: then ``abi_name`` names the ABI event (``CourtVotingStarted`` is the
court's ``VotingStarted``).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Self, TypeVar

from hexbytes import HexBytes
from pydantic import BaseModel, BeforeValidator, ConfigDict, field_validator

if TYPE_CHECKING:
    from greenproof.merkle import MerkleTree

ZERO_ADDRESS = "0x" + "00" * 20

#: JobMarket parameters: a public view each, set by ``set_<name>`` (bounds in docs/protocol.md §2.3).
MARKET_PARAMS = (
    "seed_lookahead", "open_window", "max_audit_samples", "min_collateral_bps",
    "requester_share_bps", "max_job_duration", "min_job_duration", "draw_window",
)

#: VerifierCourt parameters: a public view each, set by ``set_<name>`` (docs/court.md).
COURT_PARAMS = (
    "committee_size", "max_rounds", "commit_window", "reveal_window", "voter_slash_bps",
    "noshow_slash_bps", "min_class_stake",
)

#: Every parameter's inclusive hard bounds, as the contracts' setters check them
#: (``PARAM_MIN``/``PARAM_MAX`` in JobMarket.vy and VerifierCourt.vy;
#: tests/integration/test_deploy_cli.py checks each against the contract).
PARAM_BOUNDS: dict[str, tuple[int, int]] = {
    "seed_lookahead": (1, 64),
    "open_window": (10, 7 * 86_400),
    "max_audit_samples": (1, 64),
    "min_collateral_bps": (1_000, 100_000),
    "requester_share_bps": (0, 10_000),
    "max_job_duration": (60, 180 * 86_400),
    "min_job_duration": (60, 7 * 86_400),
    "draw_window": (60, 7 * 86_400),
    "committee_size": (1, 31),
    "max_rounds": (1, 5),
    "commit_window": (10, 7 * 86_400),
    "reveal_window": (10, 7 * 86_400),
    "voter_slash_bps": (0, 5_000),
    "noshow_slash_bps": (1, 10_000),
    "min_class_stake": (1, 2**128 - 1),
}

#: The values a fresh deployment starts from (the contracts' constructors;
#: ``min_class_stake`` defaults to three seats).
PARAM_DEFAULTS: dict[str, int] = {
    "seed_lookahead": 2, "open_window": 3_600, "max_audit_samples": 48,
    "min_collateral_bps": 10_000, "requester_share_bps": 5_000, "max_job_duration": 7 * 86_400,
    "min_job_duration": 300, "draw_window": 3_600, "committee_size": 3, "max_rounds": 3,
    "commit_window": 3_600, "reveal_window": 3_600, "voter_slash_bps": 1_000,
    "noshow_slash_bps": 2_000,
}


class JobState(StrEnum):
    """JobMarket's job states (docs/protocol.md §2.3)."""

    NONE = "NONE"
    OPEN = "OPEN"
    ACCEPTED = "ACCEPTED"
    COMMITTED = "COMMITTED"
    AUDITING = "AUDITING"
    VOTING = "VOTING"
    PAID = "PAID"
    SLASHED = "SLASHED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


#: JobMarket's ``STATE_*`` constants, in value order (``get_job(...).state``).
STATE_ORDER: tuple[JobState, ...] = tuple(JobState)

FINAL_STATES = frozenset({JobState.PAID, JobState.SLASHED, JobState.CANCELLED, JobState.EXPIRED})


def decode_state(raw: Any) -> JobState:
    """A ``uint8`` state as ``JobMarket.get_job`` returns it."""
    value = int(raw)
    if not 0 <= value < len(STATE_ORDER):
        raise ValueError(f"market: unknown job state value {value}")
    return STATE_ORDER[value]


#: A ``JobState`` as the contract returns it (``uint8``) or already decoded.
ContractJobState = Annotated[
    JobState, BeforeValidator(lambda v: v if isinstance(v, JobState) else decode_state(v))
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    @field_validator("*", mode="before")
    @classmethod
    def _plain(cls, value: Any) -> Any:
        # web3 hands back HexBytes / AttributeDict; models hold plain bytes / str
        if isinstance(value, HexBytes):
            return bytes(value)
        return value


class OnchainJob(_Strict):
    """``JobMarket.get_job``: the whole job, unpacked."""

    job_id: int
    requester: str
    provider: str
    state: ContractJobState
    spec_hash: bytes
    num_segments: int
    audit_samples: int
    payment: int
    verifier_fee: int
    collateral: int
    deadline: int
    min_green_bps: int
    green_premium: int
    determinism_class: bytes
    root: bytes
    final_state_hash: bytes
    energy_mj: int
    move_total: int
    green_bps: int
    seed_block: int
    draw_deadline: int
    seed: bytes
    open_deadline: int
    voting_start: int
    opened_mask: int
    next_open_index: int
    seal_acc: bytes
    pot: int
    open_window: int
    draw_window: int
    requester_share_bps: int
    seed_lookahead: int
    court_terms: int

    @property
    def exists(self) -> bool:
        return self.state is not JobState.NONE


S = TypeVar("S", bound=StrEnum)


def _enum_member(order: tuple[S, ...], value: Any, what: str) -> S:
    """The ``order[value]`` member for a ``uint`` a view or an event returns (a member passes through)."""
    if isinstance(value, order[0].__class__):
        return value
    if not 0 <= int(value) < len(order):
        raise ValueError(f"court: unknown {what} value {value}")
    return order[int(value)]


class CaseOutcome(StrEnum):
    """``case_of(...).outcome`` and ``CaseDecided.outcome`` (VerifierCourt's ``OUTCOME_*``)."""

    NONE = "NONE"
    OK = "OK"
    FRAUD = "FRAUD"
    NO_DECISION = "NO_DECISION"
    DROPPED = "DROPPED"


class SeatStatus(StrEnum):
    """``seat_of(...).status`` (VerifierCourt's ``SEAT_*``)."""

    SEATED = "SEATED"
    COMMITTED = "COMMITTED"
    REVEALED_OK = "REVEALED_OK"
    REVEALED_FRAUD = "REVEALED_FRAUD"
    NO_PROOF = "NO_PROOF"  # revealed ok without valid digests: counted as a no-show


#: a case outcome as a view or an event returns it (a ``uint8``)
Outcome = Annotated[CaseOutcome, BeforeValidator(lambda v: _enum_member(tuple(CaseOutcome), v, "case outcome"))]


class PoolView(_Strict):
    """``VerifierCourt.pool_of``: one determinism class's pool."""

    members: int
    free_seats: int
    busy_seats: int
    stake: int


class MemberView(_Strict):
    """``VerifierCourt.member_of``: one member's seats in one pool (both 0 for a non-member)."""

    free_seats: int
    busy_seats: int

    @property
    def seats(self) -> int:
        return self.free_seats + self.busy_seats


class CaseView(_Strict):
    """``VerifierCourt.case_of``: a job's case; the windows and counts are its current
    (or deciding) round's; every field 0 before the audit draw opened it."""

    dclass: bytes
    seed: bytes
    seal_acc: bytes
    committee_size: int
    max_rounds: int
    commit_window: int
    reveal_window: int
    voter_slash_bps: int
    noshow_slash_bps: int
    round: int
    voting_start: int
    commit_end: int
    reveal_end: int
    drawn_seats: int
    ok_seats: int
    fraud_seats: int
    outcome: Outcome
    reward_per_seat: int

    @property
    def exists(self) -> bool:
        return self.committee_size > 0

    @property
    def voting(self) -> bool:
        """The current round's windows have started and the case is not decided."""
        return self.voting_start > 0 and self.outcome is CaseOutcome.NONE

    @property
    def decided(self) -> bool:
        return self.outcome is not CaseOutcome.NONE


class SeatView(_Strict):
    """``VerifierCourt.seat_of``: the seats one voter holds in one round, and its vote."""

    commitment: bytes
    seats: int
    status: Annotated[SeatStatus, BeforeValidator(lambda v: _enum_member(tuple(SeatStatus), v, "seat status"))]
    settled: bool

    @property
    def seated(self) -> bool:
        return self.seats > 0

    @property
    def committed(self) -> bool:
        """A commitment is on chain (revealed or not)."""
        return self.status is not SeatStatus.SEATED


class Opening(_Strict):
    """One segment opening, as ``open_segments`` takes it (``AuditRules.Opening``):
    both boundary leaves (state hash, cumulative energy, cumulative movement, seal)
    and their proofs. A job's openings go in strictly ascending ``index``
    (docs/protocol.md §2.3)."""

    index: int
    start_hash: bytes
    start_energy_mj: int
    start_move: int
    start_seal: bytes
    end_hash: bytes
    end_energy_mj: int
    end_move: int
    end_seal: bytes
    start_proof: list[bytes]
    end_proof: list[bytes]

    @classmethod
    def from_tree(cls, tree: MerkleTree, index: int, state_hashes: Sequence[bytes],
                  energies_mj: Sequence[int], moves: Sequence[int], seals: Sequence[bytes]) -> Self:
        """Segment ``index``'s opening from the run's boundaries (cumulative energy and
        movement), their seals and their commitment tree
        (:func:`greenproof.merkle.commitment_tree`; the end proof is the short one)."""
        start_proof, end_proof = tree.segment_proofs(index)
        return cls(index=index, start_hash=state_hashes[index], start_energy_mj=energies_mj[index],
                   start_move=moves[index], start_seal=seals[index], end_hash=state_hashes[index + 1],
                   end_energy_mj=energies_mj[index + 1], end_move=moves[index + 1],
                   end_seal=seals[index + 1], start_proof=start_proof, end_proof=end_proof)

    def as_tuple(self) -> tuple[Any, ...]:
        """The ``Opening`` struct as ``open_segments`` takes it."""
        return (self.index, self.start_hash, self.start_energy_mj, self.start_move, self.start_seal,
                self.end_hash, self.end_energy_mj, self.end_move, self.end_seal, self.start_proof,
                self.end_proof)


class Attestation(_Strict):
    """``GreenRegistry.attestation_of``: a provider's last accepted attestation (all zero if none)."""

    provider: str
    green_bps: int
    carbon_g_per_kwh: int
    region: bytes
    valid_from: int
    valid_until: int
    nonce: int
    attestor: str

    @property
    def exists(self) -> bool:
        return self.nonce > 0


# ---------------------------------------------------------------------------
# events
# ---------------------------------------------------------------------------


class Event(_Strict):
    """A decoded log: the event's arguments plus where it was emitted."""

    #: the contract role that emits it (``market``, ``court``, ``stake``, ``registry``, ``token``)
    contract: ClassVar[str] = "market"
    #: the ABI's event name when it is not the class's (two contracts emit events of one name)
    abi_name: ClassVar[str | None] = None

    block_number: int
    log_index: int
    tx_hash: str

    @classmethod
    def event_name(cls) -> str:
        """The event's name in its contract's ABI."""
        return cls.abi_name or cls.__name__

    @classmethod
    def from_log(cls, entry: Any) -> Self:
        """Build from a web3-decoded log (``process_log`` / ``get_logs`` output)."""
        return cls.model_validate({
            **dict(entry["args"]),
            "block_number": int(entry["blockNumber"]),
            "log_index": int(entry["logIndex"]),
            "tx_hash": "0x" + bytes(entry["transactionHash"]).hex(),
        })


class JobEvent(Event):
    """An event about one job (every JobMarket event but ``Withdrawn`` and ``ParameterSet``)."""

    job_id: int


class JobPosted(JobEvent):
    """A requester escrowed ``payment + verifier_fee`` and posted a job."""

    requester: str
    spec_hash: bytes
    spec_uri: str
    num_segments: int
    audit_samples: int
    payment: int
    verifier_fee: int
    collateral: int
    deadline: int
    min_green_bps: int
    green_premium: int


class JobCancelled(JobEvent):
    """The requester cancelled an OPEN job; ``refund`` is credited to it."""

    refund: int


class JobAccepted(JobEvent):
    """A provider took the job and locked ``collateral`` of its stake."""

    provider: str
    determinism_class: bytes
    collateral: int


class ResultCommitted(JobEvent):
    """The provider committed the run's Merkle root, total energy and movement; the draw is
    seeded by ``seed_block`` and must happen by ``draw_deadline`` (else: slashed as undrawn)."""

    provider: str
    root: bytes
    final_state_hash: bytes
    energy_mj: int
    move_total: int
    green_bps: int
    result_uri: str
    seed_block: int
    draw_deadline: int


class AuditDrawn(JobEvent):
    """The audit was drawn: ``indices`` (uniform over segments) and ``targets`` (uniform over
    the committed movement: the segment whose bracket holds each); the provider opens them
    by ``open_deadline``."""

    seed: bytes
    indices: list[int]
    targets: list[int]
    open_deadline: int


class SegmentOpened(JobEvent):
    """The provider revealed one audited segment's boundary leaves (state hash, cumulative
    energy, cumulative movement and seal of each); the end seal extends the job's ``seal_acc``."""

    index: int
    start_hash: bytes
    start_energy_mj: int
    start_move: int
    start_seal: bytes
    end_hash: bytes
    end_energy_mj: int
    end_move: int
    end_seal: bytes


class JobFinalized(JobEvent):
    """The job closed: ``outcome`` is PAID or SLASHED."""

    outcome: ContractJobState  # PAID or SLASHED
    paid: int
    bonus: int
    premium: int
    energy_mj: int
    carbon_mg: int


class ProviderSlashed(JobEvent):
    """The provider lost ``amount`` (``reason``: fraud, unopened, expired)."""

    provider: str
    amount: int
    reason: str


class JobExpired(JobEvent):
    """The provider missed the deadline; ``slashed`` went to the requester."""

    slashed: int


class Withdrawn(Event):
    """An account pulled what the market owed it."""

    account: str
    amount: int


class ParameterSet(Event):
    """Governance changed a market parameter."""

    name: str
    old_value: int
    new_value: int


# --------------------------------------------------------------------------- court events


class CourtEvent(Event):
    """A VerifierCourt event."""

    contract: ClassVar[str] = "court"


class CaseEvent(CourtEvent):
    """A court event about one job's case."""

    job_id: int


class MarketSet(CourtEvent):
    """The JobMarket the court serves was wired (once)."""

    market: str


class PoolChange(CourtEvent):
    """``member``'s seats in the pool of ``dclass`` changed by ``seats``; ``member_seats`` and
    ``pool_seats`` count the member's and the pool's free + busy seats after it."""

    dclass: bytes
    member: str
    seats: int
    member_seats: int
    pool_seats: int


class PoolJoined(PoolChange):
    """``member`` added ``seats`` free seats to the pool of ``dclass``."""


class PoolLeft(PoolChange):
    """``member`` took ``seats`` free seats out of the pool of ``dclass``; their stake was unlocked."""


class CaseOpened(CaseEvent):
    """The audit draw opened the job's case with these terms (kept for the whole case)."""

    dclass: bytes
    committee_size: int
    max_rounds: int
    commit_window: int
    reveal_window: int
    voter_slash_bps: int
    noshow_slash_bps: int


class SeatsDrawn(CaseEvent):
    """The seats of ``round``: one entry per seat (a member holding several seats is listed
    several times); shorter than the round's size when the pool ran out of free seats."""

    round: int
    voters: list[str]


class CourtVotingStarted(CaseEvent):
    """Round ``round`` takes commitments until ``commit_end`` and reveals until ``reveal_end``."""

    abi_name: ClassVar[str | None] = "VotingStarted"

    round: int
    commit_end: int
    reveal_end: int


class VoteCommitted(CaseEvent):
    """``voter`` committed a sealed vote for its ``seats`` seats of ``round``."""

    voter: str
    round: int
    seats: int


class VoteRevealed(CaseEvent):
    """``voter`` revealed; ``counted`` is False for an ok vote whose digests do not prove
    the replay (recorded as a no-show)."""

    voter: str
    round: int
    fraud: bool
    counted: bool
    seats: int


class CaseDecided(CaseEvent):
    """The case was decided in ``round`` on that round's counts."""

    round: int
    outcome: Outcome
    drawn_seats: int
    ok_seats: int
    fraud_seats: int


class PotFixed(CaseEvent):
    """Each winning seat gets ``reward_per_seat`` of ``pot``; ``remainder`` went to the requester."""

    pot: int
    winning_seats: int
    reward_per_seat: int
    remainder: int


class SeatSettled(CaseEvent):
    """The ``seats`` seats ``voter`` held in ``round`` were settled: ``reward`` credited in the
    market, ``penalty`` slashed to the requester."""

    voter: str
    round: int
    seats: int
    reward: int
    penalty: int


class CourtParameterSet(CourtEvent):
    """Governance changed a court parameter."""

    abi_name: ClassVar[str | None] = "ParameterSet"

    name: str
    old_value: int
    new_value: int


def _by_abi_name(*models: type[Event]) -> dict[str, type[Event]]:
    return {m.event_name(): m for m in models}


#: JobMarket's events by ABI name, for code that follows every event (the indexer).
MARKET_EVENTS: dict[str, type[Event]] = _by_abi_name(
    JobPosted, JobCancelled, JobAccepted, ResultCommitted, AuditDrawn, SegmentOpened,
    JobFinalized, ProviderSlashed, JobExpired, Withdrawn, ParameterSet,
)

#: VerifierCourt's events by ABI name.
COURT_EVENTS: dict[str, type[Event]] = _by_abi_name(
    MarketSet, PoolJoined, PoolLeft, CaseOpened, SeatsDrawn, CourtVotingStarted, VoteCommitted,
    VoteRevealed, CaseDecided, PotFixed, SeatSettled, CourtParameterSet,
)
