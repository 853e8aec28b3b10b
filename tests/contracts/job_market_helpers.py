"""Story helpers for the JobMarket tests: fund actors, post, run, open, vote.

The Merkle side always comes from :mod:`greenproof.merkle` (the code the worker
uses), so every on-chain opening here is also a Python/Vyper agreement check.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_abi import encode as abi_encode
from eth_utils import keccak

from greenproof.merkle import MerkleTree, commitment_tree

TOKEN = 10**18
PAYMENT = 100 * TOKEN
FEE = 10 * TOKEN
COLLATERAL = 150 * TOKEN
PROVIDER_STAKE = 1_000 * TOKEN
VERIFIER_STAKE = 500 * TOKEN
MINT = 1_000_000 * TOKEN
SPEC_HASH = keccak(b"spec: mlp tiny")
SPEC_URI = "ipfs://spec-mlp-tiny"
RESULT_URI = "http://127.0.0.1:8765/artifacts"
DETERMINISM = keccak(b"cpu/x86_64/torch-2.13/fp32/deterministic")

# Job states (JobMarket.vy)
OPEN, ACCEPTED, COMMITTED, AUDITING, VOTING, PAID, SLASHED, CANCELLED, EXPIRED = range(1, 10)
# Vote status (vote_of)
VOTE_COMMITTED, VOTE_OK, VOTE_FRAUD = 1, 2, 3


def fund(system, *accounts, stake: int = 0) -> None:
    """Mint tokens to each account, approve market, stake manager and registry; optionally stake."""
    for acct in accounts:
        system.token.mint(acct, MINT, sender=acct)
        system.token.approve(system.market, 2**256 - 1, sender=acct)
        system.token.approve(system.stake_manager, 2**256 - 1, sender=acct)
        system.token.approve(system.green_registry, 2**256 - 1, sender=acct)
        if stake:
            system.stake_manager.stake(stake, sender=acct)


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
    }
    args.update(kw)
    tx = market.post_job(*args.values(), sender=requester)
    # (ape's local provider re-runs the call for return_value: read the event)
    return int(tx.events.filter(market.JobPosted)[0].job_id)


@dataclass
class Run:
    """A fake training run: one state hash and cumulative energy per boundary."""

    job_id: int
    hashes: list[bytes]
    energies: list[int]
    tree: MerkleTree = field(init=False)

    def __post_init__(self) -> None:
        self.tree = commitment_tree(self.job_id, self.hashes, self.energies)

    @property
    def num_segments(self) -> int:
        return len(self.hashes) - 1

    @property
    def final_hash(self) -> bytes:
        return self.hashes[-1]

    @property
    def energy(self) -> int:
        return self.energies[-1]

    def opening(self, index: int) -> tuple:
        """The ``Opening`` struct (as a tuple) for segment ``index``."""
        return (
            index,
            self.hashes[index],
            self.energies[index],
            self.hashes[index + 1],
            self.energies[index + 1],
            self.tree.proof(index),
            self.tree.proof(index + 1),
        )


def make_run(job_id: int, num_segments: int, *, energy_step: int = 3_600_000, salt: bytes = b"") -> Run:
    hashes = [keccak(b"state" + salt + abi_encode(["uint256", "uint256"], [job_id, k])) for k in range(num_segments + 1)]
    energies = [k * energy_step for k in range(num_segments + 1)]
    return Run(job_id, hashes, energies)


def unique(indices) -> list[int]:
    return sorted({int(i) for i in indices})


def accept_and_commit(market, provider, job_id: int, run: Run) -> None:
    market.accept_job(job_id, DETERMINISM, sender=provider)
    market.commit_result(job_id, run.tree.root, run.final_hash, run.energy, RESULT_URI, sender=provider)


def draw(market, chain, job_id: int, anyone) -> list[int]:
    """Mine past the seed block and draw; returns the audited indices."""
    job = market.get_job(job_id)
    while chain.blocks.head.number < job.seed_block:
        chain.mine(1)
    market.draw_audit(job_id, sender=anyone)
    return [int(i) for i in market.audit_indices(job_id)]


def to_voting(market, chain, provider, job_id: int, run: Run, anyone) -> list[int]:
    """Accept, commit, draw and open every audited segment (one batch): job is VOTING."""
    accept_and_commit(market, provider, job_id, run)
    indices = draw(market, chain, job_id, anyone)
    market.open_segments(job_id, [run.opening(i) for i in unique(indices)], sender=provider)
    return indices


def commitment(job_id: int, voter, fraud: bool, salt: bytes) -> bytes:
    return keccak(abi_encode(["uint256", "address", "bool", "bytes32"], [job_id, str(voter.address), fraud, salt]))


def salt_of(voter) -> bytes:
    return keccak(b"salt" + bytes.fromhex(str(voter.address)[2:]))


def warp(chain, seconds: int) -> None:
    """Move time forward by ``seconds`` (mines one block at the new time)."""
    chain.mine(1, timestamp=chain.pending_timestamp + seconds)


def to_reveal(market, chain, job_id: int) -> None:
    job = market.get_job(job_id)
    target = job.voting_start + market.vote_commit_window()
    chain.mine(1, timestamp=max(target, chain.pending_timestamp))


def to_finalize(market, chain, job_id: int) -> None:
    job = market.get_job(job_id)
    target = job.voting_start + market.vote_commit_window() + market.vote_reveal_window()
    chain.mine(1, timestamp=max(target, chain.pending_timestamp))


def vote(market, job_id: int, voters_fraud: dict, chain, *, reveal: set | None = None) -> None:
    """Commit every voter's vote, move to the reveal window, reveal those in ``reveal`` (default all)."""
    for voter, fraud in voters_fraud.items():
        market.commit_vote(job_id, commitment(job_id, voter, fraud, salt_of(voter)), sender=voter)
    to_reveal(market, chain, job_id)
    for voter, fraud in voters_fraud.items():
        if reveal is None or voter in reveal:
            market.reveal_vote(job_id, fraud, salt_of(voter), sender=voter)


def held(system) -> int:
    """Tokens held by the three protocol contracts."""
    t = system.token
    return t.balanceOf(system.market) + t.balanceOf(system.stake_manager) + t.balanceOf(system.green_registry)


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
        nonce=int(registry.nonce_of(provider)) + 1,
    )
    registry.submit_attestation(*signed.submit_args(), sender=attestor)
