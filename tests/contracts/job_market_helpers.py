"""Story helpers for the JobMarket and VerifierCourt tests: fund actors, seat
verifiers in a pool, post, run, open, vote, decide.

The Merkle side always comes from :mod:`greenproof.merkle` (the code the worker
uses), so every on-chain opening here is also a Python/Vyper agreement check;
likewise every vote commitment and proof of replay comes from the Python twins
the verifier uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_abi import encode as abi_encode
from eth_utils import keccak

from greenproof.merkle import (
    ZERO32,
    MerkleTree,
    boundary0_seal,
    commitment_tree,
    seal,
    vote_commitment,
)
from verifier.sampling import segment_of_target

TOKEN = 10**18
PAYMENT = 100 * TOKEN
FEE = 10 * TOKEN
COLLATERAL = 150 * TOKEN
PROVIDER_STAKE = 1_000 * TOKEN
VERIFIER_STAKE = 500 * TOKEN
SEAT = 100 * TOKEN  # conftest.SEAT_STAKE
MINT = 1_000_000 * TOKEN
SPEC_HASH = keccak(b"spec: mlp tiny")
SPEC_URI = "ipfs://spec-mlp-tiny"
RESULT_URI = "http://127.0.0.1:8765/artifacts"
DETERMINISM = keccak(b"cpu/x86_64/torch-2.13/fp32/deterministic")
OTHER_CLASS = keccak(b"cuda/sm_90/torch-2.13/bf16/deterministic")
# EIP-2935 block-hash history contract (JobMarket.HISTORY_CONTRACT)
HISTORY = "0x0000F90827F1C53a10cb7A02335B175320002935"

# Job states (JobMarket.vy)
OPEN, ACCEPTED, COMMITTED, AUDITING, VOTING, PAID, SLASHED, CANCELLED, EXPIRED = range(1, 10)
# Case outcomes (VerifierCourt.vy)
UNDECIDED, OUTCOME_OK, OUTCOME_FRAUD, NO_DECISION, DROPPED = range(5)
# Seat status (VerifierCourt.seat_of)
SEATED, COMMITTED_VOTE, REVEALED_OK, REVEALED_FRAUD, NO_PROOF = range(5)


def fund(system, *accounts, stake: int = 0) -> None:
    """Mint tokens to each account, approve market, stake manager and registry; optionally stake."""
    for acct in accounts:
        system.token.mint(acct, MINT, sender=acct)
        system.token.approve(system.market, 2**256 - 1, sender=acct)
        system.token.approve(system.stake_manager, 2**256 - 1, sender=acct)
        system.token.approve(system.green_registry, 2**256 - 1, sender=acct)
        if stake:
            system.stake_manager.stake(stake, sender=acct)


def seat(system, *verifiers, seats: int = 1, dclass: bytes = DETERMINISM) -> None:
    """Fund each verifier, stake exactly what ``seats`` seats need and join the class pool."""
    for v in verifiers:
        fund(system, v, stake=seats * SEAT)
        system.court.join(dclass, seats, sender=v)


def post(market, requester, chain, **kw) -> int:
    """Post a job with sane defaults (override any argument by name); returns its id."""
    args = {
        "spec_hash": SPEC_HASH,
        "spec_uri": SPEC_URI,
        "num_segments": 8,
        "audit_samples": 4,
        "payment": PAYMENT,
        "verifier_fee": FEE,
        "collateral": COLLATERAL,
        "deadline": chain.pending_timestamp + 3_600,
        "min_green_bps": 0,
        "green_premium": 0,
    }
    args.update(kw)
    tx = market.post_job(*args.values(), sender=requester)
    # (ape's local provider re-runs the call for return_value: read the event)
    return int(tx.events.filter(market.JobPosted)[0].job_id)


@dataclass
class Run:
    """A fake training run: per boundary a state hash, cumulative energy,
    cumulative movement and work digest (``digests[0]`` is zero), with the
    seals and tree they commit to."""

    job_id: int
    hashes: list[bytes]
    energies: list[int]
    moves: list[int]
    digests: list[bytes]
    seals: list[bytes] = field(init=False)
    tree: MerkleTree = field(init=False)

    def __post_init__(self) -> None:
        self.seals = [boundary0_seal(self.job_id)] + [
            seal(self.job_id, k, d) for k, d in enumerate(self.digests) if k > 0
        ]
        self.tree = commitment_tree(self.job_id, self.hashes, self.energies, self.moves, self.seals)

    @property
    def num_segments(self) -> int:
        return len(self.hashes) - 1

    @property
    def final_hash(self) -> bytes:
        return self.hashes[-1]

    @property
    def energy(self) -> int:
        return self.energies[-1]

    @property
    def move(self) -> int:
        return self.moves[-1]

    def opening(self, index: int) -> tuple:
        """The ``Opening`` struct (as a tuple) for segment ``index``."""
        return (
            index,
            self.hashes[index],
            self.energies[index],
            self.moves[index],
            self.seals[index],
            self.hashes[index + 1],
            self.energies[index + 1],
            self.moves[index + 1],
            self.seals[index + 1],
            self.tree.proof(index),
            self.tree.proof(index + 1),
        )

    def replay(self, indices) -> list[bytes]:
        """The digests an honest replay of the audited segments shows (ok-vote proof)."""
        return [self.digests[k + 1] for k in unique(indices)]


def make_run(job_id: int, num_segments: int, *, energy_step: int = 3_600_000, move_step: int = 1_000,
             moves: list[int] | None = None, salt: bytes = b"") -> Run:
    """A run whose segments each moved ``move_step`` (or the cumulative ``moves`` given)."""
    hashes = [keccak(b"state" + salt + abi_encode(["uint256", "uint256"], [job_id, k])) for k in range(num_segments + 1)]
    energies = [k * energy_step for k in range(num_segments + 1)]
    digests = [ZERO32] + [keccak(b"losses" + salt + abi_encode(["uint256", "uint256"], [job_id, k])) for k in range(1, num_segments + 1)]
    if moves is None:
        moves = [k * move_step for k in range(num_segments + 1)]
    return Run(job_id, hashes, energies, list(moves), digests)


def unique(indices) -> list[int]:
    return sorted({int(i) for i in indices})


def accept_and_commit(market, provider, job_id: int, run: Run, dclass: bytes = DETERMINISM) -> None:
    market.accept_job(job_id, dclass, sender=provider)
    market.commit_result(job_id, run.tree.root, run.final_hash, run.energy, run.move, RESULT_URI, sender=provider)


def draw(market, chain, job_id: int, anyone, run: Run | None = None) -> list[int]:
    """Mine past the seed block and draw; returns the uniform samples' indices and,
    given the ``run``, the segments whose movement brackets hold the movement samples."""
    job = market.get_job(job_id)
    while chain.blocks.head.number < job.seed_block:
        chain.mine(1)
    tx = market.draw_audit(job_id, sender=anyone)
    ev = tx.events.filter(market.AuditDrawn)[0]
    out = [int(i) for i in ev.indices]
    if ev.targets:
        assert run is not None, "draw: movement samples need the run to map them to segments"
        out += [segment_of_target(run.moves, int(u)) for u in ev.targets]
    return out


def to_voting(market, chain, provider, job_id: int, run: Run, anyone, dclass: bytes = DETERMINISM) -> list[int]:
    """Accept, commit, draw and open every audited segment (one batch): job is VOTING."""
    accept_and_commit(market, provider, job_id, run, dclass)
    indices = draw(market, chain, job_id, anyone, run)
    market.open_segments(job_id, [run.opening(i) for i in unique(indices)], sender=provider)
    return indices


def salt_of(voter, job_id: int = 0, rnd: int = 0) -> bytes:
    return keccak(b"salt" + bytes.fromhex(str(voter.address)[2:]) + abi_encode(["uint256", "uint256"], [job_id, rnd]))


def set_code(chain, address: str, code: bytes) -> None:
    """Put ``code`` at ``address`` on ape's in-process chain (py-evm): ape's test provider
    has no ``set_code``, so write it into the pending block's state, which the next
    transaction or mined block builds on (and a snapshot restore rolls back)."""
    from eth_utils import to_canonical_address

    backend = chain.provider.evm_backend
    vm = backend.chain.get_vm()
    vm.state.set_code(to_canonical_address(address), code)
    vm.state.persist()
    backend.chain.header = backend.chain.header.copy(state_root=vm.state.state_root)


def warp(chain, seconds: int) -> None:
    """Move time forward by ``seconds`` (mines one block at the new time)."""
    chain.mine(1, timestamp=chain.pending_timestamp + seconds)


def warp_to(chain, timestamp: int) -> None:
    chain.mine(1, timestamp=max(timestamp, chain.pending_timestamp))


def to_reveal(court, chain, job_id: int) -> None:
    warp_to(chain, court.case_of(job_id).commit_end)


def to_decide(court, chain, job_id: int) -> None:
    warp_to(chain, court.case_of(job_id).reveal_end)


def seats_of(court, job_id: int, voters, rnd: int | None = None) -> dict:
    """``{voter: seats}`` of the voters seated in round ``rnd`` (default: the current one)."""
    if rnd is None:
        rnd = int(court.case_of(job_id).round)
    out = {}
    for v in voters:
        n = int(court.seat_of(job_id, rnd, v).seats)
        if n:
            out[v] = n
    return out


@dataclass
class Ballot:
    """How one seated voter behaves in a round: ``fraud`` or ok with ``digests``;
    ``reveal=False`` commits and never reveals; ``commit=False`` does nothing."""

    fraud: bool = False
    digests: list[bytes] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)
    commit: bool = True
    reveal: bool = True


def ok(run: Run, indices) -> Ballot:
    """An honest ok vote: the replayed digests of the audited segments."""
    return Ballot(False, run.replay(indices), unique(indices))


def lazy() -> Ballot:
    """An ok vote without having replayed (wrong digests)."""
    return Ballot(False, [keccak(b"made up")])


def fraud() -> Ballot:
    return Ballot(True, [])


def no_show() -> Ballot:
    return Ballot(commit=False, reveal=False)


def vote(court, chain, job_id: int, ballots: dict) -> None:
    """Commit every ballot of the current round, move to its reveal window, reveal."""
    rnd = int(court.case_of(job_id).round)
    for voter, b in ballots.items():
        if b.commit:
            c = vote_commitment(job_id, str(voter.address), b.fraud, salt_of(voter, job_id, rnd), b.digests)
            court.commit_vote(job_id, c, sender=voter)
    to_reveal(court, chain, job_id)
    for voter, b in ballots.items():
        if b.commit and b.reveal:
            court.reveal_vote(job_id, b.fraud, salt_of(voter, job_id, rnd), b.digests, b.segments, sender=voter)


def decide(market, court, chain, job_id: int, anyone):
    """Move past the round's reveal window and finalize; returns the receipt."""
    to_decide(court, chain, job_id)
    return market.finalize(job_id, sender=anyone)


def held(system) -> int:
    """Tokens held by the protocol contracts (the court never holds any)."""
    t = system.token
    assert t.balanceOf(system.court) == 0
    return t.balanceOf(system.market) + t.balanceOf(system.stake_manager) + t.balanceOf(system.green_registry)


def allow(system, owner, allocator, requester, amount: int) -> None:
    """Make ``allocator`` an allocator (once) and grant ``requester`` an allowance of ``amount``
    bonus on the pool (the only way a job draws a green bonus)."""
    registry = system.green_registry
    if not registry.is_allocator(allocator):
        registry.add_allocator(allocator, sender=owner)
    registry.grant_allowance(requester, amount, sender=allocator)


def attest(system, chain, owner, attestor, provider, *, green_bps: int, carbon: int = 50) -> None:
    """Register ``attestor`` and submit its EIP-712 attestation that ``provider`` is ``green_bps`` green.

    Signed with ``greenproof.attestation`` (the `greenproof attestor sign` code path).
    """
    from eth_account import Account

    from greenproof.attestation import sign_attestation

    registry = system.green_registry
    if not registry.is_attestor(attestor):
        registry.add_attestor(attestor, sender=owner)
    now = chain.pending_timestamp
    signed = sign_attestation(
        Account.from_key(attestor.private_key), str(registry.address), chain.chain_id,
        provider=str(provider.address), green_bps=green_bps, carbon_g_per_kwh=carbon,
        region="EU-DE", valid_from=now - 60, valid_until=now + 30 * 86_400,
        nonce=int(registry.nonce_of(provider, attestor)) + 1,
    )
    registry.submit_attestation(*signed.submit_args(), sender=attestor)
