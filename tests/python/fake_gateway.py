"""In-memory stand-ins for :class:`greenproof.chain.gateway.Gateway`: the worker's
(:class:`FakeGateway`) and the verifier's (:class:`FakeMarket`).

It keeps jobs the way JobMarket does and enforces the rules the worker relies
on (``AuditRules.check_openings``): only the provider commits (with the total
movement), the audit is drawn once the seed block is past (the test sets the
uniform indices in ``draws`` and the movement targets in ``targets``), an
opening must satisfy a sample (its index was drawn, or its movement bracket
``start_move <= u < end_move`` holds a target), openings go in strictly
ascending index across all calls with ``end_move >= start_move >=`` the previous
opening's ``end_move``, boundary 0 carries energy 0, movement 0 and
``boundary0_seal``, both leaves (movements and seals included) prove against the
committed root, the last segment ends at the committed final state, energy and
movement, the end seals chain into the job's ``seal_acc``, the job moves to
VOTING when every sample is satisfied,
finalize waits for the vote windows, accept needs the class's court pool to hold
``min_class_stake``. Every transaction tried is recorded in ``sent``;
``reverts[(job_id, "commit_result")] = "reason"`` makes that job's transaction
revert with that reason on every try, as a real node reports it (``TxError``),
and a job in ``unreadable`` makes its ``get_job`` view revert.

Time is the fake's: ``now`` (chain time) and the head block the test hands the
worker; nothing here sleeps. :class:`LiveClock` is chain time that also runs with
the wall clock, for tests whose budgets are wall time (a verifier's fetch deadlines).

:class:`FakeMarket` is JobMarket and VerifierCourt as the verifier sees them: jobs
that reach VOTING with every event a verifier reads (``JobPosted``,
``JobAccepted``, ``ResultCommitted``, ``SegmentOpened`` with the seals, the
court's ``SeatsDrawn`` and ``VotingStarted``), and the court's rules: only seated
voters commit, inside the round's commit window; a reveal must open its
commitment, and an ok vote counts only with the digests that rebuild the job's
``seal_acc`` (else it is a no-show); ``finalize`` decides by a strict majority of
the drawn seats, else draws the next round (``next_rounds``) while rounds remain;
``settle_seat`` once per seat after the decision.
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
    CaseDecided,
    CaseOutcome,
    CaseView,
    CourtVotingStarted,
    Event,
    JobAccepted,
    JobPosted,
    JobState,
    OnchainJob,
    Opening,
    ResultCommitted,
    SeatsDrawn,
    SeatSettled,
    SeatStatus,
    SeatView,
    SegmentOpened,
    VoteCommitted,
    VoteRevealed,
)
from greenproof.merkle import (
    ZERO32,
    boundary0_seal,
    complete_end_proof,
    leaf,
    replay_accumulator,
    seal_accumulator,
    verify,
    vote_commitment,
)

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
    "commit_vote": "commit vote", "reveal_vote": "reveal vote", "settle_seat": "settle seat",
    "slash_unopened": "slash unopened",
}
#: the court's ``min_class_stake`` in the fakes; every class's pool holds ``POOL_STAKE`` unless set
MIN_CLASS_STAKE = 3
POOL_STAKE = 3


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
        self.draws: dict[int, list[int]] = {}  # the uniform indices draw_audit will draw, per job
        #: the movement targets draw_audit will draw, per job (none: every sample uniform)
        self.targets: dict[int, list[int]] = {}
        self.indices: dict[int, list[int]] = {}
        self.drawn_targets: dict[int, list[int]] = {}
        self.opened: dict[int, set[int]] = {}
        #: per job: samples satisfied (bit j), least next index, least start movement
        self.progress: dict[int, dict[str, int]] = {}
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
        #: the court's pool stake per determinism class (``POOL_STAKE`` when not set)
        self.pool_stakes: dict[bytes, int] = {}

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
            min_green_bps=j["min_green_bps"], green_premium=j["green_premium"],
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
        p = self.progress.get(job_id, {})
        return OnchainJob.model_validate({**self.jobs[job_id], "opened_mask": p.get("mask", 0),
                                          "next_open_index": p.get("next_index", 0)})

    def param(self, name: str) -> int:
        return {"max_audit_samples": 48, "open_window": OPEN_WINDOW}[name]

    def audit_indices(self, job_id: int) -> list[int]:
        self._node()
        return list(self.indices.get(job_id, []))

    def movement_draws(self, job_id: int) -> list[int]:
        self._node()
        return list(self.drawn_targets.get(job_id, []))

    def next_open_index(self, job_id: int) -> int:
        self._node()
        return self.progress.get(job_id, {}).get("next_index", 0)

    def voting_ends(self, job_id: int) -> int:
        return self.jobs[job_id]["voting_start"] + VOTE_WINDOWS

    def pool_stake(self, dclass: bytes) -> int:
        self._node()
        return self.pool_stakes.get(dclass, POOL_STAKE)

    def court_param(self, name: str) -> int:
        return {"min_class_stake": MIN_CLASS_STAKE}[name]

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
        self._require(self.pool_stake(determinism_class) >= MIN_CLASS_STAKE, "market: class pool too small",
                      "accept_job", job_id)
        j.update(provider=self.address, state=JobState.ACCEPTED, determinism_class=determinism_class)

    def commit_result(self, job_id: int, root: bytes, final_state_hash: bytes, energy_mj: int,
                      move_total: int, result_uri: str) -> None:
        j = self._tx("commit_result", job_id)
        self._require(j["state"] is JobState.ACCEPTED, "market: job not accepted", "commit_result", job_id)
        self._require(j["provider"] == self.address, "market: not the provider", "commit_result", job_id)
        j.update(state=JobState.COMMITTED, root=root, final_state_hash=final_state_hash,
                 energy_mj=energy_mj, move_total=move_total,
                 seed_block=self.head)  # seed_lookahead 0: drawable next block

    def draw_audit(self, job_id: int) -> None:
        j = self._tx("draw_audit", job_id)
        self._require(j["state"] is JobState.COMMITTED, "market: job not committed", "draw_audit", job_id)
        self._require(self.head > j["seed_block"], "market: seed block not reached", "draw_audit", job_id)
        targets = list(self.targets.get(job_id, []))
        self._require(all(0 <= u < j["move_total"] for u in targets), "market: target outside the movement",
                      "draw_audit", job_id)
        self.indices[job_id] = list(self.draws[job_id])
        self.drawn_targets[job_id] = targets
        j.update(state=JobState.AUDITING, open_deadline=self.clock.now() + OPEN_WINDOW,
                 seed=keccak(f"seed {job_id}".encode()))

    def open_segments(self, job_id: int, openings: Sequence[Opening]) -> None:
        j = self._tx("open_segments", job_id)
        self.open_calls.append((job_id, list(openings)))
        self._require(j["state"] is JobState.AUDITING, "market: job not auditing", "open_segments", job_id)
        opened = self.opened.setdefault(job_id, set())
        p = self.progress.setdefault(job_id, {"mask": 0, "next_index": 0, "move_floor": 0})
        samples = [("index", i) for i in self.indices[job_id]] + [("move", u) for u in self.drawn_targets[job_id]]
        for o in openings:
            self._check_opening(j, job_id, o, p)
            bits = sum(1 << n for n, (kind, d) in enumerate(samples)
                       if (kind == "index" and d == o.index) or (kind == "move" and o.start_move <= d < o.end_move))
            self._require(bits != 0, "market: segment not audited", "open_segments", job_id)
            p.update(mask=p["mask"] | bits, next_index=o.index + 1, move_floor=o.end_move)
            opened.add(o.index)
            self.seal_acc[job_id] = keccak(self.seal_acc.get(job_id, ZERO32) + o.end_seal)
        if p["mask"] == (1 << len(samples)) - 1:
            j.update(state=JobState.VOTING, voting_start=self.clock.now())

    def _check_opening(self, j: dict[str, Any], job_id: int, o: Opening, p: dict[str, int]) -> None:
        """``AuditRules.check_openings`` for one opening (all but the sample it satisfies)."""
        req = self._require
        req(o.index >= p["next_index"], "market: openings not ascending", "open_segments", job_id)
        req(o.end_move >= o.start_move >= p["move_floor"], "market: movement not monotone", "open_segments", job_id)
        req(o.end_energy_mj >= o.start_energy_mj, "market: energy not monotone", "open_segments", job_id)
        if o.index == 0:
            req(o.start_energy_mj == 0 and o.start_move == 0, "market: boundary 0 not zero", "open_segments", job_id)
            req(o.start_seal == boundary0_seal(job_id), "market: bad seal at boundary 0", "open_segments", job_id)
        start = leaf(job_id, o.index, o.start_hash, o.start_energy_mj, o.start_move, o.start_seal)
        end = leaf(job_id, o.index + 1, o.end_hash, o.end_energy_mj, o.end_move, o.end_seal)
        end_proof = complete_end_proof(o.start_proof, o.end_proof, o.index, j["num_segments"] + 1)
        proven = verify(o.start_proof, j["root"], start) and verify(end_proof, j["root"], end)
        req(proven, "market: bad proof", "open_segments", job_id)
        if o.index + 1 == j["num_segments"]:
            final = (o.end_hash, o.end_energy_mj, o.end_move) == (j["final_state_hash"], j["energy_mj"], j["move_total"])
            req(final, "market: final state mismatch", "open_segments", job_id)

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
        "verifier_fee": 0, "collateral": 0, "deadline": 0, "min_green_bps": 0, "green_premium": 0,
        "determinism_class": b"\0" * 32, "root": b"\0" * 32, "final_state_hash": b"\0" * 32,
        "energy_mj": 0, "move_total": 0, "green_bps": 0, "seed_block": 0, "draw_deadline": 0,
        "seed": b"\0" * 32, "open_deadline": 0, "voting_start": 0, "opened_mask": 0, "next_open_index": 0,
        "seal_acc": b"\0" * 32, "pot": 0, "open_window": OPEN_WINDOW, "draw_window": 0,
        "requester_share_bps": 5000, "seed_lookahead": 0, "court_terms": 0,
    }




class FakeMarket(FakeGateway):
    """JobMarket and VerifierCourt as the verifier uses them, acting as ``VERIFIER``.

    ``voters`` of :meth:`voting_job` are round 0's seats (one entry per seat);
    ``next_rounds[job_id]`` lists the seats of the rounds ``finalize`` draws after it
    (default: round 0's again). Other seated voters vote through :meth:`cast`."""

    def __init__(self, clock: FixedClock, *, commit_window: int = 60, reveal_window: int = 60,
                 max_rounds: int = 3) -> None:
        super().__init__(clock)
        self.address = VERIFIER.lower()
        self.market_address = MARKET
        self.genesis = "genesis-1"  # a test "resets the chain" by changing it
        self.chain = SimpleNamespace(chain_id=31337, account=None, timestamp=clock.now,
                                     block_number=lambda: self.head,
                                     identity=lambda block: f"31337:{self.genesis}:{block}")
        self.deployment = SimpleNamespace(deployment_block=1)
        self.commit_window = commit_window
        self.reveal_window = reveal_window
        self.max_rounds = max_rounds
        self.log: list[Event] = []
        #: per job: round, its start, drawn / ok / fraud seats, outcome, seal_acc, round 0's voters
        self.cases: dict[int, dict[str, Any]] = {}
        #: per (job, round, voter): seats, status, commitment, settled
        self.seats: dict[tuple[int, int, str], dict[str, Any]] = {}
        self.next_rounds: dict[int, list[list[str]]] = {}
        #: chain time of each of our commits, per job
        self.committed_at: dict[int, int] = {}

    # ------------------------------------------------------------------ setting the scene
    def voting_job(self, job_id: int, *, spec_uri: str, spec_hash: bytes, num_segments: int,
                   result_uri: str, provider_class: bytes, segments: Sequence[OpenedSegment],
                   indices: Sequence[int], final_state_hash: bytes, voters: Sequence[str] = (VERIFIER,),
                   events: Sequence[type] | None = None, move_total: int = 0,
                   targets: Sequence[int] = ()) -> None:
        """A job that reaches VOTING now with round 0 drawn (``voters``), with its events (the
        market's all, or those in ``events``; the court's always); ``indices`` are the uniform
        samples, ``targets`` the movement samples (bracketed by ``segments``)."""
        now = self.clock.now()
        self.add_job(job_id, provider=PROVIDER, state=JobState.VOTING, spec_hash=spec_hash,
                     num_segments=num_segments, audit_samples=len(indices) + len(targets), voting_start=now,
                     final_state_hash=final_state_hash, determinism_class=provider_class, move_total=move_total)
        self.indices[job_id] = list(indices)
        self.drawn_targets[job_id] = list(targets)
        ends = [s.end_seal for s in sorted(segments, key=lambda s: s.index)]
        self.cases[job_id] = {"round": 0, "start": now, "outcome": CaseOutcome.NONE,
                              "seal_acc": seal_accumulator([e for e in ends if e is not None]),
                              "voters": list(voters), "ok": 0, "fraud": 0, "drawn": 0}
        self.head += 1
        base = {"block_number": self.head, "log_index": 0, "tx_hash": "0x" + "cd" * 32, "job_id": job_id}
        j = self.jobs[job_id]
        market: list[Event] = [
            JobPosted(**base, requester=REQUESTER, spec_hash=spec_hash, spec_uri=spec_uri,
                      num_segments=num_segments, audit_samples=len(indices), payment=j["payment"],
                      verifier_fee=j["verifier_fee"], collateral=j["collateral"], deadline=j["deadline"],
                      min_green_bps=0, green_premium=0),
            JobAccepted(**base, provider=PROVIDER, determinism_class=provider_class, collateral=j["collateral"]),
            ResultCommitted(**base, provider=PROVIDER, root=b"\1" * 32, final_state_hash=final_state_hash,
                            energy_mj=segments[-1].end_energy_mj if segments else 0, move_total=move_total,
                            green_bps=0, result_uri=result_uri, seed_block=self.head, draw_deadline=0),
            *[SegmentOpened(**base, **seg.model_dump(include=set(SegmentOpened.model_fields))) for seg in segments],
        ]
        self.log += [e for e in market if events is None or type(e) in events]
        self._draw(job_id, 0, list(voters))

    def auditing_job(self, job_id: int, *, voters: Sequence[str] = (VERIFIER,)) -> None:
        """A job whose audit was just drawn (round 0 seated) and whose provider has not opened yet."""
        self.add_job(job_id, provider=PROVIDER, state=JobState.AUDITING, determinism_class=b"\7" * 32,
                     open_deadline=self.clock.now() + OPEN_WINDOW)
        self.indices[job_id] = [0]
        self.cases[job_id] = {"round": 0, "start": 0, "outcome": CaseOutcome.NONE, "seal_acc": ZERO32,
                              "voters": list(voters), "ok": 0, "fraud": 0, "drawn": 0}
        self._draw(job_id, 0, list(voters), voting=False)

    def cast(self, job_id: int, voter: str, status: SeatStatus) -> None:
        """Another seated voter's revealed vote in the current round (no windows checked)."""
        case = self.cases[job_id]
        seat = self.seats[(job_id, case["round"], voter.lower())]
        seat["status"] = status
        if status is SeatStatus.REVEALED_FRAUD:
            case["fraud"] += seat["seats"]
        elif status is SeatStatus.REVEALED_OK:
            case["ok"] += seat["seats"]

    def _draw(self, job_id: int, rnd: int, voters: list[str], voting: bool = True) -> None:
        case = self.cases[job_id]
        case.update(round=rnd, start=self.clock.now() if voting else 0, ok=0, fraud=0, drawn=len(voters))
        for v in voters:
            seat = self.seats.setdefault((job_id, rnd, v.lower()), {
                "seats": 0, "status": SeatStatus.SEATED, "commitment": ZERO32, "settled": False})
            seat["seats"] += 1
        self.head += 1
        base = {"block_number": self.head, "log_index": 0, "tx_hash": "0x" + "ce" * 32, "job_id": job_id}
        commit_end = case["start"] + self.commit_window
        self.log.append(SeatsDrawn(**base, round=rnd, voters=voters))
        if voting:
            self.log.append(CourtVotingStarted(**base, round=rnd, commit_end=commit_end,
                                               reveal_end=commit_end + self.reveal_window))

    # ------------------------------------------------------------------ reads
    def events(self, event: type, from_block: int, to_block: int | None = None, *,  # type: ignore[override]
               job_id: int | None = None) -> list[Any]:
        self._node()
        hi = self.head if to_block is None else to_block
        return [e for e in self.log if type(e) is event and from_block <= e.block_number <= hi
                and (job_id is None or e.job_id == job_id)]

    def case_of(self, job_id: int) -> CaseView:
        self._node()
        c = self.cases[job_id]
        commit_end = c["start"] + self.commit_window if c["start"] else 0
        return CaseView(
            dclass=self.jobs[job_id]["determinism_class"], seed=b"\5" * 32, seal_acc=c["seal_acc"],
            committee_size=len(c["voters"]), max_rounds=self.max_rounds, commit_window=self.commit_window,
            reveal_window=self.reveal_window, voter_slash_bps=1000, noshow_slash_bps=2000, round=c["round"],
            voting_start=c["start"], commit_end=commit_end,
            reveal_end=commit_end + self.reveal_window if c["start"] else 0,
            drawn_seats=c["drawn"], ok_seats=c["ok"], fraud_seats=c["fraud"], outcome=c["outcome"],
            reward_per_seat=0,
        )

    def seat_of(self, job_id: int, round: int, voter: str) -> SeatView:
        self._node()
        s = self.seats.get((job_id, round, voter.lower()))
        if s is None:
            return SeatView(commitment=ZERO32, seats=0, status=SeatStatus.SEATED, settled=False)
        return SeatView(commitment=s["commitment"], seats=s["seats"], status=s["status"], settled=s["settled"])

    def voting_ends(self, job_id: int) -> int:
        return self.case_of(job_id).reveal_end

    def next_job_id(self) -> int:
        return max(self.jobs, default=0) + 1

    # ------------------------------------------------------------------ transactions
    def commit_vote(self, job_id: int, commitment: bytes) -> dict[str, Any]:
        self._tx("commit_vote", job_id)
        case = self._voting_case(job_id, "commit_vote")
        self._require(self.clock.now() < case.commit_end, "court: commit window closed", "commit_vote", job_id)
        self._require(commitment != ZERO32, "court: empty commitment", "commit_vote", job_id)
        seat = self.seats.get((job_id, case.round, self.address))
        self._require(seat is not None, "court: not seated", "commit_vote", job_id)
        self._require(seat["status"] is SeatStatus.SEATED, "court: already committed", "commit_vote", job_id)
        seat.update(commitment=commitment, status=SeatStatus.COMMITTED)
        self.committed_at[job_id] = self.clock.now()
        self.log.append(VoteCommitted(block_number=self.head, log_index=0, tx_hash="0x" + "ef" * 32,
                                      job_id=job_id, voter=self.address, round=case.round, seats=seat["seats"]))
        return self._receipt("commit_vote", job_id)

    def reveal_vote(self, job_id: int, fraud: bool, salt: bytes, digests: Sequence[bytes],
                    segments: Sequence[int]) -> dict[str, Any]:
        self._tx("reveal_vote", job_id)
        case = self._voting_case(job_id, "reveal_vote")
        now = self.clock.now()
        self._require(now >= case.commit_end, "court: reveal window not open", "reveal_vote", job_id)
        self._require(now < case.reveal_end, "court: reveal window closed", "reveal_vote", job_id)
        seat = self.seats.get((job_id, case.round, self.address))
        self._require(seat is not None and seat["status"] is SeatStatus.COMMITTED, "court: no vote committed",
                      "reveal_vote", job_id)
        opens = seat["commitment"] == vote_commitment(job_id, self.address, fraud, salt, digests)
        self._require(opens, "court: commitment mismatch", "reveal_vote", job_id)
        proven = not fraud and self._proves_replay(job_id, digests, segments, case.seal_acc)
        status = SeatStatus.REVEALED_FRAUD if fraud else SeatStatus.REVEALED_OK if proven else SeatStatus.NO_PROOF
        self.cast(job_id, self.address, status)
        self.log.append(VoteRevealed(block_number=self.head, log_index=0, tx_hash="0x" + "ef" * 32,
                                     job_id=job_id, voter=self.address, round=case.round, fraud=fraud,
                                     counted=status is not SeatStatus.NO_PROOF, seats=seat["seats"]))
        return self._receipt("reveal_vote", job_id)

    def _proves_replay(self, job_id: int, digests: Sequence[bytes], segments: Sequence[int],
                       seal_acc: bytes) -> bool:
        """The court's proof of replay: the digests of ``segments`` (ascending, as opened) chain
        into the job's ``seal_acc``."""
        if list(segments) != sorted(set(segments)):
            return False
        try:
            return replay_accumulator(job_id, segments, digests) == seal_acc
        except ValueError:  # not one digest per segment
            return False

    def finalize(self, job_id: int) -> dict[str, Any]:  # type: ignore[override]
        j = self._tx("finalize", job_id)
        self._require(j.get("state") is JobState.VOTING, "market: job not voting", "finalize", job_id)
        case = self.case_of(job_id)
        self._require(self.clock.now() >= case.reveal_end, "court: round not over", "finalize", job_id)
        c = self.cases[job_id]
        if 2 * c["fraud"] > c["drawn"]:
            self._decide(job_id, CaseOutcome.FRAUD, JobState.SLASHED)
        elif 2 * c["ok"] > c["drawn"]:
            self._decide(job_id, CaseOutcome.OK, JobState.PAID)
        elif case.round + 1 < self.max_rounds:
            later = self.next_rounds.get(job_id) or []
            voters = later[case.round] if case.round < len(later) else c["voters"]
            self._draw(job_id, case.round + 1, list(voters))
        else:
            self._decide(job_id, CaseOutcome.NO_DECISION, JobState.PAID)
        return self._receipt("finalize", job_id)

    def _decide(self, job_id: int, outcome: CaseOutcome, state: JobState) -> None:
        c = self.cases[job_id]
        c["outcome"] = outcome
        self.jobs[job_id].update(state=state)
        self.log.append(CaseDecided(block_number=self.head, log_index=0, tx_hash="0x" + "ef" * 32,
                                    job_id=job_id, round=c["round"], outcome=outcome, drawn_seats=c["drawn"],
                                    ok_seats=c["ok"], fraud_seats=c["fraud"]))

    def slash_unopened(self, job_id: int) -> dict[str, Any]:
        j = self._tx("slash_unopened", job_id)
        self._require(j.get("state") is JobState.AUDITING, "market: job not auditing", "slash_unopened", job_id)
        self._require(self.clock.now() >= j["open_deadline"], "market: open window not passed", "slash_unopened",
                      job_id)
        self._decide(job_id, CaseOutcome.DROPPED, JobState.SLASHED)
        return self._receipt("slash_unopened", job_id)

    def settle_seat(self, job_id: int, round: int, voter: str) -> dict[str, Any]:
        self._tx("settle_seat", job_id)
        case = self.case_of(job_id)
        self._require(case.decided, "court: case not decided", "settle_seat", job_id)
        self._require(round <= case.round, "court: no such round", "settle_seat", job_id)
        seat = self.seats.get((job_id, round, voter.lower()))
        self._require(seat is not None, "court: no seat", "settle_seat", job_id)
        self._require(not seat["settled"], "court: seat already settled", "settle_seat", job_id)
        seat["settled"] = True
        won = round == case.round and (
            (case.outcome is CaseOutcome.OK and seat["status"] is SeatStatus.REVEALED_OK)
            or (case.outcome is CaseOutcome.FRAUD and seat["status"] is SeatStatus.REVEALED_FRAUD))
        reward = 10 * seat["seats"] if won else 0
        if won and voter.lower() == self.address:
            self.owed += reward
        self.log.append(SeatSettled(block_number=self.head, log_index=0, tx_hash="0x" + "ef" * 32,
                                    job_id=job_id, voter=voter, round=round, seats=seat["seats"],
                                    reward=reward, penalty=0))
        return self._receipt("settle_seat", job_id)

    def withdraw(self) -> dict[str, Any]:  # type: ignore[override]
        super().withdraw()
        return self._receipt("withdraw", 0)

    def _voting_case(self, job_id: int, method: str) -> CaseView:
        case = self.case_of(job_id)
        self._require(case.voting, "court: case not voting", method, job_id)
        return case

    def _receipt(self, method: str, job_id: int) -> dict[str, Any]:
        self.head += 1
        return {"transactionHash": HexBytes(keccak(f"{method}:{job_id}:{self.head}".encode())),
                "blockNumber": self.head}
