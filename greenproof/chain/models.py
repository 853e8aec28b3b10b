"""Typed views of what the contracts return and emit (docs/protocol.md §2).

Every struct a view returns and every event a contract emits is a model here
with the ABI's own field names. A model is built strictly: a field the ABI
renames or drops fails loudly (``ValidationError``), it never defaults to 0.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from hexbytes import HexBytes
from pydantic import BaseModel, ConfigDict, field_validator

ZERO_ADDRESS = "0x" + "00" * 20


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
    state: JobState
    spec_hash: bytes
    num_segments: int
    audit_samples: int
    payment: int
    verifier_fee: int
    collateral: int
    deadline: int
    min_green_bps: int
    root: bytes
    final_state_hash: bytes
    energy_mj: int
    seed_block: int
    seed: bytes
    open_deadline: int
    voting_start: int
    opened_mask: int
    n_votes: int
    ok_weight: int
    fraud_weight: int

    @field_validator("state", mode="before")
    @classmethod
    def _state(cls, value: Any) -> JobState:
        return value if isinstance(value, JobState) else decode_state(value)

    @property
    def exists(self) -> bool:
        return self.state is not JobState.NONE


class VoteStatus(StrEnum):
    """``vote_of(...).status``."""

    NONE = "NONE"
    COMMITTED = "COMMITTED"
    REVEALED_OK = "REVEALED_OK"
    REVEALED_FRAUD = "REVEALED_FRAUD"


class VoteView(_Strict):
    """``JobMarket.vote_of``: one voter's vote on one job."""

    commitment: bytes
    weight: int
    status: VoteStatus
    settled: bool

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> VoteStatus:
        return value if isinstance(value, VoteStatus) else tuple(VoteStatus)[int(value)]

    @property
    def revealed(self) -> bool:
        return self.status in (VoteStatus.REVEALED_OK, VoteStatus.REVEALED_FRAUD)


class Opening(_Strict):
    """One segment opening, as ``open_segments`` takes it (the ``Opening`` struct)."""

    index: int
    start_hash: bytes
    start_energy_mj: int
    end_hash: bytes
    end_energy_mj: int
    start_proof: list[bytes]
    end_proof: list[bytes]

    def as_tuple(self) -> tuple[Any, ...]:
        return (self.index, self.start_hash, self.start_energy_mj, self.end_hash,
                self.end_energy_mj, self.start_proof, self.end_proof)


# ---------------------------------------------------------------------------
# events
# ---------------------------------------------------------------------------


class Event(_Strict):
    """A decoded log: the event's arguments plus where it was emitted."""

    #: the contract role that emits it (``market``, ``stake``, ``registry``, ``token``)
    contract: ClassVar[str] = "market"

    block_number: int
    log_index: int
    tx_hash: str

    @classmethod
    def from_log(cls, entry: Any) -> Event:
        return cls.model_validate({
            **dict(entry["args"]),
            "block_number": int(entry["blockNumber"]),
            "log_index": int(entry["logIndex"]),
            "tx_hash": "0x" + bytes(entry["transactionHash"]).hex(),
        })


class JobPosted(Event):
    job_id: int
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


class JobCancelled(Event):
    job_id: int
    refund: int


class JobAccepted(Event):
    job_id: int
    provider: str
    determinism_class: bytes
    collateral: int


class ResultCommitted(Event):
    job_id: int
    provider: str
    root: bytes
    final_state_hash: bytes
    energy_mj: int
    result_uri: str
    seed_block: int


class AuditRearmed(Event):
    job_id: int
    seed_block: int


class AuditDrawn(Event):
    job_id: int
    seed: bytes
    indices: list[int]
    open_deadline: int


class SegmentOpened(Event):
    job_id: int
    index: int
    start_hash: bytes
    start_energy_mj: int
    end_hash: bytes
    end_energy_mj: int


class VotingStarted(Event):
    job_id: int
    commit_end: int
    reveal_end: int


class VoteCommitted(Event):
    job_id: int
    voter: str
    weight: int


class VoteRevealed(Event):
    job_id: int
    voter: str
    fraud: bool
    weight: int


class JobFinalized(Event):
    job_id: int
    outcome: int
    paid: int
    bonus: int
    energy_mj: int
    carbon_g: int


class ProviderSlashed(Event):
    job_id: int
    provider: str
    amount: int
    reason: str


class JobExpired(Event):
    job_id: int
    slashed: int


class VoteSettled(Event):
    job_id: int
    voter: str
    won: bool
    reward: int
    penalty: int


class Withdrawn(Event):
    account: str
    amount: int


class ParameterSet(Event):
    name: str
    old_value: int
    new_value: int


#: JobMarket's events by name, for code that follows every event (the indexer).
MARKET_EVENTS: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        JobPosted, JobCancelled, JobAccepted, ResultCommitted, AuditRearmed, AuditDrawn,
        SegmentOpened, VotingStarted, VoteCommitted, VoteRevealed, JobFinalized,
        ProviderSlashed, JobExpired, VoteSettled, Withdrawn, ParameterSet,
    )
}
