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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from web3.types import TxReceipt

from greenproof.chain.client import Chain, ChainError
from greenproof.chain.models import (
    Event,
    JobPosted,
    OnchainJob,
    Opening,
    VoteView,
)

E = TypeVar("E", bound=Event)

#: JobMarket parameters readable as views (``docs/protocol.md`` §2.3 lists their bounds).
MARKET_PARAMS = (
    "seed_lookahead", "open_window", "vote_commit_window", "vote_reveal_window",
    "max_audit_samples", "min_collateral_bps", "min_verifier_stake", "max_vote_stake",
    "voter_slash_bps", "requester_share_bps", "max_job_duration",
)


class Gateway:
    """Typed reads, transactions and events of one deployment, as one account."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self._params: dict[str, int] = {}
        self._max_openings: int | None = None

    # ------------------------------------------------------------------ plumbing
    @property
    def address(self) -> str:
        """The signing account's address."""
        return self.chain.address

    def _view(self, role: str, fn: str, *args: Any, job_id: int | None = None) -> Any:
        call = getattr(self.chain.contract(role).functions, fn)(*args)
        return self.chain.call(call, context={"job": job_id} if job_id is not None else None)

    def _send(self, role: str, fn: str, *args: Any, what: str,
              context: dict[str, Any] | None = None) -> TxReceipt:
        call = getattr(self.chain.contract(role).functions, fn)(*args)
        return self.chain.transact(call, what=what, context=context)

    # ------------------------------------------------------------------ market reads
    def job(self, job_id: int) -> OnchainJob:
        """``get_job``: the job, unpacked (state ``NONE`` when there is no such job)."""
        raw = self._view("market", "get_job", job_id, job_id=job_id)
        names = _struct_fields(self.chain.contract("market").abi, "get_job")
        return OnchainJob.model_validate({"job_id": job_id, **dict(zip(names, raw, strict=True))})

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

    def audit_indices(self, job_id: int) -> list[int]:
        """The audited segment indices in draw order (duplicates kept); empty before the draw."""
        return [int(i) for i in self._view("market", "audit_indices", job_id, job_id=job_id)]

    def is_opened(self, job_id: int, index: int) -> bool:
        return bool(self._view("market", "is_opened", job_id, index, job_id=job_id))

    def vote_of(self, job_id: int, voter: str) -> VoteView:
        raw = self._view("market", "vote_of", job_id, voter, job_id=job_id)
        names = _struct_fields(self.chain.contract("market").abi, "vote_of")
        return VoteView.model_validate(dict(zip(names, raw, strict=True)))

    def voting_ends(self, job: OnchainJob) -> int:
        """First timestamp at which ``finalize`` may be called."""
        return job.voting_start + self.param("vote_commit_window") + self.param("vote_reveal_window")

    def claimable(self, who: str | None = None) -> int:
        """What the market owes ``who`` (default: this account), pulled by :meth:`withdraw`."""
        return int(self._view("market", "claimable", who or self.address))

    def max_job_lifetime(self) -> int:
        return int(self._view("market", "max_job_lifetime"))

    # ------------------------------------------------------------------ market transactions
    def post_job(self, *, spec_hash: bytes, spec_uri: str, num_segments: int, audit_samples: int,
                 payment: int, verifier_fee: int, collateral: int, deadline: int,
                 min_green_bps: int) -> tuple[int, TxReceipt]:
        """Approve the escrow and post a job; returns ``(job_id, receipt)``."""
        ctx = {"spec": "0x" + spec_hash.hex()[:12]}
        market = self.chain.contract("market")
        self.chain.ensure_allowance(market.address, payment + verifier_fee, context=ctx)
        receipt = self._send(
            "market", "post_job", spec_hash, spec_uri, num_segments, audit_samples, payment,
            verifier_fee, collateral, deadline, min_green_bps, what="post job", context=ctx,
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
                      result_uri: str) -> TxReceipt:
        return self._send("market", "commit_result", job_id, root, final_state_hash, int(energy_mj),
                          result_uri, what="commit result", context={"job": job_id})

    def draw_audit(self, job_id: int) -> TxReceipt:
        return self._send("market", "draw_audit", job_id, what="draw audit", context={"job": job_id})

    def open_segments(self, job_id: int, openings: Sequence[Opening]) -> list[TxReceipt]:
        """Open audited segments, in batches of at most ``MAX_OPENINGS`` per transaction.

        Returns one receipt per batch; a batch that reverts raises ``TxError``
        naming the segments it carried (the earlier batches stay opened).
        """
        receipts = []
        size = self.max_openings
        for part in _batches(list(openings), size):
            receipts.append(self._send(
                "market", "open_segments", job_id, [o.as_tuple() for o in part],
                what="open segments", context={"job": job_id, "segments": [o.index for o in part]},
            ))
        return receipts

    def expire_job(self, job_id: int) -> TxReceipt:
        return self._send("market", "expire_job", job_id, what="expire job", context={"job": job_id})

    def slash_unopened(self, job_id: int) -> TxReceipt:
        return self._send("market", "slash_unopened", job_id, what="slash unopened",
                          context={"job": job_id})

    def commit_vote(self, job_id: int, commitment: bytes) -> TxReceipt:
        return self._send("market", "commit_vote", job_id, commitment, what="commit vote",
                          context={"job": job_id})

    def reveal_vote(self, job_id: int, fraud: bool, salt: bytes) -> TxReceipt:
        return self._send("market", "reveal_vote", job_id, fraud, salt, what="reveal vote",
                          context={"job": job_id})

    def finalize(self, job_id: int) -> TxReceipt:
        return self._send("market", "finalize", job_id, what="finalize", context={"job": job_id})

    def settle_vote(self, job_id: int, voter: str) -> TxReceipt:
        return self._send("market", "settle_vote", job_id, voter, what="settle vote",
                          context={"job": job_id, "voter": voter})

    def withdraw(self) -> TxReceipt:
        """Pull everything the market owes this account."""
        return self._send("market", "withdraw", what="withdraw")

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

    def stake(self, amount: int) -> TxReceipt:
        """Approve and bond ``amount`` base units of stake."""
        stake = self.chain.contract("stake")
        self.chain.ensure_allowance(stake.address, amount)
        return self._send("stake", "stake", int(amount), what="stake")

    def request_unstake(self, amount: int) -> TxReceipt:
        return self._send("stake", "request_unstake", int(amount), what="request unstake")

    def withdraw_stake(self) -> TxReceipt:
        return self._send("stake", "withdraw", what="withdraw stake")

    # ------------------------------------------------------------------ registry
    def green_bps(self, who: str | None = None) -> int:
        return int(self._view("registry", "green_bps_of", who or self.address))

    def carbon_intensity(self, who: str | None = None) -> int:
        return int(self._view("registry", "carbon_intensity_of", who or self.address))

    def submit_attestation(self, *args: Any) -> TxReceipt:
        return self._send("registry", "submit_attestation", *args, what="submit attestation")

    def add_attestor(self, who: str) -> TxReceipt:
        return self._send("registry", "add_attestor", who, what="add attestor")

    def remove_attestor(self, who: str) -> TxReceipt:
        return self._send("registry", "remove_attestor", who, what="remove attestor")

    def fund_pool(self, amount: int) -> TxReceipt:
        registry = self.chain.contract("registry")
        self.chain.ensure_allowance(registry.address, amount)
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
        return self._send("token", "mint", to, int(amount), what="mint")

    # ------------------------------------------------------------------ events
    def events(self, event: type[E], from_block: int, to_block: int | None = None, *,
               job_id: int | None = None, **indexed: Any) -> list[E]:
        """``event`` logs in ``[from_block, to_block]``, in chain order, as models.

        ``job_id`` (and any other indexed argument by name) filters on the node.
        """
        args = dict(indexed)
        if job_id is not None:
            args["job_id"] = job_id
        logs = self.chain.logs(event.__name__, from_block, to_block, event.contract,
                               args=args or None)
        return [event.from_log(entry) for entry in logs]  # type: ignore[misc]

    def receipt_events(self, event: type[E], receipt: TxReceipt) -> list[E]:
        """The ``event`` logs a transaction emitted."""
        from web3.logs import DISCARD

        contract = self.chain.contract(event.contract)
        logs = getattr(contract.events, event.__name__)().process_receipt(receipt, errors=DISCARD)
        return [event.from_log(entry) for entry in logs]  # type: ignore[misc]


def _batches(items: list[Any], size: int) -> Iterable[list[Any]]:
    for lo in range(0, len(items), max(1, size)):
        yield items[lo: lo + size]


def _struct_fields(abi: list[dict[str, Any]], fn_name: str) -> list[str]:
    """The field names of the struct (or tuple) a view returns, from the ABI."""
    for item in abi:
        if item.get("type") == "function" and item.get("name") == fn_name:
            outputs = item["outputs"]
            if len(outputs) == 1 and outputs[0].get("components"):
                return [c["name"] for c in outputs[0]["components"]]
            return [o["name"] for o in outputs]
    raise ChainError(f"chain: the ABI has no function {fn_name!r} (stale deployment manifest?)")


__all__ = ["MARKET_PARAMS", "Gateway"]
