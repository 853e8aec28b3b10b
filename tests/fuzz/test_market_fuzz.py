"""Stateful fuzz of the whole protocol on titanoboa (hypothesis ``RuleBasedStateMachine``).

Random sequences of every user action (stake, unstake, withdraw, join and leave
the court's class pool, post with or without a green premium (now and then due
too soon), cancel, accept, commit with honest or garbage roots and the run's
committed movement, expire OPEN and ACCEPTED jobs, draw with the committee (on
time, or late in blocks or in seconds), slash undrawn jobs, open with real
Merkle proofs and seals from ``greenproof.merkle`` the segments
``greenproof.sampling`` says the draw audits (by index and by movement),
slash_unopened, commit/reveal votes that are honest (ok with the replayed
digests), lazy (ok without them), fraud or silent, finalize through every
round, settle seats in random order, withdraw claimables, fund the pool,
attest, grant and revoke allowances, change the market's and the court's
parameters under running jobs) with time travel in between. After every step:

- conservation of tokens: the market holds escrow (payment + fee + premium) +
  pots + claimables, the StakeManager stake + unbonding, the registry its
  pool, the court nothing;
- conservation with seats: every staker's ``locked`` is the collateral of its
  live jobs plus ``SEAT_STAKE`` per seat it holds in the pool (free or busy),
  and its busy seats are exactly its unsettled seats in the model;
- no seat paid twice: a finalized job's pot is ``reward_per_seat`` times its
  unsettled winning seats, and settling a seat again reverts;
- penalties independent of settlement order: every seat's reward and penalty
  equals what the decision's counts fix, whatever order seats are settled in;
- a job's final state never changes again, a payout credits the provider
  exactly once, a slash never takes more than the account had and a
  provider's slash always takes its full collateral ("unstaking never dodges a
  slash");
- terms fixed at acceptance: every expectation about a job (its windows,
  requester share, seed lookahead, committee, rounds and penalties) comes from
  the terms the model read when it was accepted, whatever the owner changed
  since;
- green money: on PAID the provider gets ``premium * green_bps / 10000`` (its
  share in force at commit) and, only when a committee judged the job ok, the
  bonus its requester's allowance covers (the allowance shrinks by it); the
  requester gets the rest of the premium back, and all of it on every other end;
- no job stays non-final past its maximum lifetime: once ``now`` is past an
  OPEN job's deadline, or past ``accepted_at + lock`` (``lock`` as
  ``accept_job`` computes it from the job's terms: deadline, draw window, open
  window, every round of the court, 1 h margin) of an accepted one, an exit
  anyone may call (``expire_job``, ``slash_undrawn``, ``slash_unopened``,
  ``finalize``) ends it, and ``max_job_lifetime()`` covers every lock. The one
  extension: a court round that a late ``finalize`` started late ends that much
  later (the model adds the delay; a round must give its voters their windows);

and at the end of every sequence every job is driven to a final state and
every seat settled: nothing stays locked or busy.

``FUZZ_EXAMPLES`` sets the number of action sequences (default 1000; ``make
fuzz`` raises it). The contracts are deployed once; every sequence runs inside
a ``boa.env.anchor()`` and is rolled back afterwards.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import boa
import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from vyper.compiler.output import build_layout_output

from greenproof.attestation import sign_attestation
from greenproof.merkle import ZERO32, boundary0_seal, commitment_tree, seal, vote_commitment
from greenproof.sampling import audited_segments

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))

E = 10**18
DAY = 86_400
BPS = 10_000
WINDOW = 600  # open, commit and reveal windows at deployment (s)
DRAW_WINDOW = 3_600  # JobMarket's default
SEED_LOOKAHEAD = 1
MAX_JOB_DURATION = DAY
MIN_JOB_DURATION = 300  # JobMarket's default
REQUESTER_SHARE_BPS = 5_000
LIFETIME_MARGIN = 3_600  # JobMarket.LIFETIME_MARGIN
BLOCKHASH_WINDOW = 256
MAX_BONUS_BPS = 2_000
START_BALANCE = 10**6 * E
SEAT = 5 * E  # VerifierCourt.SEAT_STAKE
COMMITTEE = 3
MAX_ROUNDS = 3  # sizes 3, 7, 15
VOTER_SLASH_BPS = 1_000
NOSHOW_SLASH_BPS = 2_000
CLASS = keccak(b"fuzz class")
EMPTY_CLASS = keccak(b"a class nobody can replay")

OPEN, ACCEPTED, COMMITTED, AUDITING, VOTING, PAID, SLASHED, CANCELLED, EXPIRED = range(1, 10)
FINAL = {PAID, SLASHED, CANCELLED, EXPIRED}
STATE_NAMES = {PAID: "PAID", SLASHED: "SLASHED", CANCELLED: "CANCELLED", EXPIRED: "EXPIRED"}
LIVE = {OPEN, ACCEPTED, COMMITTED, AUDITING, VOTING}
HOLDS_COLLATERAL = {ACCEPTED, COMMITTED, AUDITING, VOTING}
OUTCOME_OK, OUTCOME_FRAUD, NO_DECISION, DROPPED = 1, 2, 3, 4
OUTCOME_NAMES = {OUTCOME_OK: "OK", OUTCOME_FRAUD: "FRAUD", NO_DECISION: "NO_DECISION", DROPPED: "DROPPED"}
BALLOTS = ("ok", "ok", "ok", "lazy", "fraud", "silent")
BRIBED = ("fraud", "fraud", "fraud", "ok", "lazy", "silent")  # a committee leaning to "fraud"

ZERO_ADDRESS = "0x" + "00" * 20
ATTESTOR_KEY = "0x" + "a7" * 32
ATTESTATION_VALID_UNTIL = 4_000_000_000  # year 2096: never expires within a sequence


# ------------------------------------------------------------------ one deployment


class Storage:
    """Reads a contract's storage directly (no EVM call: a boa call costs
    milliseconds, and the invariants read dozens of values after every step).

    Slots come from the compiler's storage layout, by variable name; a HashMap
    entry lives at ``keccak256(slot ‖ key)`` (Vyper's order). ``self_check``
    compares against the public getters once, so a layout change fails loudly.
    """

    def __init__(self, contract) -> None:
        self.address = contract.address
        self.layout = build_layout_output(contract.compiler_data)["storage_layout"]

    def slot(self, *path: str) -> int:
        node = self.layout
        for name in path:
            node = node[name]
        return int(node["slot"])

    def at(self, slot: int) -> int:
        return int(boa.env.get_storage(self.address, slot))

    def value(self, *path: str) -> int:
        return self.at(self.slot(*path))

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def entry(slot: int, key: str | int) -> int:
        k = int(key, 16) if isinstance(key, str) else key
        return int.from_bytes(keccak(slot.to_bytes(32, "big") + k.to_bytes(32, "big")), "big")

    def mapping(self, *path: str, key: str | int) -> int:
        return self.at(self.entry(self.slot(*path), key))


def struct_member_index(path: Path, struct: str, member: str) -> int:
    """Slot offset of ``member`` in a struct whose members are all one slot wide."""
    lines = path.read_text().split("\n")
    start = lines.index(f"struct {struct}:") + 1
    members = []
    for line in lines[start:]:
        if not line.startswith("    "):
            break
        name, typ = (x.strip() for x in line.split(":"))
        assert typ in ("uint256", "bytes32"), f"{struct}.{name}: {typ} is not one slot"
        members.append(name)
    return members.index(member)



class Readers:
    """Storage readers of the token, the StakeManager, the registry and the market."""

    def __init__(self, token, stake, registry, market) -> None:
        self.token, self.stake = Storage(token), Storage(stake)
        self.registry, self.market = Storage(registry), Storage(market)
        self._jobs = self.market.slot("_jobs")
        self._pot = struct_member_index(CONTRACTS / "JobMarket.vy", "JobSlots", "pot")

    def pot(self, job_id: int) -> int:
        """``JobSlots.pot``: tokens held for a finalized job's winning seats."""
        return self.market.at(Storage.entry(self._jobs, job_id) + self._pot)

    def job_state(self, job_id: int) -> int:
        """``JobSlots.head`` (first member) bits 160..167; checked against
        ``job_state()`` whenever a job is posted."""
        head = self.market.at(Storage.entry(self._jobs, job_id))
        return (head >> 160) & 0xFF


@dataclass
class World:
    token: object
    stake: object
    registry: object
    court: object
    market: object
    owner: str
    attestor: str
    allocator: str
    requesters: list[str]
    providers: list[str]
    verifiers: list[str]
    reader: Readers = field(init=False)
    chain_id: int = field(init=False)
    anyone: str = field(init=False)  # calls the exits that anyone may call

    def __post_init__(self) -> None:
        self.reader = Readers(self.token, self.stake, self.registry, self.market)
        self.chain_id = int(self.registry.eip712Domain()[3])
        self.anyone = boa.env.generate_address("anyone")

    @property
    def stakers(self) -> list[str]:
        return self.providers + self.verifiers

    @property
    def everyone(self) -> list[str]:
        return self.requesters + self.providers + self.verifiers


def block_hash(number: int) -> bytes:
    """The fake chain's block hashes (boa's default is zero for every block)."""
    return keccak(b"block" + number.to_bytes(32, "big"))


@functools.lru_cache(maxsize=1024)
def _hashes_below(n: int) -> list[bytes]:
    return [block_hash(n - 1 - d) for d in range(min(n, 256))]


def set_block_hashes() -> None:
    """py-evm serves ``blockhash(n)`` from a list by depth below the current block."""
    n = boa.env.evm.patch.block_number
    boa.env.evm.patch.prev_hashes = _hashes_below(n)


def travel(seconds: int | None = None, blocks: int | None = None) -> None:
    """Time travel (boa: 12 s per block) keeping ``blockhash`` consistent."""
    boa.env.time_travel(seconds=seconds, blocks=blocks)
    set_block_hashes()



def deploy_world() -> World:
    """Deploy and wire everything (once per module; every sequence is rolled back)."""
    owner = boa.env.generate_address("owner")
    attestor = Account.from_key(ATTESTOR_KEY).address
    set_block_hashes()
    with boa.env.prank(owner):
        boa.env.enable_fast_mode()
        token = boa.load(CONTRACTS / "mocks" / "MockToken.vy", "Fuzz", "FUZZ", 18)
        stake = boa.load(CONTRACTS / "StakeManager.vy", token.address, 365 * DAY)
        registry = boa.load(CONTRACTS / "GreenRegistry.vy", token.address, MAX_BONUS_BPS, 400)
        court = boa.load(CONTRACTS / "VerifierCourt.vy", stake.address, SEAT)
        rules = boa.load(CONTRACTS / "AuditRules.vy")
        market = boa.load(
            CONTRACTS / "JobMarket.vy", token.address, stake.address, registry.address, court.address,
            rules.address,
        )
        market.set_seed_lookahead(SEED_LOOKAHEAD)
        market.set_open_window(WINDOW)
        market.set_max_job_duration(MAX_JOB_DURATION)
        market.set_requester_share_bps(REQUESTER_SHARE_BPS)
        court.set_commit_window(WINDOW)
        court.set_reveal_window(WINDOW)
        court.set_committee_size(COMMITTEE)
        court.set_max_rounds(MAX_ROUNDS)
        court.set_voter_slash_bps(VOTER_SLASH_BPS)
        court.set_noshow_slash_bps(NOSHOW_SLASH_BPS)
        stake.set_market(market.address)
        stake.set_court(court.address)
        registry.set_market(market.address)
        court.set_market(market.address)
        stake.set_unbonding_period(market.max_job_lifetime() + DAY)
        registry.add_attestor(attestor)
        allocator = boa.env.generate_address("allocator")
        registry.add_allocator(allocator)
    assert int(market.draw_window()) == DRAW_WINDOW and int(market.min_job_duration()) == MIN_JOB_DURATION
    w = World(
        token,
        stake,
        registry,
        court,
        market,
        owner,
        attestor,
        allocator,
        requesters=[boa.env.generate_address(f"requester{i}") for i in range(2)],
        providers=[boa.env.generate_address(f"provider{i}") for i in range(2)],
        verifiers=[boa.env.generate_address(f"verifier{i}") for i in range(4)],
    )
    for a in w.everyone:
        token.mint(a, START_BALANCE, sender=a)
        for spender in (stake, registry, market):
            token.approve(spender.address, 2**256 - 1, sender=a)
    # everyone who stakes starts bonded, and the verifiers seated (8 seats), so
    # sequences get to the interesting parts
    for a in w.providers:
        stake.stake(60 * E, sender=a)
    for a in w.verifiers:
        stake.stake(30 * E, sender=a)
        court.join(CLASS, 2, sender=a)
    assert int(court.pool_stake(CLASS)) == 8 * SEAT >= int(court.min_class_stake())
    # the storage readers agree with the getters
    r = w.reader
    for a in w.everyone:
        assert r.token.mapping("erc20", "balanceOf", key=a) == token.balanceOf(a) > 0
    p0 = w.providers[0]
    stake.request_unstake(E, sender=p0)
    assert r.stake.mapping("staked", key=p0) == stake.staked(p0) == 59 * E
    assert r.stake.value("total_staked") == stake.total_staked() == 2 * 60 * E + 4 * 30 * E - E
    assert r.stake.mapping("unbonding", key=p0) == stake.unbonding(p0) == E
    registry.fund_pool(E, sender=w.requesters[0])
    assert r.registry.value("pool") == registry.pool() == E
    return w


# ------------------------------------------------------------------ attestations


@functools.lru_cache(maxsize=256)
def signed_attestation(
    registry: str, chain_id: int, provider: str, green_bps: int, nonce: int
) -> tuple[list, bytes]:
    """``(submit_attestation args, EIP-712 signature)``; valid from the epoch for
    ten years, so the same few signatures serve every sequence (EC signing is slow)."""
    signed = sign_attestation(
        Account.from_key(ATTESTOR_KEY), registry, chain_id, provider=provider,
        green_bps=green_bps, carbon_g_per_kwh=40, region="fuzz", valid_from=1,
        valid_until=ATTESTATION_VALID_UNTIL, nonce=nonce,
    )
    *args, signature = signed.submit_args()
    return list(args), bytes(signature)



# ------------------------------------------------------------------ the model


@dataclass
class Run:
    """What the provider committed to (honest: a real tree; garbage: a random root)."""

    honest: bool
    state_hashes: list[bytes]
    energies: list[int]
    moves: list[int]  # cumulative movement, moves[0] = 0
    digests: list[bytes]  # w_k, w_0 = 0
    seals: list[bytes]
    root: bytes

    def tree(self, job_id: int):
        """The honest tree of this run (a garbage run committed another root)."""
        return commitment_tree(job_id, self.state_hashes, self.energies, self.moves, self.seals)


@dataclass(frozen=True)
class Terms:
    """A job's terms, read when it is accepted (``get_job``): the market's and the court's."""

    open_window: int
    draw_window: int
    share_bps: int
    lookahead: int
    committee: int
    max_rounds: int
    commit_window: int
    reveal_window: int
    voter_bps: int
    noshow_bps: int

    @classmethod
    def of(cls, g) -> Terms:
        court = int(g.court_terms)
        return cls(
            int(g.open_window), int(g.draw_window), int(g.requester_share_bps), int(g.seed_lookahead),
            court & 0xFF, (court >> 8) & 0xFF, (court >> 16) & 0xFFFFFFFF, (court >> 48) & 0xFFFFFFFF,
            (court >> 80) & 0xFFFF, (court >> 96) & 0xFFFF,
        )

    @property
    def round_time(self) -> int:
        return self.commit_window + self.reveal_window


@dataclass
class Case:
    """The court's case of a job as the model expects it."""

    voter_bps: int
    noshow_bps: int
    max_rounds: int
    commit_window: int
    reveal_window: int
    rounds: list[dict[str, int]]  # seats per voter, per round
    round_start: int = 0  # current round's voting start (0: not voting yet)
    late: int = 0  # seconds later rounds started after their predecessor's end (a late finalize)
    ballots: dict[tuple[int, str], str] = field(default_factory=dict)  # committed: ok/lazy/fraud/silent
    salts: dict[tuple[int, str], bytes] = field(default_factory=dict)
    revealed: set[tuple[int, str]] = field(default_factory=set)
    settled: set[tuple[int, str]] = field(default_factory=set)
    outcome: int = 0
    reward: int = 0

    @property
    def round(self) -> int:
        return len(self.rounds) - 1

    def counts(self, rnd: int) -> tuple[int, int, int]:
        """(drawn, ok, fraud) seats of round ``rnd``."""
        seats = self.rounds[rnd]
        ok = sum(n for v, n in seats.items() if (rnd, v) in self.revealed and self.ballots[(rnd, v)] == "ok")
        fraud = sum(
            n for v, n in seats.items() if (rnd, v) in self.revealed and self.ballots[(rnd, v)] == "fraud"
        )
        return sum(seats.values()), ok, fraud

    def counted(self, rnd: int, voter: str) -> bool:
        """Revealed and counted: fraud, or ok with the replayed digests."""
        return (rnd, voter) in self.revealed and self.ballots[(rnd, voter)] in ("ok", "fraud")

    def expected(self, rnd: int, voter: str) -> tuple[int, int]:
        """(reward, penalty) of a seat holder, from the counts fixed at the decision."""
        seats = self.rounds[rnd][voter]
        if self.outcome == DROPPED:
            return 0, 0
        if rnd == self.round and self.outcome in (OUTCOME_OK, OUTCOME_FRAUD):
            winning = "ok" if self.outcome == OUTCOME_OK else "fraud"
            if self.counted(rnd, voter) and self.ballots[(rnd, voter)] == winning:
                return seats * self.reward, 0
            if self.counted(rnd, voter):
                return 0, seats * (SEAT * self.voter_bps // BPS)
            return 0, seats * (SEAT * self.noshow_bps // BPS)
        if self.counted(rnd, voter):
            return 0, 0
        return 0, seats * (SEAT * self.noshow_bps // BPS)

    def unsettled(self) -> list[tuple[int, str]]:
        return [(r, v) for r, seats in enumerate(self.rounds) for v in seats if (r, v) not in self.settled]

    def busy_of(self, voter: str) -> int:
        return sum(self.rounds[r][v] for r, v in self.unsettled() if v == voter)

    def winning_unsettled(self) -> int:
        if self.outcome not in (OUTCOME_OK, OUTCOME_FRAUD):
            return 0
        winning = "ok" if self.outcome == OUTCOME_OK else "fraud"
        return sum(
            self.rounds[self.round][v]
            for r, v in self.unsettled()
            if r == self.round and self.counted(r, v) and self.ballots[(r, v)] == winning
        )


@dataclass
class JobModel:
    job_id: int
    requester: str
    payment: int
    fee: int
    collateral: int
    num_segments: int
    samples: int
    min_green: int
    premium: int = 0
    provider: str | None = None
    run: Run | None = None
    deadline: int = 0
    terms: Terms | None = None  # fixed by accept_job
    accepted_at: int = 0
    lock: int = 0  # what accept_job locked the job's stake for (s)
    committed_at: int = 0
    seed_block: int = 0
    green_at_commit: int = 0
    segments: list[int] = field(default_factory=list)  # audited segments, ascending
    case: Case | None = None
    state: int = OPEN  # as of the last invariant check (i.e. before the current step)
    final_state: int | None = None

    @property
    def escrow(self) -> int:
        return self.payment + self.fee + self.premium

    def share(self) -> int:
        """The requester's part of a slashed collateral, at the job's share."""
        return self.collateral * self.terms.share_bps // BPS

    def lifetime_end(self) -> int:
        """When the job must be endable by anyone: its deadline while OPEN, else acceptance +
        lock, plus any delay a late finalize gave a later court round."""
        if self.terms is None:
            return self.deadline
        return self.accepted_at + self.lock + (self.case.late if self.case else 0)


def bonded(w: World, a: str) -> int:
    return int(w.stake.staked(a)) + int(w.stake.unbonding(a))


def make_run(job_id: int, n: int, honest: bool) -> Run:
    """A run of ``n`` segments; each moves 0, 1, 2 or 3 units (a job id divisible by 5
    moves nothing: every sample is then uniform)."""
    hashes = [keccak(abi_encode(["uint256", "uint256"], [job_id, k])) for k in range(n + 1)]
    energies = [k * 1_000_000 for k in range(n + 1)]
    moves = [0]
    for k in range(1, n + 1):
        step = 0 if job_id % 5 == 0 else keccak(abi_encode(["uint256", "uint256"], [job_id, k]))[0] % 4 * 1_000
        moves.append(moves[-1] + step)
    digests = [ZERO32] + [keccak(b"losses" + abi_encode(["uint256", "uint256"], [job_id, k])) for k in range(1, n + 1)]
    seals = [boundary0_seal(job_id)] + [seal(job_id, k, digests[k]) for k in range(1, n + 1)]
    root = commitment_tree(job_id, hashes, energies, moves, seals).root if honest else keccak(b"garbage")
    return Run(honest, hashes, energies, moves, digests, seals, root)


class MarketMachine(RuleBasedStateMachine):
    world: World  # set by the test from the module fixture

    def __init__(self) -> None:
        super().__init__()
        self.w = MarketMachine.world
        self._anchor = boa.env.anchor()
        self._anchor.__enter__()
        self.jobs: list[JobModel] = []
        self.attest_nonce: dict[str, int] = {}

    def teardown(self) -> None:
        try:
            self.drain()
        finally:
            self._anchor.__exit__(None, None, None)

    # -------------------------------------------------------------- helpers

    def now(self) -> int:
        return int(boa.env.evm.patch.timestamp)

    def jobs_in(self, *states: int) -> list[JobModel]:
        return [j for j in self.jobs if j.state in states]

    def unsettled_jobs(self) -> list[JobModel]:
        return [j for j in self.jobs if j.state in FINAL and j.case and j.case.unsettled()]

    def market_slash_check(self, who: list[tuple[str, int]], action) -> None:
        """Run ``action``; each ``(account, expected)`` loses exactly ``expected``
        (never more than it had) of bonded + unbonding stake."""
        before = {a: bonded(self.w, a) for a, _ in who}
        action()
        for a, expected in who:
            lost = before[a] - bonded(self.w, a)
            assert lost <= before[a], "slash exceeded what was staked"
            assert lost == min(expected, before[a]), (
                f"slash of {a}: lost {lost}, expected {expected}"
            )

    def read_round(self, job: JobModel, rnd: int) -> dict[str, int]:
        seats = {}
        for a in self.w.stakers:
            n = int(self.w.court.seat_of(job.job_id, rnd, a).seats)
            if n:
                seats[a] = n
        return seats

    # -------------------------------------------------------------- staking

    @rule(i=st.integers(0, 5), amount=st.integers(1, 60))
    def stake(self, i, amount):
        a = self.w.stakers[i]
        self.w.stake.stake(amount * E, sender=a)

    @rule(i=st.integers(0, 5), part=st.integers(1, 5))
    def request_unstake(self, i, part):
        """Unstake a quarter .. all of the free stake; ``part == 5``: try to
        unstake everything, locked collateral and seats included (must fail if locked)."""
        self._unstake(self.w.stakers[i], part)

    def _unstake(self, a: str, part: int) -> None:
        free = int(self.w.stake.free_stake(a))
        locked = int(self.w.stake.locked(a))
        amount = free * part // 4 if part < 5 else free + locked
        if amount == 0:
            with boa.reverts("stake: zero amount"):
                self.w.stake.request_unstake(0, sender=a)
            return
        if amount > free:
            with boa.reverts("stake: amount exceeds free stake"):
                self.w.stake.request_unstake(amount, sender=a)
            amount = free
            if amount == 0:
                return
        self.w.stake.request_unstake(amount, sender=a)
        assert int(self.w.stake.locked(a)) == locked

    @rule(i=st.integers(0, 5))
    def withdraw_stake(self, i):
        a = self.w.stakers[i]
        amount = int(self.w.stake.unbonding(a))
        release = int(self.w.stake.unbonding_release(a))
        if amount == 0:
            with boa.reverts("stake: nothing unbonding"):
                self.w.stake.withdraw(sender=a)
        elif self.now() < release:
            with boa.reverts("stake: still unbonding"):
                self.w.stake.withdraw(sender=a)
        else:
            before = int(self.w.token.balanceOf(a))
            self.w.stake.withdraw(sender=a)
            assert int(self.w.token.balanceOf(a)) == before + amount

    # -------------------------------------------------------------- the court's pool

    @rule(i=st.integers(0, 5), seats=st.integers(1, 3))
    def join(self, i, seats):
        """Any staker may join the pool (a provider too: it may then sit on its own job)."""
        a = self.w.stakers[i]
        free = int(self.w.stake.free_stake(a))
        before = self.w.court.member_of(CLASS, a)
        if free < seats * SEAT:
            with boa.reverts("stake: amount exceeds free stake"):
                self.w.court.join(CLASS, seats, sender=a)
            return
        self.w.court.join(CLASS, seats, sender=a)
        assert int(self.w.court.member_of(CLASS, a).free_seats) == int(before.free_seats) + seats

    @rule(i=st.integers(0, 5), seats=st.integers(1, 3))
    def leave(self, i, seats):
        a = self.w.stakers[i]
        member = self.w.court.member_of(CLASS, a)
        free, busy = int(member.free_seats), int(member.busy_seats)
        if free == 0 and busy == 0:
            with boa.reverts("court: not a member"):
                self.w.court.leave(CLASS, seats, sender=a)
            return
        if seats > free:
            with boa.reverts("court: seats not free"):
                self.w.court.leave(CLASS, seats, sender=a)
            return
        locked = int(self.w.stake.locked(a))
        self.w.court.leave(CLASS, seats, sender=a)
        assert int(self.w.stake.locked(a)) == locked - seats * SEAT

    @rule(
        committee=st.sampled_from([1, 3, 3, 5]),
        rounds=st.sampled_from([1, 2, 3]),
        noshow=st.sampled_from([1_500, 2_000, 4_000]),
        voter=st.sampled_from([0, 500, 1_000]),
        commit_window=st.sampled_from([300, WINDOW, 2 * WINDOW]),
        reveal_window=st.sampled_from([300, WINDOW, 2 * WINDOW]),
    )
    def set_court_parameters(self, committee, rounds, noshow, voter, commit_window, reveal_window):
        """Accepted jobs keep the court's terms of their acceptance (the model reads them then)."""
        c = self.w.court
        with boa.env.prank(self.w.owner):
            c.set_max_rounds(1)
            c.set_committee_size(committee)
            c.set_max_rounds(rounds)
            c.set_voter_slash_bps(0)
            c.set_noshow_slash_bps(noshow)
            c.set_voter_slash_bps(voter)
            c.set_commit_window(commit_window)
            c.set_reveal_window(reveal_window)

    @rule(
        open_window=st.sampled_from([300, WINDOW, 2 * WINDOW]),
        draw_window=st.sampled_from([120, WINDOW, DRAW_WINDOW]),
        share=st.sampled_from([0, REQUESTER_SHARE_BPS, BPS]),
        lookahead=st.sampled_from([1, 2, 5]),
    )
    def set_market_parameters(self, open_window, draw_window, share, lookahead):
        """Accepted jobs keep the market's terms of their acceptance (the model reads them then)."""
        m = self.w.market
        with boa.env.prank(self.w.owner):
            m.set_open_window(open_window)
            m.set_draw_window(draw_window)
            m.set_requester_share_bps(share)
            m.set_seed_lookahead(lookahead)
        for job in self.jobs:  # a running job's terms never move
            if job.terms is not None and job.state not in FINAL:
                assert Terms.of(m.get_job(job.job_id)) == job.terms

    # -------------------------------------------------------------- green registry

    @rule(amount=st.integers(1, 50))
    def fund_pool(self, amount):
        self.w.registry.fund_pool(amount * E, sender=self.w.requesters[0])

    @rule(i=st.integers(0, 1), green_bps=st.sampled_from([0, 2_500, 6_000, 10_000]))
    def attest_rule(self, i, green_bps):
        self.attest(i, green_bps)

    def attest(self, i: int, green_bps: int) -> None:
        p = self.w.providers[i]
        nonce = self.attest_nonce.get(p, 0) + 1
        args, sig = signed_attestation(
            self.w.registry.address, self.w.chain_id, p, green_bps, nonce
        )
        self.w.registry.submit_attestation(*args, sig, sender=self.w.requesters[1])
        self.attest_nonce[p] = nonce
        assert int(self.w.registry.green_bps_of(p)) == green_bps
        # replaying the same nonce is rejected
        with boa.reverts("registry: stale nonce"):
            self.w.registry.submit_attestation(*args, sig, sender=self.w.requesters[1])

    @rule(r=st.integers(0, 1), amount=st.sampled_from([0, 1, 3, 40]))
    def grant_allowance(self, r, amount):
        """The allocator grants a requester an allowance on the pool (0: revokes it)."""
        reg, req = self.w.registry, self.w.requesters[r]
        if amount == 0:
            if reg.allocator_of(req) == ZERO_ADDRESS:  # nothing granted (or revoked already)
                with boa.reverts("registry: no allowance"):
                    reg.revoke_allowance(req, sender=self.w.allocator)
                return
            reg.revoke_allowance(req, sender=self.w.allocator)
        else:
            reg.grant_allowance(req, amount * E, sender=self.w.allocator)
        assert int(reg.allowance_of(req)) == amount * E

    # -------------------------------------------------------------- requester

    @rule(
        r=st.integers(0, 1),
        segments=st.integers(1, 9),
        samples=st.integers(1, 4),
        payment=st.integers(1, 30),
        fee=st.integers(0, 5),
        extra=st.integers(0, 10),
        duration=st.integers(MIN_JOB_DURATION, MAX_JOB_DURATION),
        bait=st.sampled_from([0] * 9 + [1, MIN_JOB_DURATION - 1]),
        green=st.sampled_from([0, 0, 0, 5_000]),
        premium=st.sampled_from([0, 0, 3, 17]),
    )
    def post_job(self, r, segments, samples, payment, fee, extra, duration, bait, green, premium):
        """``bait``: a job due that many seconds after posting (too soon)."""
        requester = self.w.requesters[r]
        collateral = payment + extra  # min_collateral_bps is 100 %
        duration = bait or duration
        deadline = self.now() + duration
        premium_units = premium * E + premium  # odd: the provider's share rounds down
        post = lambda: self.w.market.post_job(  # noqa: E731
            keccak(b"spec" + bytes([segments])),
            "ipfs://spec",
            segments,
            samples,
            payment * E,
            fee * E + fee,  # odd fees: the rounding rest of a pot is exercised
            collateral * E,
            deadline,
            green,
            premium_units,
            sender=requester,
        )
        if duration < MIN_JOB_DURATION:  # a bait job, due (almost) at once
            with boa.reverts("market: deadline too soon"):
                post()
            return
        before = int(self.w.token.balanceOf(requester))
        job_id = int(post())
        assert int(self.w.token.balanceOf(requester)) == before - payment * E - fee * E - fee - premium_units
        assert self.w.reader.job_state(job_id) == int(self.w.market.job_state(job_id)) == OPEN
        self.jobs.append(
            JobModel(
                job_id,
                requester,
                payment * E,
                fee * E + fee,
                collateral * E,
                segments,
                samples,
                green,
                premium=premium_units,
                deadline=deadline,
            )
        )

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def cancel_job(self, data):
        self._cancel(data.draw(st.sampled_from(self.jobs)))

    def _cancel(self, job: JobModel) -> None:
        if job.state != OPEN:
            with boa.reverts("market: job not open"):
                self.w.market.cancel_job(job.job_id, sender=job.requester)
            return
        before = int(self.w.token.balanceOf(job.requester))
        self.w.market.cancel_job(job.job_id, sender=job.requester)
        assert int(self.w.token.balanceOf(job.requester)) == before + job.escrow

    # -------------------------------------------------------------- provider

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), i=st.integers(0, 1), empty_class=st.sampled_from([False] * 5 + [True]))
    def accept_job(self, data, i, empty_class):
        self._accept(data.draw(st.sampled_from(self.jobs)), self.w.providers[i], empty_class)

    def _accept(self, job: JobModel, p: str, empty_class: bool = False) -> None:
        dclass = EMPTY_CLASS if empty_class else CLASS
        m = self.w.market
        accept = lambda: m.accept_job(job.job_id, dclass, sender=p)  # noqa: E731
        if job.state != OPEN:
            with boa.reverts("market: job not open"):
                accept()
            return
        if self.now() >= job.deadline:
            with boa.reverts("market: deadline passed"):
                accept()
            return
        if job.min_green and int(self.w.registry.green_bps_of(p)) < job.min_green:
            with boa.reverts("market: provider not green enough"):
                accept()
            return
        if int(self.w.stake.free_stake(p)) < job.collateral:
            with boa.reverts("market: insufficient free stake"):
                accept()
            return
        if int(self.w.court.pool_stake(dclass)) < int(self.w.court.min_class_stake()):
            with boa.reverts("market: class pool too small"):
                accept()
            return
        locked = int(self.w.stake.locked(p))
        current = (
            int(m.open_window()), int(m.draw_window()), int(m.requester_share_bps()), int(m.seed_lookahead()),
            int(self.w.court.current_terms()),
        )
        accept()
        assert int(self.w.stake.locked(p)) == locked + job.collateral
        g = m.get_job(job.job_id)
        assert bytes(g.determinism_class) == CLASS
        # the terms in force are the job's from now on
        assert (int(g.open_window), int(g.draw_window), int(g.requester_share_bps), int(g.seed_lookahead),
                int(g.court_terms)) == current
        job.provider, job.terms, job.accepted_at = p, Terms.of(g), self.now()
        t = job.terms
        job.lock = job.deadline - self.now() + t.draw_window + t.open_window + t.max_rounds * t.round_time
        job.lock += LIFETIME_MARGIN
        assert int(m.max_job_lifetime()) >= job.lock
        assert int(self.w.stake.unbonding_period()) > int(m.max_job_lifetime())

    @precondition(lambda self: self.jobs_in(ACCEPTED))
    @rule(data=st.data(), honest=st.sampled_from([True, True, False]))
    def commit_result(self, data, honest):
        self._commit(data.draw(st.sampled_from(self.jobs_in(ACCEPTED))), honest)

    def _commit(self, job: JobModel, honest: bool) -> None:
        if self.now() >= job.deadline:
            with boa.reverts("market: deadline passed"):
                self.w.market.commit_result(
                    job.job_id, b"\x01" * 32, b"\x02" * 32, 1, 1, "", sender=job.provider
                )
            return
        run = make_run(job.job_id, job.num_segments, honest)
        self.w.market.commit_result(
            job.job_id, run.root, run.state_hashes[-1], run.energies[-1], run.moves[-1], "http://artifacts",
            sender=job.provider,
        )
        job.run = run
        job.committed_at = self.now()
        job.seed_block = boa.env.evm.patch.block_number + job.terms.lookahead
        job.green_at_commit = int(self.w.registry.green_bps_of(job.provider))
        g = self.w.market.get_job(job.job_id)
        assert (int(g.seed_block), int(g.green_bps), int(g.move_total)) == (
            job.seed_block, job.green_at_commit, run.moves[-1])
        assert int(g.draw_deadline) == job.committed_at + job.terms.draw_window

    @precondition(lambda self: self.jobs_in(OPEN, ACCEPTED))
    @rule(data=st.data())
    def expire_job(self, data):
        self._expire(data.draw(st.sampled_from(self.jobs_in(OPEN, ACCEPTED))))

    def _expire(self, job: JobModel) -> None:
        expire = lambda: self.w.market.expire_job(job.job_id, sender=self.w.verifiers[0])  # noqa: E731
        if self.now() < job.deadline:
            with boa.reverts("market: deadline not passed"):
                expire()
            return
        if job.state == OPEN:  # nobody took it: anyone ends it, the requester gets everything back
            claim = int(self.w.market.claimable(job.requester))
            bonded_before = {a: bonded(self.w, a) for a in self.w.stakers}
            expire()
            assert int(self.w.market.claimable(job.requester)) == claim + job.escrow
            assert {a: bonded(self.w, a) for a in self.w.stakers} == bonded_before
            event("OPEN job expired")
            return
        self._slash_without_voters(job, expire)

    def _slash_without_voters(self, job: JobModel, action) -> None:
        """An exit without a committee decision: the collateral is slashed; the requester
        gets payment + fee + premium + the job's share of it; the rest funds the pool."""
        claim = int(self.w.market.claimable(job.requester))
        pool = int(self.w.registry.pool())
        self.market_slash_check([(job.provider, job.collateral)], action)
        share = job.share()
        assert int(self.w.market.claimable(job.requester)) == claim + job.escrow + share
        assert int(self.w.registry.pool()) == pool + job.collateral - share

    # -------------------------------------------------------------- audit

    @precondition(lambda self: self.jobs_in(COMMITTED))
    @rule(data=st.data(), lag=st.sampled_from([0, 0, 1, 5, 260, 300]))
    def draw_audit(self, data, lag):
        """``lag``: blocks past the seed block (12 s each): past 256 the seed is out of reach,
        and whenever the job's draw window closed first, it is too late; then slash_undrawn."""
        self._draw(data.draw(st.sampled_from(self.jobs_in(COMMITTED))), lag)

    def _draw(self, job: JobModel, lag: int = 0) -> None:
        m = self.w.market
        draw = lambda: m.draw_audit(job.job_id, sender=self.w.verifiers[1])  # noqa: E731
        if boa.env.evm.patch.block_number <= job.seed_block:
            with boa.reverts("market: seed block not reached"):
                draw()
        target = job.seed_block + 1 + lag
        if boa.env.evm.patch.block_number < target:
            travel(blocks=target - boa.env.evm.patch.block_number)
        if self.now() >= job.committed_at + job.terms.draw_window:
            with boa.reverts("market: draw window passed"):
                draw()
            event("undrawn: draw window passed")
            self._slash_undrawn(job)
            return
        if boa.env.evm.patch.block_number - job.seed_block > BLOCKHASH_WINDOW:
            with boa.reverts("market: seed out of reach"):  # no re-roll: the seed block stays
                draw()
            assert int(m.get_job(job.job_id).seed_block) == job.seed_block
            event("undrawn: seed out of reach")
            self._slash_undrawn(job)
            return
        free_before = int(self.w.court.pool_of(CLASS).free_seats)
        draw()
        g = m.get_job(job.job_id)
        assert int(g.state) == AUDITING
        seed = bytes(g.seed)
        assert seed == block_hash(job.seed_block)
        assert int(g.open_deadline) == self.now() + job.terms.open_window
        c = self.w.court.case_of(job.job_id)
        t = job.terms
        # the case runs under the court's terms of the job's acceptance
        assert (int(c.committee_size), int(c.max_rounds), int(c.commit_window), int(c.reveal_window),
                int(c.voter_slash_bps), int(c.noshow_slash_bps)) == (
            t.committee, t.max_rounds, t.commit_window, t.reveal_window, t.voter_bps, t.noshow_bps)
        job.case = Case(t.voter_bps, t.noshow_bps, t.max_rounds, t.commit_window, t.reveal_window, [])
        job.case.rounds.append(self.read_round(job, 0))
        drawn = sum(job.case.rounds[0].values())
        assert drawn == int(c.drawn_seats) == min(t.committee, free_before)
        # the segments to open: by index and by movement (the Python twin of the draw)
        job.segments = audited_segments(seed, job.job_id, job.samples, job.run.moves)

    @precondition(lambda self: self.jobs_in(COMMITTED))
    @rule(data=st.data())
    def slash_undrawn(self, data):
        self._slash_undrawn(data.draw(st.sampled_from(self.jobs_in(COMMITTED))))

    def _slash_undrawn(self, job: JobModel) -> None:
        slash = lambda: self.w.market.slash_undrawn(job.job_id, sender=self.w.verifiers[3])  # noqa: E731
        late = self.now() >= job.committed_at + job.terms.draw_window
        number = boa.env.evm.patch.block_number
        if not (late or (number > job.seed_block and number - job.seed_block > BLOCKHASH_WINDOW)):
            with boa.reverts("market: draw still possible"):
                slash()
            return
        self._slash_without_voters(job, slash)

    @precondition(lambda self: self.jobs_in(AUDITING))
    @rule(data=st.data())
    def open_segments(self, data):
        self._open_all(data.draw(st.sampled_from(self.jobs_in(AUDITING))))

    def _open_all(self, job: JobModel) -> None:
        if self.now() >= int(self.w.market.get_job(job.job_id).open_deadline):
            return  # too late: slash_unopened's turn
        run = job.run
        tree = run.tree(job.job_id)
        openings = [
            (k, run.state_hashes[k], run.energies[k], run.moves[k], run.seals[k],
             run.state_hashes[k + 1], run.energies[k + 1], run.moves[k + 1], run.seals[k + 1],
             tree.proof(k), tree.proof(k + 1))
            for k in job.segments
        ]
        if not run.honest:  # no valid proof exists against a garbage root
            with boa.reverts("audit: invalid start proof"):
                self.w.market.open_segments(job.job_id, openings, sender=job.provider)
            return
        self.w.market.open_segments(job.job_id, openings, sender=job.provider)
        assert int(self.w.market.job_state(job.job_id)) == VOTING
        job.case.round_start = self.now()
        assert int(self.w.court.case_of(job.job_id).voting_start) == self.now()

    @precondition(lambda self: self.jobs_in(AUDITING))
    @rule(data=st.data())
    def slash_unopened(self, data):
        self._slash_unopened(data.draw(st.sampled_from(self.jobs_in(AUDITING))))

    def _slash_unopened(self, job: JobModel) -> None:
        if self.now() < int(self.w.market.get_job(job.job_id).open_deadline):
            with boa.reverts("market: open window not passed"):
                self.w.market.slash_unopened(job.job_id, sender=self.w.verifiers[2])
            return
        self._slash_without_voters(
            job, lambda: self.w.market.slash_unopened(job.job_id, sender=self.w.verifiers[2])
        )
        job.case.outcome = DROPPED

    # -------------------------------------------------------------- voting

    def _digests(self, job: JobModel, kind: str) -> list[bytes]:
        if kind == "ok":
            return [job.run.digests[k + 1] for k in job.segments]
        if kind == "lazy":
            return [keccak(b"did not replay %d" % k) for k in job.segments]
        return []

    @precondition(lambda self: self.jobs_in(VOTING))
    @rule(data=st.data(), kind=st.sampled_from(BALLOTS), outsider=st.sampled_from([False] * 7 + [True]))
    def commit_vote(self, data, kind, outsider):
        job = data.draw(st.sampled_from(self.jobs_in(VOTING)))
        seated = sorted(job.case.rounds[-1])
        others = [a for a in self.w.everyone if a not in seated]
        if outsider or not seated:
            self._commit_vote(job, data.draw(st.sampled_from(others)), kind)
        else:
            self._commit_vote(job, data.draw(st.sampled_from(seated)), kind)

    def _commit_vote(self, job: JobModel, voter: str, kind: str) -> None:
        case = job.case
        rnd = case.round
        salt = keccak(abi_encode(["uint256", "address", "uint256"], [job.job_id, voter, rnd]))
        c = vote_commitment(job.job_id, voter, kind == "fraud", salt, self._digests(job, kind))
        commit = lambda: self.w.court.commit_vote(job.job_id, c, sender=voter)  # noqa: E731
        if self.now() >= case.round_start + case.commit_window:
            with boa.reverts("court: commit window closed"):
                commit()
            return
        if voter not in case.rounds[rnd]:
            with boa.reverts("court: not seated"):
                commit()
            return
        if (rnd, voter) in case.ballots:
            with boa.reverts("court: already committed"):
                commit()
            return
        commit()
        case.ballots[(rnd, voter)] = kind
        case.salts[(rnd, voter)] = salt

    @precondition(lambda self: [j for j in self.jobs_in(VOTING) if j.case.ballots])
    @rule(data=st.data())
    def reveal_votes(self, data):
        self._reveal(data.draw(st.sampled_from([j for j in self.jobs_in(VOTING) if j.case.ballots])))

    def _reveal(self, job: JobModel) -> None:
        case = job.case
        commit_end = case.round_start + case.commit_window
        if self.now() < commit_end:
            travel(seconds=commit_end - self.now())
        if self.now() >= commit_end + case.reveal_window:
            return  # reveal window over: the unrevealed are no-shows now
        rnd = case.round
        for (r, voter), kind in list(case.ballots.items()):
            if r != rnd or kind == "silent" or (r, voter) in case.revealed:
                continue
            segments = [] if kind == "fraud" else job.segments
            self.w.court.reveal_vote(
                job.job_id, kind == "fraud", case.salts[(r, voter)], self._digests(job, kind), segments,
                sender=voter,
            )
            case.revealed.add((r, voter))
            status = int(self.w.court.seat_of(job.job_id, r, voter).status)
            assert status == {"ok": 2, "fraud": 3, "lazy": 4}[kind]
        drawn, ok, fraud = case.counts(rnd)
        view = self.w.court.case_of(job.job_id)
        assert (int(view.drawn_seats), int(view.ok_seats), int(view.fraud_seats)) == (drawn, ok, fraud)

    @precondition(lambda self: self.jobs_in(VOTING))
    @rule(data=st.data())
    def finalize(self, data):
        self._finalize(data.draw(st.sampled_from(self.jobs_in(VOTING))))

    def _finalize(self, job: JobModel) -> None:
        case = job.case
        caller = self.w.requesters[1]
        finalize = lambda: self.w.market.finalize(job.job_id, sender=caller)  # noqa: E731
        round_end = case.round_start + case.commit_window + case.reveal_window
        if self.now() < round_end:
            with boa.reverts("court: round not over"):
                finalize()
            return
        drawn, ok, fraud = case.counts(case.round)
        p, r = job.provider, job.requester
        reg = self.w.registry
        paid_before = int(self.w.market.claimable(p))
        claim_before = int(self.w.market.claimable(r))
        allowance_before = int(reg.allowance_of(r))
        bonus_if_ok = int(reg.bonus_for(p, r, job.payment))
        if fraud * 2 > drawn:
            self.market_slash_check([(p, job.collateral)], finalize)
            assert int(self.w.market.job_state(job.job_id)) == SLASHED
            assert int(self.w.market.claimable(p)) == paid_before
            share = job.share()
            pot = job.collateral - share
            case.outcome, case.reward = OUTCOME_FRAUD, pot // fraud
            requester_gets = job.escrow + share + pot - case.reward * fraud
        elif ok * 2 > drawn or case.round + 1 >= case.max_rounds:
            finalize()
            assert int(self.w.market.job_state(job.job_id)) == PAID
            judged = ok * 2 > drawn
            # paid exactly once: payment, the premium's green share at commit, and a bonus
            # only when a committee judged the job ok, as far as the allowance goes
            earned = job.premium * job.green_at_commit // BPS
            bonus = bonus_if_ok if judged else 0
            assert bonus <= allowance_before
            assert int(self.w.market.claimable(p)) == paid_before + job.payment + earned + bonus
            assert int(reg.allowance_of(r)) == allowance_before - bonus
            if bonus:
                event("bonus paid")
            elif bonus_if_ok and not judged:
                event("no bonus: no committee judged the job")
            if judged:
                case.outcome, case.reward = OUTCOME_OK, job.fee // ok
                requester_gets = job.premium - earned + job.fee - case.reward * ok
            else:
                case.outcome, case.reward = NO_DECISION, 0
                requester_gets = job.premium - earned + job.fee
        else:  # a larger committee from a fresh seed
            committee = case_committee = int(self.w.court.case_of(job.job_id).committee_size)
            assert case_committee == job.terms.committee
            free_before = int(self.w.court.pool_of(CLASS).free_seats)
            finalize()
            assert int(self.w.market.job_state(job.job_id)) == VOTING
            view = self.w.court.case_of(job.job_id)
            assert int(view.round) == case.round + 1
            size = ((committee + 1) << (case.round + 1)) - 1  # 2 * size_r + 1
            case.rounds.append(self.read_round(job, case.round + 1))
            drawn_now = (sum(case.rounds[-1].values()), int(view.drawn_seats))
            assert drawn_now == (min(size, free_before),) * 2, (drawn_now, size, free_before)
            if self.now() > round_end:  # a late finalize starts the next round late
                case.late += self.now() - round_end
                event("court round started late")
            case.round_start = self.now()
            event(f"round {case.round} drawn")
            return
        assert int(self.w.market.claimable(r)) == claim_before + requester_gets
        view = self.w.court.case_of(job.job_id)
        assert (int(view.outcome), int(view.reward_per_seat)) == (case.outcome, case.reward)
        with boa.reverts("market: job not voting"):
            finalize()

    @precondition(lambda self: self.unsettled_jobs())
    @rule(data=st.data())
    def settle_seats(self, data):
        job = data.draw(st.sampled_from(self.unsettled_jobs()))
        self._settle(job, data.draw(st.permutations(job.case.unsettled())))

    def _settle(self, job: JobModel, order) -> None:
        """Each seat gets exactly what the decision's counts fix, in any order."""
        case = job.case
        caller = self.w.requesters[0]
        for rnd, voter in order:
            reward, penalty = case.expected(rnd, voter)
            claim = int(self.w.market.claimable(voter))
            req_claim = int(self.w.market.claimable(job.requester))
            locked = int(self.w.stake.locked(voter))
            free_seats = int(self.w.court.member_of(CLASS, voter).free_seats)
            seats = case.rounds[rnd][voter]
            self.market_slash_check(
                [(voter, penalty)], lambda r=rnd, v=voter: self.w.court.settle(job.job_id, r, v, sender=caller)
            )
            case.settled.add((rnd, voter))
            assert int(self.w.market.claimable(voter)) == claim + reward
            assert int(self.w.market.claimable(job.requester)) == req_claim + penalty
            if penalty:  # penalised seats leave the pool
                assert int(self.w.stake.locked(voter)) == locked - seats * SEAT
                assert int(self.w.court.member_of(CLASS, voter).free_seats) == free_seats
            else:  # the others are free again
                assert int(self.w.stake.locked(voter)) == locked
                assert int(self.w.court.member_of(CLASS, voter).free_seats) == free_seats + seats
            with boa.reverts("court: seat already settled"):  # no seat is paid twice
                self.w.court.settle(job.job_id, rnd, voter, sender=caller)

    # -------------------------------------------------------------- the next honest step

    @precondition(lambda self: [j for j in self.jobs if j.final_state is None or (j.case and j.case.unsettled())])
    @rule(data=st.data(), steps=st.integers(2, 12))
    def advance(self, data, steps):
        """Move one job up to ``steps`` steps along its lifecycle, checking the
        invariants after each (keeps short sequences reaching the end)."""
        live = [j for j in self.jobs if j.final_state is None or (j.case and j.case.unsettled())]
        job = data.draw(st.sampled_from(live))
        for _ in range(steps):
            if job.state in FINAL and job.case and job.case.unsettled():
                self._settle(job, data.draw(st.permutations(job.case.unsettled())))
            elif job.state in FINAL:
                return
            else:
                self._advance_once(job, data)
            self.protocol_invariants()

    def _advance_once(self, job: JobModel, data) -> None:
        if job.state == OPEN:
            if not data.draw(st.integers(0, 7)):  # nobody takes it
                travel(seconds=max(1, job.deadline - self.now()))
                self._expire(job)
                return
            i = data.draw(st.integers(0, 1))
            p = self.w.providers[i]
            if job.min_green and int(self.w.registry.green_bps_of(p)) < job.min_green:
                self.attest(i, 10_000)
            self._accept(job, p)
        elif job.state == ACCEPTED:
            if data.draw(st.integers(0, 4)):
                self._commit(job, data.draw(st.sampled_from([True, True, True, False])))
            else:  # the provider never commits, and tries to run with its stake
                self._unstake(job.provider, 5)
                travel(seconds=max(1, job.deadline - self.now()))
                self._expire(job)
        elif job.state == COMMITTED:
            lag = data.draw(st.sampled_from([0, 0, 0, 1, 260, -1]))
            if lag < 0:  # nobody draws in time
                travel(seconds=max(1, job.committed_at + job.terms.draw_window - self.now()))
            self._draw(job, max(lag, 0))
        elif job.state == AUDITING:
            if job.run.honest and data.draw(st.integers(0, 5)):
                self._open_all(job)
            else:
                deadline = int(self.w.market.get_job(job.job_id).open_deadline)
                travel(seconds=max(1, deadline - self.now()))
                self._slash_unopened(job)
        elif job.state == VOTING:
            case = job.case
            start = case.round_start
            commit_end = start + case.commit_window
            pending = sorted(v for v in case.rounds[-1] if (case.round, v) not in case.ballots)
            if self.now() < commit_end and pending and data.draw(st.integers(0, 3)):
                # the whole committee commits, leaning one way or the other
                leaning = data.draw(st.sampled_from([BALLOTS, BALLOTS, BRIBED]))
                for v in pending:
                    self._commit_vote(job, v, data.draw(st.sampled_from(leaning)))
            elif self.now() < commit_end + case.reveal_window and any(r == case.round for r, _ in case.ballots):
                self._reveal(job)
                travel(seconds=case.reveal_window)
            else:
                travel(seconds=max(0, commit_end + case.reveal_window - self.now()))
                self._finalize(job)

    # -------------------------------------------------------------- pull payments and time

    @rule(k=st.integers(0, 7))
    def withdraw_claimable(self, k):
        a = self.w.everyone[k]
        amount = int(self.w.market.claimable(a))
        if amount == 0:
            with boa.reverts("market: nothing to withdraw"):
                self.w.market.withdraw(sender=a)
            return
        before = int(self.w.token.balanceOf(a))
        self.w.market.withdraw(sender=a)
        assert int(self.w.token.balanceOf(a)) == before + amount
        assert int(self.w.market.claimable(a)) == 0

    @rule(
        seconds=st.sampled_from([30, WINDOW // 2, WINDOW, 2 * WINDOW, DAY // 2, DAY + 1, 20 * DAY])
    )
    def warp(self, seconds):
        travel(seconds=seconds)

    # -------------------------------------------------------------- every job ends

    def drain(self) -> None:
        """Drive every job to a final state with honest steps and settle every seat:
        afterwards nothing is locked but free pool seats, and nothing is busy."""
        for job in self.jobs:
            for _ in range(40):
                job.state = int(self.w.market.job_state(job.job_id))
                if job.state in FINAL:
                    break
                self._drain_step(job)
            job.state = int(self.w.market.job_state(job.job_id))
            assert job.state in FINAL, f"job {job.job_id} did not end: state {job.state}"
            if job.case:
                self._settle(job, job.case.unsettled())
                event(f"case ended {OUTCOME_NAMES[job.case.outcome]} in round {job.case.round}")
        self.protocol_invariants()
        pool = self.w.court.pool_of(CLASS)
        assert int(pool.busy_seats) == 0
        for a in self.w.stakers:
            member = self.w.court.member_of(CLASS, a)
            assert int(member.busy_seats) == 0
            assert int(self.w.stake.locked(a)) == int(member.free_seats) * SEAT

    def _drain_step(self, job: JobModel) -> None:
        """One honest step towards a final state."""
        if job.state == OPEN:
            takers = [
                p for p in self.w.providers
                if int(self.w.stake.free_stake(p)) >= job.collateral
                and (not job.min_green or int(self.w.registry.green_bps_of(p)) >= job.min_green)
            ]
            if self.now() >= job.deadline:
                self._expire(job)
            elif takers and int(self.w.court.pool_stake(CLASS)) >= int(self.w.court.min_class_stake()):
                self._accept(job, takers[job.job_id % len(takers)])
            else:
                self._cancel(job)
        elif job.state == ACCEPTED:
            if self.now() < job.deadline and job.job_id % 4:
                self._commit(job, job.job_id % 8 != 1)  # now and then a garbage root
            else:
                travel(seconds=max(1, job.deadline - self.now()))
                self._expire(job)
        elif job.state == COMMITTED:  # now and then drawn too late, in blocks or in time
            late = (job.job_id + job.num_segments) % 8
            if late == 1:
                travel(seconds=max(1, job.committed_at + job.terms.draw_window - self.now()))
            self._draw(job, BLOCKHASH_WINDOW + 4 if late == 0 else 0)
        elif job.state == AUDITING:
            if job.run.honest:
                self._open_all(job)
            if int(self.w.market.job_state(job.job_id)) == AUDITING:
                deadline = int(self.w.market.get_job(job.job_id).open_deadline)
                travel(seconds=max(1, deadline - self.now()))
                self._slash_unopened(job)
        else:  # VOTING: seats not yet committed vote while they can (mostly honestly;
            # some committees are bribed to "fraud", some stay silent round after round)
            case = job.case
            kind = "fraud" if job.job_id % 5 == 0 else "silent" if job.job_id % 7 == 3 else "ok"
            if self.now() < case.round_start + case.commit_window:
                for v in sorted(case.rounds[-1]):
                    if (case.round, v) not in case.ballots:
                        self._commit_vote(job, v, kind)
            if any(r == case.round for r, _ in case.ballots):
                self._reveal(job)
            travel(seconds=max(0, case.round_start + case.commit_window + case.reveal_window - self.now()))
            self._finalize(job)

    # -------------------------------------------------------------- invariants

    def overdue_exit(self, job: JobModel) -> None:
        """Past the job's lifetime an exit anyone may call ends it (tried, then rolled back)."""
        m, anyone = self.w.market, self.w.anyone
        exits = {
            OPEN: m.expire_job, ACCEPTED: m.expire_job, COMMITTED: m.slash_undrawn,
            AUDITING: m.slash_unopened, VOTING: m.finalize,
        }
        with boa.env.anchor():
            exits[job.state](job.job_id, sender=anyone)
            state = int(m.job_state(job.job_id))
        assert state in FINAL, (
            f"job {job.job_id} in state {job.state} is past its lifetime "
            f"({self.now()} > {job.lifetime_end()}) and its exit left it in state {state}"
        )

    @invariant()
    def protocol_invariants(self):
        """Every invariant, read straight from storage where it can (see ``Storage``)."""
        w, r = self.w, self.w.reader
        balance = lambda a: r.token.mapping("erc20", "balanceOf", key=a)  # noqa: E731
        # a final state is final: no job is paid (or refunded, or slashed) twice
        escrow = pots = 0
        collateral = dict.fromkeys(w.stakers, 0)
        busy = dict.fromkeys(w.stakers, 0)
        now = self.now()
        for job in self.jobs:
            state = r.job_state(job.job_id)
            if job.final_state is not None:
                assert state == job.final_state, (
                    f"job {job.job_id} left final state {job.final_state}"
                )
            elif state in FINAL:
                job.final_state = state
                event(f"job ended {STATE_NAMES[state]}" + (" with a committee" if job.case else ""))
            job.state = state
            if state in LIVE:
                escrow += job.escrow
                # no job stays non-final past its lifetime: an exit anyone may call ends it
                if now > job.lifetime_end():
                    self.overdue_exit(job)
                    event("a job past its lifetime ended by anyone")
            if state in HOLDS_COLLATERAL:
                collateral[job.provider] += job.collateral
            pot = r.pot(job.job_id)
            if state in (PAID, SLASHED):
                pots += pot
                # no seat paid twice: the pot is exactly what the unsettled winners are owed
                if job.case is not None and job.case.outcome:
                    assert pot == job.case.reward * job.case.winning_unsettled()
            else:
                assert pot == 0
            if job.case is not None:
                for a in w.stakers:
                    busy[a] += job.case.busy_of(a)
        # tokens held == escrow + pots + claimables; == stake + unbonding; == pool; court: 0
        claimables = sum(r.market.mapping("claimable", key=a) for a in w.everyone)
        staked = [r.stake.mapping("staked", key=a) for a in w.stakers]
        locked = [r.stake.mapping("locked", key=a) for a in w.stakers]
        unbonding = [r.stake.mapping("unbonding", key=a) for a in w.stakers]
        total_staked, total_unbonding = (
            r.stake.value("total_staked"),
            r.stake.value("total_unbonding"),
        )
        pool = r.registry.value("pool")
        assert balance(w.market.address) == escrow + pots + claimables
        assert balance(w.stake.address) == total_staked + total_unbonding
        assert balance(w.registry.address) == pool
        assert balance(w.court.address) == 0
        assert sum(staked) == total_staked
        assert sum(unbonding) == total_unbonding
        # locked <= staked; locked == live collateral + a full seat stake per pool seat
        seats = 0
        for a, s_, l_ in zip(w.stakers, staked, locked, strict=True):
            assert l_ <= s_
            member = w.court.member_of(CLASS, a)
            assert int(member.busy_seats) == busy[a]
            held = int(member.free_seats) + int(member.busy_seats)
            assert l_ == collateral[a] + held * SEAT
            seats += held
        view = w.court.pool_of(CLASS)
        assert int(view.free_seats) + int(view.busy_seats) == seats

    @initialize(allowance=st.sampled_from([0, 5, 40]), green_bps=st.sampled_from([0, 6_000, 10_000]))
    def start(self, allowance, green_bps):
        """Some sequences start with an allowance for the first requester and a green first
        provider (the bonus then needs a committee's ok)."""
        assert int(self.w.market.next_job_id()) >= 1
        if allowance:
            self.w.registry.grant_allowance(self.w.requesters[0], allowance * E, sender=self.w.allocator)
        if green_bps:
            self.attest(0, green_bps)


MarketMachine.TestCase.settings = settings(
    max_examples=FUZZ_EXAMPLES,
    stateful_step_count=16,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
    derandomize=os.environ.get("FUZZ_RANDOM") is None,  # reproducible unless FUZZ_RANDOM=1
)


@pytest.fixture(scope="module")
def world() -> World:
    # deployed outside the test's own anchor (titanoboa's pytest plugin rolls
    # back each test), so it survives for every example
    return deploy_world()


@pytest.mark.timeout(3600)
def test_market_fuzz(world):
    MarketMachine.world = world
    MarketMachine.TestCase().runTest()
