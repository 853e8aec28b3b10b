"""Stateful fuzz of the whole protocol on titanoboa (hypothesis ``RuleBasedStateMachine``).

Random sequences of every user action (stake, unstake, withdraw, post, cancel,
accept, commit with honest or garbage roots, expire, draw, open with real
Merkle proofs from ``greenproof.merkle``, slash_unopened, commit/reveal votes
honest / fraud / no-show, finalize, settle_vote, withdraw claimables, fund the
pool, attest) with time travel in between. After every step:

- tokens held by the three contracts == escrow + pots + claimables + stake +
  unbonding + pool (and each contract on its own);
- ``locked <= staked`` for every staker;
- a job's final state never changes again (no job paid twice), and a payout
  credits the provider exactly once;
- a slash never takes more than the account had (bonded + unbonding), and a
  provider's slash always takes its full collateral, whatever it unstaked in
  the meantime ("unstaking never dodges a slash"); voter penalties are exact.

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
from greenproof.merkle import commitment_tree

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))

E = 10**18
DAY = 86_400
BPS = 10_000
WINDOW = 600  # open, commit and reveal windows (s)
SEED_LOOKAHEAD = 1
MAX_JOB_DURATION = DAY
MIN_VERIFIER_STAKE = 1 * E
MAX_VOTE_STAKE = 20 * E
VOTER_SLASH_BPS = 1_000
REQUESTER_SHARE_BPS = 5_000
MAX_BONUS_BPS = 2_000
START_BALANCE = 10**6 * E

OPEN, ACCEPTED, COMMITTED, AUDITING, VOTING, PAID, SLASHED, CANCELLED, EXPIRED = range(1, 10)
FINAL = {PAID, SLASHED, CANCELLED, EXPIRED}
STATE_NAMES = {PAID: "PAID", SLASHED: "SLASHED", CANCELLED: "CANCELLED", EXPIRED: "EXPIRED"}
LIVE = {OPEN, ACCEPTED, COMMITTED, AUDITING, VOTING}
VOTE_COMMITTED, VOTE_OK, VOTE_FRAUD = 1, 2, 3

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
    """Storage readers of the four contracts."""

    def __init__(self, token, stake, registry, market) -> None:
        self.token, self.stake = Storage(token), Storage(stake)
        self.registry, self.market = Storage(registry), Storage(market)
        self._jobs = self.market.slot("_jobs")
        self._pot = struct_member_index(CONTRACTS / "JobMarket.vy", "JobSlots", "pot")

    def pot(self, job_id: int) -> int:
        """``JobSlots.pot``: tokens held for a finalized job's winning voters."""
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
    market: object
    owner: str
    attestor: str
    requesters: list[str]
    providers: list[str]
    verifiers: list[str]
    reader: Readers = field(init=False)
    chain_id: int = field(init=False)

    def __post_init__(self) -> None:
        self.reader = Readers(self.token, self.stake, self.registry, self.market)
        self.chain_id = int(self.registry.eip712Domain()[3])

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
        market = boa.load(
            CONTRACTS / "JobMarket.vy", token.address, stake.address, registry.address
        )
        market.set_seed_lookahead(SEED_LOOKAHEAD)
        market.set_open_window(WINDOW)
        market.set_vote_commit_window(WINDOW)
        market.set_vote_reveal_window(WINDOW)
        market.set_max_job_duration(MAX_JOB_DURATION)
        market.set_min_verifier_stake(MIN_VERIFIER_STAKE)
        market.set_max_vote_stake(MAX_VOTE_STAKE)
        market.set_voter_slash_bps(VOTER_SLASH_BPS)
        market.set_requester_share_bps(REQUESTER_SHARE_BPS)
        stake.set_market(market.address)
        registry.set_market(market.address)
        stake.set_unbonding_period(market.max_job_lifetime() + DAY)
        registry.add_attestor(attestor)
    w = World(
        token,
        stake,
        registry,
        market,
        owner,
        attestor,
        requesters=[boa.env.generate_address(f"requester{i}") for i in range(2)],
        providers=[boa.env.generate_address(f"provider{i}") for i in range(2)],
        verifiers=[boa.env.generate_address(f"verifier{i}") for i in range(3)],
    )
    for a in w.everyone:
        token.mint(a, START_BALANCE, sender=a)
        for spender in (stake, registry, market):
            token.approve(spender.address, 2**256 - 1, sender=a)
    # everyone who stakes starts bonded, so sequences get to the interesting parts
    for a in w.providers:
        stake.stake(60 * E, sender=a)
    for a in w.verifiers:
        stake.stake(15 * E, sender=a)
    # the storage readers agree with the getters
    r = w.reader
    for a in w.everyone:
        assert r.token.mapping("erc20", "balanceOf", key=a) == token.balanceOf(a) > 0
    p0 = w.providers[0]
    stake.request_unstake(E, sender=p0)
    assert r.stake.mapping("staked", key=p0) == stake.staked(p0) == 59 * E
    assert r.stake.value("total_staked") == stake.total_staked() == 2 * 60 * E + 3 * 15 * E - E
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
    root: bytes


@dataclass
class Vote:
    fraud: bool
    salt: bytes
    reveal: bool  # False: a no-show


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
    provider: str | None = None
    run: Run | None = None
    deadline: int = 0
    votes: dict[str, Vote] = field(default_factory=dict)
    state: int = OPEN  # as of the last invariant check (i.e. before the current step)
    finalized_at: int = 0
    final_state: int | None = None


def job_state(w: World, job_id: int) -> int:
    return int(w.market.job_state(job_id))


def bonded(w: World, a: str) -> int:
    return int(w.stake.staked(a)) + int(w.stake.unbonding(a))


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
        self._anchor.__exit__(None, None, None)

    # -------------------------------------------------------------- helpers

    def now(self) -> int:
        return int(boa.env.evm.patch.timestamp)

    def jobs_in(self, *states: int) -> list[JobModel]:
        return [j for j in self.jobs if j.state in states]

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

    # -------------------------------------------------------------- staking

    @rule(i=st.integers(0, 4), amount=st.integers(1, 60))
    def stake(self, i, amount):
        a = self.w.stakers[i]
        self.w.stake.stake(amount * E, sender=a)

    @rule(i=st.integers(0, 4), part=st.integers(1, 5))
    def request_unstake(self, i, part):
        """Unstake a quarter .. all of the free stake; ``part == 5``: try to
        unstake everything, locked collateral included (must fail if locked)."""
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

    @rule(i=st.integers(0, 4))
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
        with boa.reverts("green: stale nonce"):
            self.w.registry.submit_attestation(*args, sig, sender=self.w.requesters[1])

    # -------------------------------------------------------------- requester

    @rule(
        r=st.integers(0, 1),
        segments=st.integers(1, 9),
        samples=st.integers(1, 4),
        payment=st.integers(1, 30),
        fee=st.integers(0, 5),
        extra=st.integers(0, 10),
        duration=st.integers(120, MAX_JOB_DURATION),
        green=st.sampled_from([0, 0, 0, 5_000]),
    )
    def post_job(self, r, segments, samples, payment, fee, extra, duration, green):
        requester = self.w.requesters[r]
        collateral = payment + extra  # min_collateral_bps is 100 %
        deadline = self.now() + duration
        job_id = int(
            self.w.market.post_job(
                keccak(b"spec" + bytes([segments])),
                "ipfs://spec",
                segments,
                samples,
                payment * E,
                fee * E,
                collateral * E,
                deadline,
                green,
                sender=requester,
            )
        )
        assert self.w.reader.job_state(job_id) == int(self.w.market.job_state(job_id)) == OPEN
        self.jobs.append(
            JobModel(
                job_id,
                requester,
                payment * E,
                fee * E,
                collateral * E,
                segments,
                samples,
                green,
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
        assert int(self.w.token.balanceOf(job.requester)) == before + job.payment + job.fee

    # -------------------------------------------------------------- provider

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), i=st.integers(0, 1))
    def accept_job(self, data, i):
        self._accept(data.draw(st.sampled_from(self.jobs)), self.w.providers[i])

    def _accept(self, job: JobModel, p: str) -> None:
        if job.state != OPEN:
            with boa.reverts("market: job not open"):
                self.w.market.accept_job(job.job_id, b"\x00" * 32, sender=p)
            return
        if self.now() >= job.deadline:
            with boa.reverts("market: deadline passed"):
                self.w.market.accept_job(job.job_id, b"\x00" * 32, sender=p)
            return
        if job.min_green and int(self.w.registry.green_bps_of(p)) < job.min_green:
            with boa.reverts("market: provider not green enough"):
                self.w.market.accept_job(job.job_id, b"\x00" * 32, sender=p)
            return
        if int(self.w.stake.free_stake(p)) < job.collateral:
            with boa.reverts("market: insufficient free stake"):
                self.w.market.accept_job(job.job_id, b"\x00" * 32, sender=p)
            return
        locked = int(self.w.stake.locked(p))
        self.w.market.accept_job(job.job_id, b"\x00" * 32, sender=p)
        assert int(self.w.stake.locked(p)) == locked + job.collateral
        job.provider = p

    @precondition(lambda self: self.jobs_in(ACCEPTED))
    @rule(data=st.data(), honest=st.sampled_from([True, True, False]))
    def commit_result(self, data, honest):
        self._commit(data.draw(st.sampled_from(self.jobs_in(ACCEPTED))), honest)

    def _commit(self, job: JobModel, honest: bool) -> None:
        if self.now() >= job.deadline:
            with boa.reverts("market: deadline passed"):
                self.w.market.commit_result(
                    job.job_id, b"\x01" * 32, b"\x02" * 32, 1, "", sender=job.provider
                )
            return
        n = job.num_segments
        hashes = [keccak(abi_encode(["uint256", "uint256"], [job.job_id, k])) for k in range(n + 1)]
        energies = [k * 1_000_000 for k in range(n + 1)]
        root = commitment_tree(job.job_id, hashes, energies).root if honest else keccak(b"garbage")
        self.w.market.commit_result(
            job.job_id, root, hashes[-1], energies[-1], "http://artifacts", sender=job.provider
        )
        job.run = Run(honest, hashes, energies, root)

    @precondition(lambda self: self.jobs_in(ACCEPTED))
    @rule(data=st.data())
    def expire_job(self, data):
        self._expire(data.draw(st.sampled_from(self.jobs_in(ACCEPTED))))

    def _expire(self, job: JobModel) -> None:
        if self.now() < job.deadline:
            with boa.reverts("market: deadline not passed"):
                self.w.market.expire_job(job.job_id, sender=self.w.verifiers[0])
            return
        self._slash_without_voters(
            job, lambda: self.w.market.expire_job(job.job_id, sender=self.w.verifiers[0])
        )

    def _slash_without_voters(self, job: JobModel, action) -> None:
        claim = int(self.w.market.claimable(job.requester))
        pool = int(self.w.registry.pool())
        self.market_slash_check([(job.provider, job.collateral)], action)
        share = job.collateral * REQUESTER_SHARE_BPS // BPS
        assert int(self.w.market.claimable(job.requester)) == claim + job.payment + job.fee + share
        assert int(self.w.registry.pool()) == pool + job.collateral - share

    # -------------------------------------------------------------- audit

    @precondition(lambda self: self.jobs_in(COMMITTED))
    @rule(data=st.data(), lag=st.sampled_from([0, 0, 1, 5, 300]))
    def draw_audit(self, data, lag):
        """``lag``: blocks past the seed block; past 256 the draw re-arms."""
        self._draw(data.draw(st.sampled_from(self.jobs_in(COMMITTED))), lag)

    def _draw(self, job: JobModel, lag: int = 0) -> None:
        seed_block = int(self.w.market.get_job(job.job_id).seed_block)
        if boa.env.evm.patch.block_number <= seed_block:
            with boa.reverts("market: seed block not reached"):
                self.w.market.draw_audit(job.job_id, sender=self.w.verifiers[1])
        target = seed_block + 1 + lag
        if boa.env.evm.patch.block_number < target:
            travel(blocks=target - boa.env.evm.patch.block_number)
        rearm = boa.env.evm.patch.block_number > seed_block + 256
        self.w.market.draw_audit(job.job_id, sender=self.w.verifiers[1])
        g = self.w.market.get_job(job.job_id)
        if rearm:  # the seed block's hash is out of reach: a new seed block
            assert int(g.state) == COMMITTED
            assert int(g.seed_block) == boa.env.evm.patch.block_number + SEED_LOOKAHEAD
        else:
            assert int(g.state) == AUDITING
            assert bytes(g.seed) == block_hash(seed_block)

    @precondition(lambda self: self.jobs_in(AUDITING))
    @rule(data=st.data())
    def open_segments(self, data):
        self._open_all(data.draw(st.sampled_from(self.jobs_in(AUDITING))))

    def _open_all(self, job: JobModel) -> None:
        if self.now() >= int(self.w.market.get_job(job.job_id).open_deadline):
            return  # too late: slash_unopened's turn
        run = job.run
        honest_tree = commitment_tree(job.job_id, run.state_hashes, run.energies)
        indices = sorted({int(i) for i in self.w.market.audit_indices(job.job_id)})
        for idx in indices:
            if not run.honest:
                # no valid proof exists against a garbage root
                with boa.reverts("market: invalid start proof"):
                    self._open(job, idx, honest_tree)
                return
            self._open(job, idx, honest_tree)
        assert int(self.w.market.job_state(job.job_id)) == VOTING

    def _open(self, job: JobModel, idx: int, tree) -> None:
        run = job.run
        self.w.market.open_segment(
            job.job_id,
            idx,
            run.state_hashes[idx],
            run.energies[idx],
            run.state_hashes[idx + 1],
            run.energies[idx + 1],
            tree.proof(idx),
            tree.proof(idx + 1),
            sender=job.provider,
        )

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

    # -------------------------------------------------------------- voting

    @precondition(lambda self: self.jobs_in(VOTING))
    @rule(
        data=st.data(),
        v=st.integers(0, 2),
        fraud=st.booleans(),
        reveal=st.sampled_from([True, True, True, False]),
    )
    def commit_vote(self, data, v, fraud, reveal):
        job = data.draw(st.sampled_from(self.jobs_in(VOTING)))
        self._commit_vote(job, self.w.verifiers[v], fraud, reveal)

    def _commit_vote(self, job: JobModel, voter: str, fraud: bool, reveal: bool) -> None:
        if self.now() >= int(self.w.market.get_job(job.job_id).voting_start) + WINDOW:
            with boa.reverts("market: commit window closed"):
                self.w.market.commit_vote(job.job_id, b"\x01" * 32, sender=voter)
            return
        if voter in job.votes:
            with boa.reverts("market: already voted"):
                self.w.market.commit_vote(job.job_id, b"\x01" * 32, sender=voter)
            return
        free = int(self.w.stake.free_stake(voter))
        salt = keccak(abi_encode(["uint256", "address"], [job.job_id, voter]))
        commitment = keccak(
            abi_encode(["uint256", "address", "bool", "bytes32"], [job.job_id, voter, fraud, salt])
        )
        if free < MIN_VERIFIER_STAKE:
            with boa.reverts("market: insufficient verifier stake"):
                self.w.market.commit_vote(job.job_id, commitment, sender=voter)
            return
        self.w.market.commit_vote(job.job_id, commitment, sender=voter)
        assert int(self.w.market.vote_of(job.job_id, voter).weight) == min(free, MAX_VOTE_STAKE)
        job.votes[voter] = Vote(fraud, salt, reveal)

    @precondition(lambda self: [j for j in self.jobs_in(VOTING) if j.votes])
    @rule(data=st.data())
    def reveal_votes(self, data):
        self._reveal(data.draw(st.sampled_from([j for j in self.jobs_in(VOTING) if j.votes])))

    def _reveal(self, job: JobModel) -> None:
        start = int(self.w.market.get_job(job.job_id).voting_start)
        if self.now() < start + WINDOW:
            travel(seconds=start + WINDOW - self.now())
        if self.now() >= start + 2 * WINDOW:
            return  # reveal window over: the unrevealed are no-shows now
        for voter, vote in job.votes.items():
            status = int(self.w.market.vote_of(job.job_id, voter).status)
            if vote.reveal and status == VOTE_COMMITTED:
                self.w.market.reveal_vote(job.job_id, vote.fraud, vote.salt, sender=voter)

    @precondition(lambda self: self.jobs_in(VOTING))
    @rule(data=st.data())
    def finalize(self, data):
        self._finalize(data.draw(st.sampled_from(self.jobs_in(VOTING))))

    def _finalize(self, job: JobModel) -> None:
        g = self.w.market.get_job(job.job_id)
        caller = self.w.requesters[1]
        if self.now() < int(g.voting_start) + 2 * WINDOW:
            with boa.reverts("market: voting not over"):
                self.w.market.finalize(job.job_id, sender=caller)
            return
        p = job.provider
        paid_before = int(self.w.market.claimable(p))
        bonus = int(self.w.registry.bonus_for(p, job.payment))
        if int(g.fraud_weight) > int(g.ok_weight):
            self.market_slash_check(
                [(p, job.collateral)], lambda: self.w.market.finalize(job.job_id, sender=caller)
            )
            assert int(self.w.market.job_state(job.job_id)) == SLASHED
            assert int(self.w.market.claimable(p)) == paid_before
        else:
            self.w.market.finalize(job.job_id, sender=caller)
            assert int(self.w.market.job_state(job.job_id)) == PAID
            # paid exactly once: payment plus the green bonus
            assert int(self.w.market.claimable(p)) == paid_before + job.payment + bonus
        job.finalized_at = self.now()
        with boa.reverts("market: job not voting"):
            self.w.market.finalize(job.job_id, sender=caller)

    @precondition(lambda self: [j for j in self.jobs_in(PAID, SLASHED) if j.votes])
    @rule(data=st.data())
    def settle_votes(self, data):
        job = data.draw(st.sampled_from([j for j in self.jobs_in(PAID, SLASHED) if j.votes]))
        order = data.draw(st.permutations(sorted(job.votes)))
        self._settle(job, order)

    def _settle(self, job: JobModel, order) -> None:
        fraud_won = job.state == SLASHED  # a voted job ends SLASHED only when fraud won
        caller = self.w.requesters[0]
        views = {voter: self.w.market.vote_of(job.job_id, voter) for voter in job.votes}

        def wins(v) -> bool:
            status = int(v.status)
            return (status == VOTE_FRAUD and fraud_won) or (status == VOTE_OK and not fraud_won)

        for voter in order:
            v = views[voter]
            settle = lambda voter=voter: self.w.market.settle_vote(job.job_id, voter, sender=caller)  # noqa: E731
            if bool(v.settled):
                with boa.reverts("market: vote already settled"):
                    settle()
                continue
            weight = int(v.weight)
            if wins(v):
                nonwinners_left = sum(
                    1 for x in views.values() if not wins(x) and not bool(x.settled)
                )
                if nonwinners_left and self.now() < job.finalized_at + WINDOW:
                    with boa.reverts("market: non-winning votes unsettled"):
                        settle()
                    continue
                locked = int(self.w.stake.locked(voter))
                self.market_slash_check([(voter, 0)], settle)
                assert int(self.w.stake.locked(voter)) == locked - weight
            else:
                # minority and no-show votes lose voter_slash_bps of their vote stake
                self.market_slash_check([(voter, weight * VOTER_SLASH_BPS // BPS)], settle)
            views[voter] = self.w.market.vote_of(job.job_id, voter)
            assert bool(views[voter].settled)

    # -------------------------------------------------------------- the next honest step

    @precondition(lambda self: [j for j in self.jobs if j.final_state is None or j.votes])
    @rule(data=st.data(), steps=st.integers(2, 12))
    def advance(self, data, steps):
        """Move one job up to ``steps`` steps along its lifecycle, checking the
        invariants after each (keeps short sequences reaching the end)."""
        job = data.draw(st.sampled_from([j for j in self.jobs if j.final_state is None or j.votes]))
        for _ in range(steps):
            if job.state in (PAID, SLASHED) and job.votes:
                self._settle(job, data.draw(st.permutations(sorted(job.votes))))
            elif job.state in FINAL:
                return
            else:
                self._advance_once(job, data)
            self.protocol_invariants()

    def _advance_once(self, job: JobModel, data) -> None:
        if job.state == OPEN:
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
            self._draw(job)
        elif job.state == AUDITING:
            if job.run.honest and data.draw(st.integers(0, 5)):
                self._open_all(job)
            else:
                travel(seconds=WINDOW)
                self._slash_unopened(job)
        elif job.state == VOTING:
            start = int(self.w.market.get_job(job.job_id).voting_start)
            if self.now() < start + WINDOW and data.draw(st.integers(0, 3)):
                v = data.draw(st.sampled_from(self.w.verifiers))
                self._commit_vote(
                    job, v, data.draw(st.booleans()), data.draw(st.integers(0, 4)) > 0
                )
            elif self.now() < start + 2 * WINDOW and any(x.reveal for x in job.votes.values()):
                self._reveal(job)
                travel(seconds=WINDOW)
            else:
                travel(seconds=max(0, start + 2 * WINDOW - self.now()))
                self._finalize(job)

    # -------------------------------------------------------------- pull payments and time

    @rule(k=st.integers(0, 6))
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

    # -------------------------------------------------------------- invariants

    @invariant()
    def protocol_invariants(self):
        """Every invariant, read straight from storage (see ``Storage``)."""
        w, r = self.w, self.w.reader
        balance = lambda a: r.token.mapping("erc20", "balanceOf", key=a)  # noqa: E731
        # a final state is final: no job is paid (or refunded, or slashed) twice
        escrow = pots = 0
        for job in self.jobs:
            state = r.job_state(job.job_id)
            if job.final_state is not None:
                assert state == job.final_state, (
                    f"job {job.job_id} left final state {job.final_state}"
                )
            elif state in FINAL:
                job.final_state = state
                event(f"job ended {STATE_NAMES[state]}" + (" with votes" if job.votes else ""))
            job.state = state
            if state in LIVE:
                escrow += job.payment + job.fee
            elif state in (PAID, SLASHED):
                pots += r.pot(job.job_id)
        # tokens held == escrow + pots + claimables; == stake + unbonding; == pool
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
        assert sum(staked) == total_staked
        assert sum(unbonding) == total_unbonding
        # locked <= staked for every staker
        for s_, l_ in zip(staked, locked, strict=True):
            assert l_ <= s_

    @initialize()
    def start(self):
        assert int(self.w.market.next_job_id()) >= 1


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


@pytest.mark.timeout(1800)
def test_market_fuzz(world):
    MarketMachine.world = world
    MarketMachine.TestCase().runTest()
