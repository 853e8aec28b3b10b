"""Typed views of what the contracts return and emit (docs/protocol.md §2).

Every struct a view returns and every event a contract emits is a model here
with the ABI's own field names. A model is built strictly: a field the ABI
renames or drops fails loudly (``ValidationError``), it never defaults to 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Self

from hexbytes import HexBytes
from pydantic import BaseModel, ConfigDict, field_validator

if TYPE_CHECKING:
    from greenproof.merkle import MerkleTree

ZERO_ADDRESS = "0x" + "00" * 20

#: JobMarket parameters: a public view each, set by ``set_<name>`` (bounds in docs/protocol.md §2.3).
MARKET_PARAMS = (
    "seed_lookahead", "open_window", "vote_commit_window", "vote_reveal_window",
    "max_audit_samples", "min_collateral_bps", "min_verifier_stake", "max_vote_stake",
    "voter_slash_bps", "requester_share_bps", "max_job_duration",
)


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
        if isinstance(value, VoteStatus):
            return value
        order = tuple(VoteStatus)
        if not 0 <= int(value) < len(order):
            raise ValueError(f"market: unknown vote status value {value}")
        return order[int(value)]

    @property
    def revealed(self) -> bool:
        return self.status in (VoteStatus.REVEALED_OK, VoteStatus.REVEALED_FRAUD)


class Opening(_Strict):
    """One segment opening, as ``open_segments`` takes it (the ``Opening`` struct):
    both boundary leaves (state hash, cumulative energy, seal) and their proofs.
    A job's openings go in strictly ascending ``index`` (docs/court.md)."""

    index: int
    start_hash: bytes
    start_energy_mj: int
    start_seal: bytes
    end_hash: bytes
    end_energy_mj: int
    end_seal: bytes
    start_proof: list[bytes]
    end_proof: list[bytes]

    @classmethod
    def from_tree(cls, tree: MerkleTree, index: int, state_hashes: Sequence[bytes],
                  energies_mj: Sequence[int], seals: Sequence[bytes]) -> Self:
        """Segment ``index``'s opening from the run's boundaries, their seals and their
        commitment tree (:func:`greenproof.merkle.commitment_tree`; the end proof is the short one)."""
        start_proof, end_proof = tree.segment_proofs(index)
        return cls(index=index, start_hash=state_hashes[index], start_energy_mj=energies_mj[index],
                   start_seal=seals[index], end_hash=state_hashes[index + 1],
                   end_energy_mj=energies_mj[index + 1], end_seal=seals[index + 1],
                   start_proof=start_proof, end_proof=end_proof)

    def as_tuple(self) -> tuple[Any, ...]:
        """The ``Opening`` struct as ``open_segments`` takes it."""
        return (self.index, self.start_hash, self.start_energy_mj, self.start_seal, self.end_hash,
                self.end_energy_mj, self.end_seal, self.start_proof, self.end_proof)


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

    #: the contract role that emits it (``market``, ``stake``, ``registry``, ``token``)
    contract: ClassVar[str] = "market"

    block_number: int
    log_index: int
    tx_hash: str

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


class JobCancelled(JobEvent):
    """The requester cancelled an OPEN job; ``refund`` is credited to it."""

    refund: int


class JobAccepted(JobEvent):
    """A provider took the job and locked ``collateral`` of its stake."""

    provider: str
    determinism_class: bytes
    collateral: int


class ResultCommitted(JobEvent):
    """The provider committed the run's Merkle root; the draw is seeded by ``seed_block``."""

    provider: str
    root: bytes
    final_state_hash: bytes
    energy_mj: int
    result_uri: str
    seed_block: int


class AuditRearmed(JobEvent):
    """The seed block left the blockhash window; the draw waits for a new ``seed_block``."""

    seed_block: int


class AuditDrawn(JobEvent):
    """The audited segments were drawn; the provider opens them by ``open_deadline``."""

    seed: bytes
    indices: list[int]
    open_deadline: int


class SegmentOpened(JobEvent):
    """The provider revealed one audited segment's boundary leaves."""

    index: int
    start_hash: bytes
    start_energy_mj: int
    end_hash: bytes
    end_energy_mj: int


class VotingStarted(JobEvent):
    """Every audited segment is open: verifiers commit, then reveal."""

    commit_end: int
    reveal_end: int


class VoteCommitted(JobEvent):
    """A verifier sealed its vote, locking ``weight`` of stake."""

    voter: str
    weight: int


class VoteRevealed(JobEvent):
    """A verifier opened its sealed vote."""

    voter: str
    fraud: bool
    weight: int


class JobFinalized(JobEvent):
    """The job closed: ``outcome`` is PAID or SLASHED."""

    outcome: JobState  # PAID or SLASHED
    paid: int
    bonus: int
    energy_mj: int
    carbon_g: int

    @field_validator("outcome", mode="before")
    @classmethod
    def _outcome(cls, value: Any) -> JobState:
        return value if isinstance(value, JobState) else decode_state(value)


class ProviderSlashed(JobEvent):
    """The provider lost ``amount`` (``reason``: fraud, unopened, expired)."""

    provider: str
    amount: int
    reason: str


class JobExpired(JobEvent):
    """The provider missed the deadline; ``slashed`` went to the requester."""

    slashed: int


class VoteSettled(JobEvent):
    """One vote of a finalized job was paid (``reward``) or penalized."""

    voter: str
    won: bool
    reward: int
    penalty: int


class Withdrawn(Event):
    """An account pulled what the market owed it."""

    account: str
    amount: int


class ParameterSet(Event):
    """Governance changed a market parameter."""

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
