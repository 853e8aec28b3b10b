"""The one typed gateway to the greenproof contracts (docs/protocol.md §2).

Every process reads, writes and follows the contracts through a
:class:`Gateway` on one :class:`~greenproof.chain.client.Chain`: typed reads
(:mod:`greenproof.chain.models`), one method per transaction, and the events
as models fetched through the client (its retries and chunked ``eth_getLogs``).
No other module builds a ``contract.functions.X(...)`` call.

    >>> gw = Gateway(connect("ethereum:local:foundry", "TEST::2"))
    >>> job = gw.job(3)                      # OnchainJob
    >>> gw.accept_job(3, dclass)             # receipt; TxError with the decoded reason on revert
    >>> for ev in gw.events(JobPosted, 0):   # typed events
    ...     print(ev.job_id, ev.spec_uri)
    >>> gw.case_of(3).commit_end             # the court's case of job 3 (CaseView)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from web3.logs import DISCARD
from web3.types import TxReceipt

from greenproof.chain.client import Chain
from greenproof.chain.errors import ChainError
from greenproof.chain.manifest import Deployment
from greenproof.chain.models import (
    COURT_EVENTS,
    COURT_PARAMS,
    MARKET_EVENTS,
    MARKET_PARAMS,
    Attestation,
    CaseView,
    Event,
    JobPosted,
    MemberView,
    OnchainJob,
    Opening,
    PoolView,
    SeatView,
)

if TYPE_CHECKING:
    from greenproof.attestation import SignedAttestation

log = logging.getLogger(__name__)
E = TypeVar("E", bound=Event)


class Gateway:
    """Typed reads, transactions and events of one deployment, as one account."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self._params: dict[str, int] = {}
        self._court_params: dict[str, int] = {}
        self._max_openings: int | None = None
        self._seat_stake: int | None = None

    # ------------------------------------------------------------------ identity
    @property
    def address(self) -> str:
        """The signing account's address (``ChainError`` when there is no account)."""
        return self.chain.address

    @property
    def deployment(self) -> Deployment:
        """The deployment manifest (``ChainError`` when the chain was connected without one)."""
        if self.chain.deployment is None:
            raise ChainError(
                f"chain: no deployment manifest for chain {self.chain.chain_id}; run "
                "`greenproof deploy` or pass --deployment PATH"
            )
        return self.chain.deployment

    @property
    def market_address(self) -> str:
        return str(self.chain.contract("market").address)

    @property
    def court_address(self) -> str:
        return str(self.chain.contract("court").address)

    @property
    def stake_address(self) -> str:
        return str(self.chain.contract("stake").address)

    @property
    def registry_address(self) -> str:
        return str(self.chain.contract("registry").address)

    @property
    def token_address(self) -> str:
        return str(self.chain.contract("token").address)

    # ------------------------------------------------------------------ plumbing
    def _view(self, role: str, fn: str, *args: Any, job_id: int | None = None) -> Any:
        call = self.chain.contract(role).functions[fn](*args)
        return self.chain.call(call, context={"job": job_id} if job_id is not None else None)

    def _send(self, role: str, fn: str, *args: Any, what: str,
              context: dict[str, Any] | None = None) -> TxReceipt:
        call = self.chain.contract(role).functions[fn](*args)
        return self.chain.transact(call, what=what, context=context)

    def _struct(self, role: str, fn: str, raw: Any) -> dict[str, Any]:
        """A struct a view returned (web3 hands back a plain tuple), keyed by the ABI's field names."""
        names = _struct_fields(self.chain.contract(role).abi, fn)
        return dict(zip(names, raw, strict=True))

    # ------------------------------------------------------------------ market reads
    def job(self, job_id: int) -> OnchainJob:
        """``get_job``: the job, unpacked (state ``NONE`` when there is no such job)."""
        raw = self._view("market", "get_job", job_id, job_id=job_id)
        return OnchainJob.model_validate({"job_id": job_id, **self._struct("market", "get_job", raw)})

    def next_job_id(self) -> int:
        """The id the next posted job gets (ids start at 1)."""
        return int(self._view("market", "next_job_id"))

    def param(self, name: str) -> int:
        """A JobMarket parameter (cached: they change rarely, only by governance)."""
        if name not in MARKET_PARAMS:
            raise ValueError(f"market: no parameter {name!r} (one of {', '.join(MARKET_PARAMS)})")
        if name not in self._params:
            self._params[name] = int(self._view("market", name))
        return self._params[name]

    def params(self) -> dict[str, int]:
        """Every JobMarket parameter, read now (not cached)."""
        return {name: int(self._view("market", name)) for name in MARKET_PARAMS}

    @property
    def max_openings(self) -> int:
        """``MAX_OPENINGS``: the most openings one ``open_segments`` call takes."""
        if self._max_openings is None:
            self._max_openings = int(self._view("market", "MAX_OPENINGS"))
        return self._max_openings

    def audit_draws(self, job_id: int) -> tuple[list[int], list[int]]:
        """``(indices, targets)`` of a drawn job (``AuditRules.draws``): the uniform segment
        indices and the movement targets; both empty before the draw."""
        job = self.job(job_id)
        if job.seed == b"\x00" * 32:
            return [], []
        indices, targets = self._view("rules", "draws", job.seed, job_id, job.num_segments,
                                      job.audit_samples, job.move_total, job_id=job_id)
        return [int(i) for i in indices], [int(t) for t in targets]

    def movement_draws(self, job_id: int) -> list[int]:
        """The movement targets ``u_j`` of a drawn job (empty before the draw)."""
        return self.audit_draws(job_id)[1]

    def audit_indices(self, job_id: int) -> list[int]:
        """The uniform audit samples' segment indices in draw order (duplicates kept); empty
        before the draw. The movement samples are :meth:`movement_draws`."""
        return self.audit_draws(job_id)[0]

    def next_open_index(self, job_id: int) -> int:
        """The least segment the job's next opening may have: openings go in strictly
        ascending order, so every audited segment below it is already open."""
        return self.job(job_id).next_open_index

    def claimable(self, who: str | None = None) -> int:
        """What the market owes ``who`` (default: this account), pulled by :meth:`withdraw`."""
        return int(self._view("market", "claimable", who or self.address))

    def max_job_lifetime(self) -> int:
        """The longest a job can hold stake, in seconds."""
        return int(self._view("market", "max_job_lifetime"))

    # ------------------------------------------------------------------ market transactions
    def post_job(self, *, spec_hash: bytes, spec_uri: str, num_segments: int, audit_samples: int,
                 payment: int, verifier_fee: int, collateral: int, deadline: int,
                 min_green_bps: int, green_premium: int = 0) -> tuple[int, TxReceipt]:
        """Approve the escrow (``payment + verifier_fee + green_premium``) and post a job;
        returns ``(job_id, receipt)``."""
        ctx = {"spec": "0x" + spec_hash.hex()[:12]}
        self.chain.ensure_allowance(self.market_address, payment + verifier_fee + green_premium, context=ctx)
        receipt = self._send(
            "market", "post_job", spec_hash, spec_uri, num_segments, audit_samples, payment,
            verifier_fee, collateral, deadline, min_green_bps, green_premium, what="post job", context=ctx,
        )
        posted = self.receipt_events(JobPosted, receipt)
        if not posted:
            raise ChainError("market: post_job mined but emitted no JobPosted event")
        return posted[0].job_id, receipt

    def cancel_job(self, job_id: int) -> TxReceipt:
        return self._send("market", "cancel_job", job_id, what="cancel job", context={"job": job_id})

    def accept_job(self, job_id: int, determinism_class: bytes) -> TxReceipt:
        return self._send("market", "accept_job", job_id, determinism_class,
                          what="accept job", context={"job": job_id})

    def commit_result(self, job_id: int, root: bytes, final_state_hash: bytes, energy_mj: int,
                      move_total: int, result_uri: str) -> TxReceipt:
        return self._send("market", "commit_result", job_id, root, final_state_hash, int(energy_mj),
                          int(move_total), result_uri, what="commit result", context={"job": job_id})

    def draw_audit(self, job_id: int) -> TxReceipt:
        return self._send("market", "draw_audit", job_id, what="draw audit", context={"job": job_id})

    def open_segments(self, job_id: int, openings: Sequence[Opening]) -> list[TxReceipt]:
        """Open audited segments, in batches of at most ``MAX_OPENINGS`` per transaction.

        Returns one receipt per batch; a batch that reverts raises ``TxError``
        naming the segments it carried (the earlier batches stay opened).
        """
        if not openings:
            raise ValueError(f"market: job {job_id}: no openings to send")
        return [
            self._send("market", "open_segments", job_id, [o.as_tuple() for o in part],
                       what="open segments", context={"job": job_id, "segments": [o.index for o in part]})
            for part in _batches(openings, self.max_openings)
        ]

    def expire_job(self, job_id: int) -> TxReceipt:
        return self._send("market", "expire_job", job_id, what="expire job", context={"job": job_id})

    def slash_undrawn(self, job_id: int) -> TxReceipt:
        """Slash a COMMITTED job not drawn by its draw deadline (or whose seed is out of reach)."""
        return self._send("market", "slash_undrawn", job_id, what="slash undrawn",
                          context={"job": job_id})

    def slash_unopened(self, job_id: int) -> TxReceipt:
        return self._send("market", "slash_unopened", job_id, what="slash unopened",
                          context={"job": job_id})

    def finalize(self, job_id: int) -> TxReceipt:
        """Ask the court to decide the job's round (reverts ``court: round not over`` before its
        reveal end); an undecided round with rounds left draws the next one and the job stays VOTING."""
        return self._send("market", "finalize", job_id, what="finalize", context={"job": job_id})

    def withdraw(self) -> TxReceipt:
        """Pull everything the market owes this account (reverts ``market: nothing to withdraw``)."""
        return self._send("market", "withdraw", what="withdraw")

    # ------------------------------------------------------------------ court reads
    def seat_stake(self) -> int:
        """``SEAT_STAKE``: the stake one seat locks (fixed at deployment)."""
        if self._seat_stake is None:
            self._seat_stake = int(self._view("court", "SEAT_STAKE"))
        return self._seat_stake

    def court_param(self, name: str) -> int:
        """A VerifierCourt parameter (cached, as :meth:`param`)."""
        if name not in COURT_PARAMS:
            raise ValueError(f"court: no parameter {name!r} (one of {', '.join(COURT_PARAMS)})")
        if name not in self._court_params:
            self._court_params[name] = int(self._view("court", name))
        return self._court_params[name]

    def court_params(self) -> dict[str, int]:
        """Every VerifierCourt parameter, read now (not cached)."""
        return {name: int(self._view("court", name)) for name in COURT_PARAMS}

    def pool_of(self, dclass: bytes) -> PoolView:
        """The pool of determinism class ``dclass`` (all zero when nobody joined it)."""
        raw = self._view("court", "pool_of", dclass)
        return PoolView.model_validate(self._struct("court", "pool_of", raw))

    def pool_stake(self, dclass: bytes) -> int:
        """(free + busy seats) * ``SEAT_STAKE`` of the pool; ``accept_job`` needs ``>= min_class_stake``."""
        return int(self._view("court", "pool_stake", dclass))

    def member_of(self, dclass: bytes, who: str | None = None) -> MemberView:
        """``who``'s (default: this account's) free and busy seats in the pool of ``dclass``."""
        raw = self._view("court", "member_of", dclass, who or self.address)
        return MemberView.model_validate(self._struct("court", "member_of", raw))

    def case_of(self, job_id: int) -> CaseView:
        """The job's case: terms, current round, its windows and counts (all zero before the draw)."""
        raw = self._view("court", "case_of", job_id, job_id=job_id)
        return CaseView.model_validate(self._struct("court", "case_of", raw))

    def seat_of(self, job_id: int, round: int, voter: str) -> SeatView:
        """The seats ``voter`` holds in ``round`` of the job's case and its vote (seats 0: not seated)."""
        raw = self._view("court", "seat_of", job_id, round, voter, job_id=job_id)
        return SeatView.model_validate(self._struct("court", "seat_of", raw))

    def voting_ends(self, job_id: int) -> int:
        """The current round's reveal end: the first timestamp ``finalize`` may be called
        (0 before voting started)."""
        return self.case_of(job_id).reveal_end

    # ------------------------------------------------------------------ court transactions
    def join_pool(self, dclass: bytes, seats: int) -> TxReceipt:
        """Add ``seats`` seats to the pool of ``dclass``, locking ``seats * SEAT_STAKE`` of free stake."""
        return self._send("court", "join", dclass, int(seats), what="join pool",
                          context={"class": "0x" + dclass.hex()[:12], "seats": seats})

    def leave_pool(self, dclass: bytes, seats: int) -> TxReceipt:
        """Take ``seats`` free seats out of the pool of ``dclass`` (their stake is unlocked)."""
        return self._send("court", "leave", dclass, int(seats), what="leave pool",
                          context={"class": "0x" + dclass.hex()[:12], "seats": seats})

    def commit_vote(self, job_id: int, commitment: bytes) -> TxReceipt:
        """Commit the sealed vote of this account's seats in the case's current round
        (:func:`greenproof.merkle.vote_commitment`)."""
        return self._send("court", "commit_vote", job_id, commitment, what="commit vote",
                          context={"job": job_id})

    def reveal_vote(self, job_id: int, fraud: bool, salt: bytes, digests: Sequence[bytes],
                    segments: Sequence[int]) -> TxReceipt:
        """Reveal the committed vote with the replayed work digests of the opened ``segments``
        (ascending, as the ``SegmentOpened`` events list them)."""
        return self._send("court", "reveal_vote", job_id, fraud, salt, list(digests),
                          [int(k) for k in segments], what="reveal vote", context={"job": job_id})

    def settle_seat(self, job_id: int, round: int, voter: str) -> TxReceipt:
        """Settle the seats ``voter`` held in ``round`` of a decided case (anyone, once)."""
        return self._send("court", "settle", job_id, round, voter, what="settle seat",
                          context={"job": job_id, "round": round, "voter": voter})

    # ------------------------------------------------------------------ stake
    def staked(self, who: str | None = None) -> int:
        return int(self._view("stake", "staked", who or self.address))

    def free_stake(self, who: str | None = None) -> int:
        return int(self._view("stake", "free_stake", who or self.address))

    def locked_stake(self, who: str | None = None) -> int:
        return int(self._view("stake", "locked", who or self.address))

    def unbonding(self, who: str | None = None) -> tuple[int, int]:
        """``(amount, release time)`` of the account's pending unstake."""
        who = who or self.address
        return int(self._view("stake", "unbonding", who)), int(self._view("stake", "unbonding_release", who))

    def unbonding_period(self) -> int:
        return int(self._view("stake", "unbonding_period"))

    def stake(self, amount: int) -> TxReceipt:
        """Approve (if needed) and bond ``amount`` base units of stake."""
        self.chain.ensure_allowance(self.stake_address, amount)
        return self._send("stake", "stake", int(amount), what="stake")

    def request_unstake(self, amount: int) -> TxReceipt:
        return self._send("stake", "request_unstake", int(amount), what="request unstake")

    def withdraw_stake(self) -> TxReceipt:
        """Pull released unbonding stake (reverts ``stake: still unbonding`` before the release)."""
        return self._send("stake", "withdraw", what="withdraw stake")

    # ------------------------------------------------------------------ registry
    def green_bps(self, who: str | None = None) -> int:
        """The green share the market uses for ``who`` (0 without an attestation in force)."""
        return int(self._view("registry", "green_bps_of", who or self.address))

    def carbon_intensity(self, who: str | None = None) -> int:
        """g CO2e/kWh for ``who``: attested, or the registry's default."""
        return int(self._view("registry", "carbon_intensity_of", who or self.address))

    def attestation_of(self, who: str | None = None) -> Attestation:
        raw = self._view("registry", "attestation_of", who or self.address)
        return Attestation.model_validate(self._struct("registry", "attestation_of", raw))

    def attestation_in_force(self, who: str | None = None) -> bool:
        return bool(self._view("registry", "attestation_in_force", who or self.address))

    def attestation_nonce(self, provider: str, attestor: str | None = None) -> int:
        """The last nonce ``attestor`` (default: this account) signed for ``provider`` that the
        registry accepted; that attestor's next attestation for the provider needs a higher one."""
        return int(self._view("registry", "nonce_of", provider, attestor or self.address))

    def is_attestor(self, who: str | None = None) -> bool:
        return bool(self._view("registry", "is_attestor", who or self.address))

    def submit_attestation(self, signed: SignedAttestation) -> TxReceipt:
        att = signed.attestation
        return self._send("registry", "submit_attestation", *signed.submit_args(),
                          what="submit attestation",
                          context={"provider": att.provider, "nonce": att.nonce})

    def add_attestor(self, who: str) -> TxReceipt:
        return self._send("registry", "add_attestor", who, what="add attestor",
                          context={"attestor": who})

    def remove_attestor(self, who: str) -> TxReceipt:
        return self._send("registry", "remove_attestor", who, what="remove attestor",
                          context={"attestor": who})

    def is_allocator(self, who: str | None = None) -> bool:
        return bool(self._view("registry", "is_allocator", who or self.address))

    def allowance_of(self, requester: str | None = None) -> int:
        """What bonus ``requester``'s jobs may still draw from the pool (0 once its allocator
        is removed)."""
        return int(self._view("registry", "allowance_of", requester or self.address))

    def allocator_of(self, requester: str | None = None) -> str | None:
        """The allocator that granted ``requester``'s allowance (``None`` if none)."""
        who = str(self._view("registry", "allocator_of", requester or self.address))
        return None if int(who, 16) == 0 else who

    def bonus_pool(self) -> int:
        """Tokens in the green bonus pool."""
        return int(self._view("registry", "pool"))

    def add_allocator(self, who: str) -> TxReceipt:
        return self._send("registry", "add_allocator", who, what="add allocator",
                          context={"allocator": who})

    def remove_allocator(self, who: str) -> TxReceipt:
        return self._send("registry", "remove_allocator", who, what="remove allocator",
                          context={"allocator": who})

    def grant_allowance(self, requester: str, amount: int) -> TxReceipt:
        """Set ``requester``'s bonus allowance to ``amount`` (as an allocator)."""
        return self._send("registry", "grant_allowance", requester, int(amount),
                          what="grant allowance", context={"requester": requester})

    def revoke_allowance(self, requester: str) -> TxReceipt:
        """Zero ``requester``'s bonus allowance (its granting allocator, or the owner)."""
        return self._send("registry", "revoke_allowance", requester, what="revoke allowance",
                          context={"requester": requester})

    def fund_pool(self, amount: int) -> TxReceipt:
        """Approve (if needed) and add ``amount`` to the green bonus pool."""
        self.chain.ensure_allowance(self.registry_address, amount)
        return self._send("registry", "fund_pool", int(amount), what="fund green bonus pool")

    # ------------------------------------------------------------------ token
    def token_balance(self, who: str | None = None) -> int:
        return int(self._view("token", "balanceOf", who or self.address))

    def token_decimals(self) -> int:
        return int(self._view("token", "decimals"))

    def token_symbol(self) -> str:
        return str(self._view("token", "symbol"))

    def mint(self, to: str, amount: int) -> TxReceipt:
        """Mint mock tokens (dev chains: the mock token's ``mint``)."""
        return self._send("token", "mint", to, int(amount), what="mint", context={"to": to})

    # ------------------------------------------------------------------ events
    def events(self, event: type[E], from_block: int, to_block: int | None = None, *,
               job_id: int | None = None, **indexed: Any) -> list[E]:
        """``event`` logs in ``[from_block, to_block]`` (default: up to the head), in chain order.

        ``job_id`` (and any other indexed argument by name) filters on the node.
        """
        args = dict(indexed)
        if job_id is not None:
            args["job_id"] = job_id
        logs = self.chain.logs(event.event_name(), from_block, to_block, event.contract,
                               args=args or None)
        return [event.from_log(entry) for entry in logs]

    def market_events(self, from_block: int, to_block: int | None = None) -> list[Event]:
        """Every JobMarket event in the range, as models, in chain order (one query per chunk)."""
        return self._all_events("market", MARKET_EVENTS, from_block, to_block)

    def court_events(self, from_block: int, to_block: int | None = None) -> list[Event]:
        """Every VerifierCourt event in the range, as models, in chain order."""
        return self._all_events("court", COURT_EVENTS, from_block, to_block)

    def _all_events(self, role: str, models: dict[str, type[Event]], from_block: int,
                    to_block: int | None) -> list[Event]:
        out: list[Event] = []
        for entry in self.chain.events(from_block, to_block, role):
            model = models.get(entry["event"])
            if model is None:
                log.debug("gateway: no model for %s event %s; skipped", role, entry["event"])
                continue
            out.append(model.from_log(entry))
        return out

    def receipt_events(self, event: type[E], receipt: TxReceipt) -> list[E]:
        """The ``event`` logs a transaction emitted."""
        contract = self.chain.contract(event.contract)
        logs = contract.events[event.event_name()]().process_receipt(receipt, errors=DISCARD)
        return [event.from_log(entry) for entry in logs]


def _batches(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    size = max(1, size)
    for lo in range(0, len(items), size):
        yield list(items[lo: lo + size])


def _struct_fields(abi: list[dict[str, Any]], fn_name: str) -> list[str]:
    """The field names of the struct (or tuple) a view returns, from the ABI."""
    for item in abi:
        if item.get("type") == "function" and item.get("name") == fn_name:
            outputs = item["outputs"]
            if len(outputs) == 1 and outputs[0].get("components"):
                return [c["name"] for c in outputs[0]["components"]]
            return [o["name"] for o in outputs]
    raise ChainError(f"chain: the ABI has no function {fn_name!r} (stale deployment manifest?)")


__all__ = ["COURT_PARAMS", "MARKET_PARAMS", "Gateway"]
