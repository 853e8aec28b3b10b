"""The indexer's reducer: a day in the market, told as the contract's events, folds into the right views."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from greenproof.chain.models import (
    AuditDrawn,
    Event,
    JobAccepted,
    JobCancelled,
    JobExpired,
    JobFinalized,
    JobPosted,
    ProviderSlashed,
    ResultCommitted,
    SegmentOpened,
    VoteCommitted,
    VoteRevealed,
    VoteSettled,
    Withdrawn,
)
from greenproof.indexer import JobState, MarketIndex

REQUESTER, HONEST, CHEATER = "0xRequester", "0xHonestProvider", "0xCheater"
VERIFIER_A, VERIFIER_B = "0xVerifierA", "0xVerifierB"
TOKEN = 10**18
PAID, SLASHED = 6, 7  # JobMarket's STATE_* values, as JobFinalized.outcome carries them


def ev(cls: type[Event], block: int, **args: Any) -> tuple[Event, int]:
    """An event as the gateway decodes it, with its block's timestamp."""
    return cls(block_number=block, log_index=0, tx_hash="0x" + "00" * 32, **args), 1_000 + block


def posted(job_id: int, block: int, min_green_bps: int = 0) -> tuple[Event, int]:
    return ev(
        JobPosted, block, job_id=job_id, requester=REQUESTER, spec_hash=b"\x11" * 32,
        spec_uri="data:application/json,{}", num_segments=4, audit_samples=2,
        payment=100 * TOKEN, verifier_fee=5 * TOKEN, collateral=50 * TOKEN,
        deadline=10_000, min_green_bps=min_green_bps,
    )


def accepted(job_id: int, block: int, provider: str) -> tuple[Event, int]:
    return ev(JobAccepted, block, job_id=job_id, provider=provider, determinism_class=b"\x01" * 32,
              collateral=50 * TOKEN)


def committed(job_id: int, block: int, provider: str, energy_mj: int) -> tuple[Event, int]:
    return ev(ResultCommitted, block, job_id=job_id, provider=provider, root=b"\xaa" * 32,
              final_state_hash=b"\xbb" * 32, energy_mj=energy_mj,
              result_uri="http://127.0.0.1:9001/artifacts", seed_block=block + 1)


def vote(job_id: int, block: int, voter: str) -> tuple[Event, int]:
    return ev(VoteCommitted, block, job_id=job_id, voter=voter, weight=10 * TOKEN)


def reveal(job_id: int, block: int, voter: str, fraud: bool) -> tuple[Event, int]:
    return ev(VoteRevealed, block, job_id=job_id, voter=voter, fraud=fraud, weight=10 * TOKEN)


def story() -> MarketIndex:
    index = MarketIndex()
    index.apply_all([
        posted(1, 10, min_green_bps=5000),
        posted(2, 11),
        posted(3, 12),
        accepted(1, 13, HONEST),
        accepted(2, 14, CHEATER),
        ev(JobCancelled, 15, job_id=3, refund=105 * TOKEN),
        committed(1, 20, HONEST, 7_200_000),
        committed(2, 21, CHEATER, 3_600_000),
        ev(AuditDrawn, 25, job_id=1, seed=b"\x05" * 32, indices=[0, 3], open_deadline=2_000),
        ev(AuditDrawn, 25, job_id=2, seed=b"\x06" * 32, indices=[1, 1], open_deadline=2_000),
        ev(SegmentOpened, 26, job_id=1, index=0, start_hash=b"\x00" * 32, start_energy_mj=0,
           end_hash=b"\x01" * 32, end_energy_mj=1_800_000),
        vote(1, 30, VERIFIER_A),
        vote(2, 30, VERIFIER_A),
        vote(2, 31, VERIFIER_B),
        reveal(1, 35, VERIFIER_A, fraud=False),
        reveal(2, 35, VERIFIER_A, fraud=True),
        reveal(2, 36, VERIFIER_B, fraud=True),
        ev(JobFinalized, 40, job_id=1, outcome=PAID, paid=100 * TOKEN, bonus=20 * TOKEN,
           energy_mj=7_200_000, carbon_g=0),
        ev(ProviderSlashed, 41, job_id=2, provider=CHEATER, amount=50 * TOKEN, reason="fraud"),
        ev(JobFinalized, 41, job_id=2, outcome=SLASHED, paid=0, bonus=0, energy_mj=0, carbon_g=0),
        ev(VoteSettled, 42, job_id=2, voter=VERIFIER_B, won=True, reward=12 * TOKEN, penalty=0),
    ])
    return index


def test_jobs_end_in_the_states_their_events_say() -> None:
    snap = story().snapshot()
    states = {j.job_id: j.state for j in snap.jobs}
    assert states == {1: JobState.PAID, 2: JobState.SLASHED, 3: JobState.CANCELLED}
    honest_job = snap.job(1)
    assert honest_job is not None
    assert honest_job.energy_wh == 2.0
    assert honest_job.audit_indices == [0, 3]
    assert honest_job.opened[0]["end_hash"] == "0x" + "01" * 32
    assert honest_job.opened[0]["end_energy_mj"] == 1_800_000
    assert honest_job.wall_s == 30.0
    assert [t.event for t in honest_job.timeline][:2] == ["JobPosted", "JobAccepted"]
    assert snap.stats.jobs_by_state == {"PAID": 1, "SLASHED": 1, "CANCELLED": 1}
    assert snap.stats.total_slashed == 50 * TOKEN
    assert snap.stats.escrow_posted == 0


def test_providers_carry_pay_bonus_energy_and_slashes() -> None:
    providers = {p.address: p for p in story().snapshot().providers}
    honest, cheater = providers[HONEST], providers[CHEATER]
    assert (honest.jobs_paid, honest.earned, honest.bonus) == (1, 100 * TOKEN, 20 * TOKEN)
    assert honest.energy_mj == 7_200_000 and honest.slashed_amount == 0
    assert (cheater.jobs_paid, cheater.jobs_slashed, cheater.slashed_amount) == (0, 1, 50 * TOKEN)
    assert cheater.earned == 0
    assert cheater.energy_mj == 3_600_000  # the committed claim, though the slash event says 0


def test_verifiers_count_votes_and_rewards() -> None:
    verifiers = {v.address: v for v in story().snapshot().verifiers}
    a, b = verifiers[VERIFIER_A], verifiers[VERIFIER_B]
    assert (a.votes_committed, a.votes_revealed, a.fraud_votes, a.ok_votes) == (2, 2, 1, 1)
    assert (b.votes_committed, b.fraud_votes, b.rewards) == (1, 1, 12 * TOKEN)
    job = story().snapshot().job(2)
    assert job is not None and [v.weight for v in job.votes] == [10 * TOKEN, 10 * TOKEN]


def test_an_expired_job_counts_as_expired_not_slashed() -> None:
    index = MarketIndex()
    index.apply_all([
        posted(1, 1),
        accepted(1, 2, CHEATER),
        ev(ProviderSlashed, 9, job_id=1, provider=CHEATER, amount=50 * TOKEN, reason="expired"),
        ev(JobExpired, 9, job_id=1, slashed=50 * TOKEN),
    ])
    snap = index.snapshot()
    assert snap.jobs[0].state is JobState.EXPIRED
    (cheater,) = snap.providers
    assert (cheater.jobs_expired, cheater.jobs_slashed, cheater.slashed_amount) == (1, 0, 50 * TOKEN)


def test_events_of_no_job_and_orphans_do_not_break_the_index() -> None:
    index = MarketIndex()
    index.apply(*ev(Withdrawn, 5, account=HONEST, amount=TOKEN))
    index.apply(*accepted(7, 6, HONEST))
    snap = index.snapshot()
    assert [j.job_id for j in snap.jobs] == [7]
    assert snap.jobs[0].state is JobState.ACCEPTED
    assert snap.block == 6


def test_a_renamed_event_field_fails_loudly_instead_of_folding_in_a_default() -> None:
    with pytest.raises(ValidationError, match="voter"):
        VoteCommitted(block_number=1, log_index=0, tx_hash="0x", job_id=1, verifier=VERIFIER_A,
                      weight=TOKEN)


def test_indexer_starts_at_the_manifest_deployment_block() -> None:
    """A testnet indexer must not rescan from genesis: it starts where the contracts were deployed."""
    from types import SimpleNamespace

    from greenproof.chain.manifest import Deployment
    from greenproof.indexer import Indexer

    deployment = Deployment(chain_id=31337, token="0x" + "11" * 20, stake_manager="0x" + "22" * 20,
                            green_registry="0x" + "33" * 20, job_market="0x" + "44" * 20,
                            deployment_block=4_242, deployer="0x" + "55" * 20)
    gateway = SimpleNamespace(deployment=deployment)
    assert Indexer(gateway).next_block == 4_242  # type: ignore[arg-type]
    assert Indexer(gateway, from_block=7).next_block == 7  # type: ignore[arg-type]
