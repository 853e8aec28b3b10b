"""In-memory stand-ins for :class:`greenproof.chain.gateway.Gateway`: the worker's
(:class:`FakeGateway`) and the verifier's (:class:`FakeMarket`).

It keeps jobs the way JobMarket does and enforces the rules the worker relies
on: only the provider commits, the audit is drawn once the seed block is past,
only audited segments open, in strictly ascending index across all calls and
only with proofs of both leaves (seals included; boundary 0 must carry
``boundary0_seal``) against the committed root, the end seals chain into the
job's ``seal_acc``, the job moves to VOTING when every audited segment is open,
finalize waits for the vote windows. Every transaction tried is recorded in ``sent``;
``reverts[(job_id, "commit_result")] = "reason"`` makes that job's transaction
revert with that reason on every try, as a real node reports it (``TxError``),
and a job in ``unreadable`` makes its ``get_job`` view revert.

Time is the fake's: ``now`` (chain time) and the head block the test hands the
worker; nothing here sleeps. :class:`LiveClock` is chain time that also runs with
the wall clock, for tests whose budgets are wall time (a verifier's fetch deadlines).

:class:`FakeMarket` is JobMarket as the verifier sees it: jobs that reach VOTING
with every event a verifier reads (``JobPosted``, ``JobAccepted``,
``ResultCommitted``, ``SegmentOpened``, ``VotingStarted``), and the votes with the
contract's windows (a commit after the commit window reverts, a reveal must open
its commitment, ``finalize`` slashes when the revealed fraud weight wins).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from eth_utils import keccak
from hexbytes import HexBytes

from greenproof.chain.errors import ChainError, TxError
from greenproof.chain.models import (
    JobAccepted,
    JobEvent,
    JobPosted,
    JobState,
    OnchainJob,
    Opening,
    ResultCommitted,
    SegmentOpened,
    VoteCommitted,
    VoteStatus,
    VoteView,
    VotingStarted,
)
from greenproof.merkle import ZERO32, boundary0_seal, complete_end_proof, leaf, verify
from verifier.votes import vote_commitment

if TYPE_CHECKING:
    from verifier.audit import OpenedSegment

PROVIDER = "0x" + "22" * 20
REQUESTER = "0x" + "11" * 20
VERIFIER = "0x" + "33" * 20
MARKET = "0x" + "44" * 20
ZERO = "0x" + "00" * 20
VOTE_WINDOWS = 120
OPEN_WINDOW = 120
#: the contract's MAX_OPENINGS (the real gateway batches by it; the fake takes any number)
MAX_OPENINGS = 16

_WHAT = {
    "accept_job": "accept job", "commit_result": "commit result", "draw_audit": "draw audit",
    "open_segments": "open segments", "finalize": "finalize", "withdraw": "withdraw",
    "commit_vote": "commit vote", "reveal_vote": "reveal vote", "settle_vote": "settle vote",
}


class FixedClock:
    """Chain time that moves only when the test moves it (the worker's ChainClock stand-in)."""

    def __init__(self, now: int = 1_000_000) -> None:
        self.t = now

    def now(self) -> int:
        return self.t


class LiveClock(FixedClock):
    """Chain time that runs with the wall clock (and jumps when the test moves ``t``)."""

    def __init__(self, now: int = 1_000_000) -> None:
        super().__init__(now)
        self._t0 = time.monotonic()

    def now(self) -> int:
        return self.t + int(time.monotonic() - self._t0)


class FakeGateway:
    """JobMarket, StakeManager and GreenRegistry as far as the worker uses them."""

    def __init__(self, clock: FixedClock) -> None:
        self.address = PROVIDER
        self.clock = clock
        self.jobs: dict[int, dict[str, Any]] = {}
        self.draws: dict[int, list[int]] = {}  # the indices draw_audit will draw, per job
        self.indices: dict[int, list[int]] = {}
        self.opened: dict[int, set[int]] = {}
        #: JobMarket's ``seal_acc`` per job: the opened segments' end seals, chained
        self.seal_acc: dict[int, bytes] = {}
        self.posted: list[JobPosted] = []
        self.reverts: dict[tuple[int, str], str] = {}
        self.unreadable: set[int] = set()
        self.node_down = False
        self.sent: list[tuple[str, int]] = []
        self.open_calls: list[tuple[int, list[Opening]]] = []
        self.owed = 0
        self.head = 100

    # ------------------------------------------------------------------ setting the scene
    def add_job(self, job_id: int, **fields: Any) -> None:
        """A job on the market (OPEN, posted by REQUESTER unless ``fields`` say otherwise)."""
        self.jobs[job_id] = {
            **_blank(job_id), "requester": REQUESTER, "state": JobState.OPEN, "num_segments": 4,
            "audit_samples": 2, "payment": 100, "verifier_fee": 1, "collateral": 100,
            "deadline": self.clock.now() + 86_400, **fields,
        }

    def post(self, job_id: int, spec_uri: str, block: int, **fields: Any) -> None:
        """``add_job`` plus its ``JobPosted`` event in ``block``."""
        self.add_job(job_id, **fields)
        j = self.jobs[job_id]
        self.posted.append(JobPosted(
            block_number=block, log_index=0, tx_hash="0x" + "ab" * 32, job_id=job_id,
            requester=j["requester"], spec_hash=j["spec_hash"], spec_uri=spec_uri,
            num_segments=j["num_segments"], audit_samples=j["audit_samples"], payment=j["payment"],
            verifier_fee=j["verifier_fee"], collateral=j["collateral"], deadline=j["deadline"],
            min_green_bps=j["min_green_bps"],
        ))

    def state(self, job_id: int) -> JobState:
        return self.jobs[job_id]["state"]

    # ------------------------------------------------------------------ reads
    def job(self, job_id: int) -> OnchainJob:
        self._node()
        if job_id in self.unreadable:
            raise TxError("panic 0x32", what="get_job", context={"job": job_id})
        if job_id not in self.jobs:
            return OnchainJob.model_validate(_blank(job_id))
        return OnchainJob.model_validate(self.jobs[job_id])

    def param(self, name: str) -> int:
        return {"max_audit_samples": 32, "open_window": OPEN_WINDOW,
                "vote_commit_window": VOTE_WINDOWS // 2, "vote_reveal_window": VOTE_WINDOWS // 2}[name]

    def audit_indices(self, job_id: int) -> list[int]:
        self._node()
        return list(self.indices.get(job_id, []))

    def is_opened(self, job_id: int, index: int) -> bool:
        self._node()
        return index in self.opened.get(job_id, set())

    def voting_ends(self, job: OnchainJob) -> int:
        return job.voting_start + VOTE_WINDOWS

    def claimable(self, who: str | None = None) -> int:
        self._node()
        return self.owed

    def green_bps(self, who: str | None = None) -> int:
        return 10_000

    def free_stake(self, who: str | None = None) -> int:
        return 10**24

    def events(self, event: type[JobPosted], from_block: int, to_block: int | None = None) -> list[JobPosted]:
        self._node()
        assert event is JobPosted
        hi = self.head if to_block is None else to_block
        return [e for e in self.posted if from_block <= e.block_number <= hi]

    # ------------------------------------------------------------------ transactions
    def accept_job(self, job_id: int, determinism_class: bytes) -> None:
        j = self._tx("accept_job", job_id)
        self._require(j["state"] is JobState.OPEN, "market: job not open", "accept_job", job_id)
        j.update(provider=self.address, state=JobState.ACCEPTED)

    def commit_result(self, job_id: int, root: bytes, final_state_hash: bytes, energy_mj: int,
                      result_uri: str) -> None:
        j = self._tx("commit_result", job_id)
        self._require(j["state"] is JobState.ACCEPTED, "market: job not accepted", "commit_result", job_id)
        self._require(j["provider"] == self.address, "market: not the provider", "commit_result", job_id)
        j.update(state=JobState.COMMITTED, root=root, final_state_hash=final_state_hash,
                 energy_mj=energy_mj, seed_block=self.head)  # seed_lookahead 0: drawable next block

    def draw_audit(self, job_id: int) -> None:
        j = self._tx("draw_audit", job_id)
        self._require(j["state"] is JobState.COMMITTED, "market: job not committed", "draw_audit", job_id)
        self._require(self.head > j["seed_block"], "market: seed block not reached", "draw_audit", job_id)
        self.indices[job_id] = list(self.draws[job_id])
        j.update(state=JobState.AUDITING, open_deadline=self.clock.now() + OPEN_WINDOW)

    def open_segments(self, job_id: int, openings: Sequence[Opening]) -> None:
        j = self._tx("open_segments", job_id)
        self.open_calls.append((job_id, list(openings)))
        self._require(j["state"] is JobState.AUDITING, "market: job not auditing", "open_segments", job_id)
        opened = self.opened.setdefault(job_id, set())
        leaves = j["num_segments"] + 1
        for o in openings:
            ascending = all(o.index > i for i in opened)
            self._require(ascending, "market: openings not ascending", "open_segments", job_id)
            self._require(o.index in self.indices[job_id], "market: index not audited", "open_segments", job_id)
            first_ok = o.index != 0 or o.start_seal == boundary0_seal(job_id)
            self._require(first_ok, "market: bad seal at boundary 0", "open_segments", job_id)
            start = leaf(job_id, o.index, o.start_hash, o.start_energy_mj, o.start_seal)
            end = leaf(job_id, o.index + 1, o.end_hash, o.end_energy_mj, o.end_seal)
            end_proof = complete_end_proof(o.start_proof, o.end_proof, o.index, leaves)
            proven = verify(o.start_proof, j["root"], start) and verify(end_proof, j["root"], end)
            self._require(proven, "market: bad proof", "open_segments", job_id)
            opened.add(o.index)
            self.seal_acc[job_id] = keccak(self.seal_acc.get(job_id, ZERO32) + o.end_seal)
        if opened >= set(self.indices[job_id]):
            j.update(state=JobState.VOTING, voting_start=self.clock.now())

    def finalize(self, job_id: int) -> None:
        j = self._tx("finalize", job_id)
        self._require(j["state"] is JobState.VOTING, "market: job not voting", "finalize", job_id)
        ends = j["voting_start"] + VOTE_WINDOWS
        self._require(self.clock.now() >= ends, "market: voting not over", "finalize", job_id)
        j.update(state=JobState.PAID)
        self.owed += j["payment"]

    def withdraw(self) -> None:
        self._tx("withdraw", 0)
        self._require(self.owed > 0, "market: nothing to withdraw", "withdraw", 0)
        self.owed = 0

    # ------------------------------------------------------------------ plumbing
    def tries(self, method: str, job_id: int) -> int:
        """How often ``method`` was sent for ``job_id``."""
        return self.sent.count((method, job_id))

    def _tx(self, method: str, job_id: int) -> dict[str, Any]:
        self._node()
        self.sent.append((method, job_id))
        if (reason := self.reverts.get((job_id, method))) is not None:
            raise TxError(reason, what=_WHAT[method], context={"job": job_id})
        return self.jobs.get(job_id, {})

    def _node(self) -> None:
        if self.node_down:
            raise ChainError("chain: read block number failed after 9 attempts, node unreachable")

    @staticmethod
    def _require(ok: bool, reason: str, method: str, job_id: int) -> None:
        if not ok:
            raise TxError(reason, what=_WHAT[method], context={"job": job_id})


def _blank(job_id: int) -> dict[str, Any]:
    """``get_job`` of a job that does not exist: every field zero."""
    return {
        "job_id": job_id, "requester": ZERO, "provider": ZERO, "state": JobState.NONE,
        "spec_hash": b"\0" * 32, "num_segments": 0, "audit_samples": 0, "payment": 0,
        "verifier_fee": 0, "collateral": 0, "deadline": 0, "min_green_bps": 0, "root": b"\0" * 32,
        "final_state_hash": b"\0" * 32, "energy_mj": 0, "seed_block": 0, "seed": b"\0" * 32,
        "open_deadline": 0, "voting_start": 0, "opened_mask": 0, "n_votes": 0, "ok_weight": 0,
        "fraud_weight": 0,
    }


class FakeMarket(FakeGateway):
    """JobMarket as the verifier uses it, acting as ``VERIFIER``."""

    def __init__(self, clock: FixedClock, *, commit_window: int = 60, reveal_window: int = 60) -> None:
        super().__init__(clock)
        self.address = VERIFIER
        self.market_address = MARKET
        self.chain = SimpleNamespace(chain_id=31337, account=None, timestamp=clock.now,
                                     block_number=lambda: self.head)
        self.deployment = SimpleNamespace(deployment_block=1)
        self.commit_window = commit_window
        self.reveal_window = reveal_window
        self.log: list[JobEvent] = []
        self.votes: dict[tuple[int, str], dict[str, Any]] = {}
        #: chain time of each vote's commit
        self.committed_at: dict[int, int] = {}

    # ------------------------------------------------------------------ setting the scene
    def voting_job(self, job_id: int, *, spec_uri: str, spec_hash: bytes, num_segments: int,
                   result_uri: str, provider_class: bytes, segments: Sequence[OpenedSegment],
                   indices: Sequence[int], final_state_hash: bytes, events: Sequence[type] | None = None) -> None:
        """A job that reaches VOTING now, with its events (all, or those in ``events``)."""
        now = self.clock.now()
        self.add_job(job_id, provider=PROVIDER, state=JobState.VOTING, spec_hash=spec_hash,
                     num_segments=num_segments, audit_samples=len(indices), voting_start=now,
                     final_state_hash=final_state_hash)
        self.indices[job_id] = list(indices)
        self.head += 1
        base = {"block_number": self.head, "log_index": 0, "tx_hash": "0x" + "cd" * 32, "job_id": job_id}
        j = self.jobs[job_id]
        emitted: list[JobEvent] = [
            JobPosted(**base, requester=REQUESTER, spec_hash=spec_hash, spec_uri=spec_uri,
                      num_segments=num_segments, audit_samples=len(indices), payment=j["payment"],
                      verifier_fee=j["verifier_fee"], collateral=j["collateral"], deadline=j["deadline"],
                      min_green_bps=0),
            JobAccepted(**base, provider=PROVIDER, determinism_class=provider_class, collateral=j["collateral"]),
            ResultCommitted(**base, provider=PROVIDER, root=b"\1" * 32, final_state_hash=final_state_hash,
                            energy_mj=segments[-1].end_energy_mj if segments else 0, result_uri=result_uri,
                            seed_block=self.head),
            *[SegmentOpened(**base, **seg.model_dump(include=set(SegmentOpened.model_fields))) for seg in segments],
            VotingStarted(**base, commit_end=now + self.commit_window,
                          reveal_end=now + self.commit_window + self.reveal_window),
        ]
        self.log += [e for e in emitted if events is None or type(e) in events or type(e) is VotingStarted]

    # ------------------------------------------------------------------ reads
    def param(self, name: str) -> int:
        return {"min_verifier_stake": 1, "vote_commit_window": self.commit_window,
                "vote_reveal_window": self.reveal_window}[name]

    def events(self, event: type, from_block: int, to_block: int | None = None, *,  # type: ignore[override]
               job_id: int | None = None) -> list[Any]:
        self._node()
        hi = self.head if to_block is None else to_block
        return [e for e in self.log if type(e) is event and from_block <= e.block_number <= hi
                and (job_id is None or e.job_id == job_id)]

    def vote_windows(self, job: OnchainJob) -> tuple[int, int]:
        commit_end = job.voting_start + self.commit_window
        return commit_end, commit_end + self.reveal_window

    def vote_of(self, job_id: int, voter: str) -> VoteView:
        self._node()
        v = self.votes.get((job_id, voter.lower()))
        if v is None:
            return VoteView(commitment=b"\0" * 32, weight=0, status=VoteStatus.NONE, settled=False)
        return VoteView(commitment=v["commitment"], weight=v["weight"], status=v["status"], settled=v["settled"])

    def next_job_id(self) -> int:
        return max(self.jobs, default=0) + 1

    # ------------------------------------------------------------------ transactions
    def commit_vote(self, job_id: int, commitment: bytes) -> dict[str, Any]:
        j = self._tx("commit_vote", job_id)
        self._require(j.get("state") is JobState.VOTING, "market: job not voting", "commit_vote", job_id)
        commit_end = j["voting_start"] + self.commit_window
        self._require(self.clock.now() < commit_end, "market: commit window closed", "commit_vote", job_id)
        self._require((job_id, self.address) not in self.votes, "market: already voted", "commit_vote", job_id)
        self.votes[(job_id, self.address)] = {"commitment": commitment, "weight": 10, "settled": False,
                                              "status": VoteStatus.COMMITTED}
        self.committed_at[job_id] = self.clock.now()
        self.log.append(VoteCommitted(block_number=self.head, log_index=0, tx_hash="0x" + "ef" * 32,
                                      job_id=job_id, voter=self.address, weight=10))
        return self._receipt("commit_vote", job_id)

    def reveal_vote(self, job_id: int, fraud: bool, salt: bytes) -> dict[str, Any]:
        j = self._tx("reveal_vote", job_id)
        commit_end = j["voting_start"] + self.commit_window
        now = self.clock.now()
        self._require(commit_end <= now < commit_end + self.reveal_window, "market: not in reveal window",
                      "reveal_vote", job_id)
        v = self.votes.get((job_id, self.address))
        opens = v is not None and v["commitment"] == vote_commitment(job_id, self.address, fraud, salt)
        self._require(opens, "market: commitment mismatch", "reveal_vote", job_id)
        v["status"] = VoteStatus.REVEALED_FRAUD if fraud else VoteStatus.REVEALED_OK
        return self._receipt("reveal_vote", job_id)

    def finalize(self, job_id: int) -> dict[str, Any]:  # type: ignore[override]
        j = self._tx("finalize", job_id)
        self._require(j.get("state") is JobState.VOTING, "market: job not voting", "finalize", job_id)
        ends = j["voting_start"] + self.commit_window + self.reveal_window
        self._require(self.clock.now() >= ends, "market: voting not over", "finalize", job_id)
        votes = [v for (jid, _), v in self.votes.items() if jid == job_id]
        fraud = sum(v["weight"] for v in votes if v["status"] is VoteStatus.REVEALED_FRAUD)
        ok = sum(v["weight"] for v in votes if v["status"] is VoteStatus.REVEALED_OK)
        j.update(state=JobState.SLASHED if fraud > ok else JobState.PAID)
        return self._receipt("finalize", job_id)

    def settle_vote(self, job_id: int, voter: str) -> dict[str, Any]:
        self._tx("settle_vote", job_id)
        self.votes[(job_id, voter.lower())]["settled"] = True
        return self._receipt("settle_vote", job_id)

    def withdraw(self) -> dict[str, Any]:  # type: ignore[override]
        super().withdraw()
        return self._receipt("withdraw", 0)

    def _receipt(self, method: str, job_id: int) -> dict[str, Any]:
        self.head += 1
        return {"transactionHash": HexBytes(keccak(f"{method}:{job_id}:{self.head}".encode())),
                "blockNumber": self.head}
