"""Deprecated: the worker's old typed reads of JobMarket, until it moves to the gateway.

New code uses :class:`greenproof.chain.gateway.Gateway` and
:mod:`greenproof.chain.models`; ``JobState``, ``decode_state``, ``STATE_ORDER``
and ``FINAL_STATES`` here are the models' own (one ``JobState``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from greenproof.chain.client import Chain
from greenproof.chain.models import (
    FINAL_STATES,
    STATE_ORDER,
    ZERO_ADDRESS,
    JobState,
    decode_state,
)


@dataclass(frozen=True)
class OnchainJob:
    """The fields of a job the worker acts on."""

    job_id: int
    state: JobState
    requester: str
    provider: str
    spec_hash: bytes
    num_segments: int
    audit_samples: int
    payment: int
    verifier_fee: int
    collateral: int
    deadline: int
    min_green_bps: int
    seed_block: int
    open_deadline: int
    voting_start: int
    raw: dict[str, Any]


def _named(contract: Any, fn_name: str, value: Any) -> dict[str, Any]:
    """Name the fields of a struct/tuple return value from the ABI."""
    for item in contract.abi:
        if item.get("type") == "function" and item.get("name") == fn_name:
            outputs = item.get("outputs", [])
            if len(outputs) == 1 and outputs[0].get("components"):
                names = [c["name"] for c in outputs[0]["components"]]
            else:
                names = [o["name"] for o in outputs]
            if isinstance(value, dict):
                return dict(value)
            if not isinstance(value, list | tuple):
                value = (value,)
            return dict(zip(names, value, strict=False))
    raise KeyError(f"market: the JobMarket ABI has no function {fn_name!r}")


def _pick(d: dict[str, Any], *names: str, default: Any = 0) -> Any:
    for n in names:
        if n in d:
            return d[n]
    return default


class Market:
    """Reads the worker needs, on one :class:`Chain`."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.market = chain.market
        self._fns = {i["name"] for i in self.market.abi if i.get("type") == "function"}
        self._params: dict[str, int] = {}

    def has(self, fn_name: str) -> bool:
        return fn_name in self._fns

    def call(self, fn_name: str, *args: Any, job_id: int | None = None) -> Any:
        ctx = {"job": job_id} if job_id is not None else None
        return self.chain.call(getattr(self.market.functions, fn_name)(*args), context=ctx)

    def job(self, job_id: int) -> OnchainJob:
        d = _named(self.market, "get_job", self.call("get_job", job_id, job_id=job_id))
        return OnchainJob(
            job_id=job_id,
            state=decode_state(_pick(d, "state")),
            requester=str(_pick(d, "requester", default=ZERO_ADDRESS)),
            provider=str(_pick(d, "provider", default=ZERO_ADDRESS)),
            spec_hash=bytes(_pick(d, "spec_hash", default=b"")),
            num_segments=int(_pick(d, "num_segments")),
            audit_samples=int(_pick(d, "audit_samples")),
            payment=int(_pick(d, "payment")),
            verifier_fee=int(_pick(d, "verifier_fee")),
            collateral=int(_pick(d, "collateral")),
            deadline=int(_pick(d, "deadline")),
            min_green_bps=int(_pick(d, "min_green_bps")),
            seed_block=int(_pick(d, "seed_block")),
            open_deadline=int(_pick(d, "open_deadline")),
            voting_start=int(_pick(d, "voting_start")),
            raw=d,
        )

    def param(self, name: str) -> int:
        """A market parameter (cached; they change rarely and only by governance)."""
        if name not in self._params:
            self._params[name] = int(self.call(name))
        return self._params[name]

    def audit_indices(self, job_id: int) -> list[int]:
        return [int(i) for i in self.call("audit_indices", job_id, job_id=job_id)]

    def is_opened(self, job_id: int, index: int) -> bool | None:
        """Whether segment ``index`` is open on chain (None if the market has no such view)."""
        if self.has("is_opened"):
            return bool(self.call("is_opened", job_id, index, job_id=job_id))
        return None

    def voting_ends(self, job: OnchainJob) -> int:
        """First timestamp at which ``finalize`` may be called."""
        return job.voting_start + self.param("vote_commit_window") + self.param("vote_reveal_window")

    def claimable(self, who: str) -> int:
        return int(self.call("claimable", who))

    def green_bps(self, who: str) -> int:
        return int(self.chain.call(self.chain.registry.functions.green_bps_of(who)))

    def free_stake(self, who: str) -> int:
        return int(self.chain.call(self.chain.stake.functions.free_stake(who)))


__all__ = [
    "FINAL_STATES",
    "STATE_ORDER",
    "ZERO_ADDRESS",
    "JobState",
    "Market",
    "OnchainJob",
    "decode_state",
]
