"""The indexer's reducer: a day in the market, told as events, folds into the right views."""

from __future__ import annotations

from greenproof.indexer import ChainEvent, JobState, MarketIndex

REQUESTER, HONEST, CHEATER = "0xRequester", "0xHonestProvider", "0xCheater"
VERIFIER_A, VERIFIER_B = "0xVerifierA", "0xVerifierB"
TOKEN = 10**18


def ev(name: str, block: int, **args: object) -> ChainEvent:
    return ChainEvent(name=name, args=args, block=block, timestamp=1_000 + block)


def posted(job_id: int, block: int, **kw: object) -> ChainEvent:
    return ev(
        "JobPosted", block, job_id=job_id, requester=REQUESTER, spec_hash=b"\x11" * 32,
        spec_uri="data:application/json,{}", num_segments=4, audit_samples=2,
        payment=100 * TOKEN, verifier_fee=5 * TOKEN, collateral=50 * TOKEN,
        deadline=10_000, min_green_bps=kw.get("min_green_bps", 0),
    )


def story() -> MarketIndex:
    index = MarketIndex()
    index.apply_all([
        posted(1, 10, min_green_bps=5000),
        posted(2, 11),
        posted(3, 12),
        ev("JobAccepted", 13, job_id=1, provider=HONEST, determinism_class=b"\x01" * 32),
        ev("JobAccepted", 14, job_id=2, provider=CHEATER, determinism_class=b"\x02" * 32),
        ev("JobCancelled", 15, job_id=3),
        ev("ResultCommitted", 20, job_id=1, root=b"\xaa" * 32, final_state_hash=b"\xbb" * 32,
           energy_mj=7_200_000, result_uri="http://127.0.0.1:9001/artifacts"),
        ev("ResultCommitted", 21, job_id=2, root=b"\xcc" * 32, final_state_hash=b"\xdd" * 32,
           energy_mj=3_600_000, result_uri="http://127.0.0.1:9002/artifacts"),
        ev("AuditDrawn", 25, job_id=1, indices=[0, 3]),
        ev("AuditDrawn", 25, job_id=2, indices=[1, 1]),
        ev("SegmentOpened", 26, job_id=1, index=0, start_hash=b"\x00" * 32, end_hash=b"\x01" * 32),
        ev("VoteCommitted", 30, job_id=1, verifier=VERIFIER_A, vote_stake=10 * TOKEN),
        ev("VoteCommitted", 30, job_id=2, verifier=VERIFIER_A, vote_stake=10 * TOKEN),
        ev("VoteCommitted", 31, job_id=2, verifier=VERIFIER_B, vote_stake=10 * TOKEN),
        ev("VoteRevealed", 35, job_id=1, verifier=VERIFIER_A, fraud=False),
        ev("VoteRevealed", 35, job_id=2, verifier=VERIFIER_A, fraud=True),
        ev("VoteRevealed", 36, job_id=2, verifier=VERIFIER_B, fraud=True),
        ev("JobFinalized", 40, job_id=1, outcome=6, paid=100 * TOKEN, bonus=20 * TOKEN,
           energy_mj=7_200_000, carbon_g=0),
        ev("ProviderSlashed", 41, job_id=2, provider=CHEATER, amount=50 * TOKEN, reason="fraud"),
        ev("JobFinalized", 41, job_id=2, outcome=7, paid=0, bonus=0, energy_mj=0, carbon_g=0),
        ev("VoteSettled", 42, job_id=2, verifier=VERIFIER_B, reward=12 * TOKEN, penalty=0),
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


def test_an_expired_job_counts_as_expired_not_slashed() -> None:
    index = MarketIndex()
    index.apply_all([
        posted(1, 1),
        ev("JobAccepted", 2, job_id=1, provider=CHEATER),
        ev("ProviderSlashed", 9, job_id=1, provider=CHEATER, amount=50 * TOKEN, reason="expired"),
        ev("JobExpired", 9, job_id=1, slashed=50 * TOKEN),
    ])
    snap = index.snapshot()
    assert snap.jobs[0].state is JobState.EXPIRED
    (cheater,) = snap.providers
    assert (cheater.jobs_expired, cheater.jobs_slashed, cheater.slashed_amount) == (1, 0, 50 * TOKEN)


def test_unknown_events_and_orphans_do_not_break_the_index() -> None:
    index = MarketIndex()
    index.apply(ev("SomethingNew", 5, job_id=9))
    index.apply(ev("JobAccepted", 6, job_id=7, provider=HONEST))
    snap = index.snapshot()
    assert [j.job_id for j in snap.jobs] == [7]
    assert snap.jobs[0].state is JobState.ACCEPTED
    assert snap.block == 6


def test_indexer_from_a_chain_starts_at_the_manifest_deployment_block():
    """A testnet indexer must not rescan from genesis: it starts where the contracts were deployed."""
    from types import SimpleNamespace

    from greenproof.chain.manifest import Deployment
    from greenproof.indexer import Indexer

    market = SimpleNamespace(w3=None, address="0x" + "11" * 20, abi=[])
    assert "deployment_block" in Deployment.model_fields
    chain = SimpleNamespace(market=market, stake=None, registry=None,
                            deployment=SimpleNamespace(deployment_block=4_242))
    assert Indexer.from_chain(chain).next_block == 4_242
    assert Indexer.from_chain(chain, from_block=7).next_block == 7
