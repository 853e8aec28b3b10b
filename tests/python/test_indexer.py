"""The indexer's reducer: a day in the market and its court, told as the contracts' events,
folds into the right views."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from greenproof.chain.models import (
    AuditDrawn,
    CaseDecided,
    CaseOpened,
    CourtVotingStarted,
    Event,
    JobAccepted,
    JobCancelled,
    JobExpired,
    JobFinalized,
    JobPosted,
    PoolJoined,
    PoolLeft,
    PotFixed,
    ProviderSlashed,
    ResultCommitted,
    SeatsDrawn,
    SeatSettled,
    SegmentOpened,
    VoteCommitted,
    VoteRevealed,
    Withdrawn,
)
from greenproof.indexer import CaseOutcome, JobState, MarketIndex

REQUESTER, HONEST, CHEATER = "0xRequester", "0xHonestProvider", "0xCheater"
VERIFIER_A, VERIFIER_B = "0xVerifierA", "0xVerifierB"
CLASS = b"\x01" * 32
CLASS_HEX = "0x" + "01" * 32
TOKEN = 10**18
SEAT_STAKE = 100 * TOKEN
NOSHOW_PENALTY = SEAT_STAKE * 2_000 // 10_000
PAID, SLASHED = 6, 7  # JobMarket's STATE_* values, as JobFinalized.outcome carries them
OK, FRAUD, NO_DECISION, DROPPED = 1, 2, 3, 4  # VerifierCourt's OUTCOME_* values


def ev(cls: type[Event], block: int, **args: Any) -> tuple[Event, int]:
    """An event as the gateway decodes it, with its block's timestamp."""
    return cls(block_number=block, log_index=0, tx_hash="0x" + "00" * 32, **args), 1_000 + block


def posted(job_id: int, block: int, min_green_bps: int = 0) -> tuple[Event, int]:
    return ev(
        JobPosted, block, job_id=job_id, requester=REQUESTER, spec_hash=b"\x11" * 32,
        spec_uri="data:application/json,{}", num_segments=4, audit_samples=2,
        payment=100 * TOKEN, verifier_fee=5 * TOKEN, collateral=50 * TOKEN,
        deadline=10_000, min_green_bps=min_green_bps, green_premium=0,
    )


def accepted(job_id: int, block: int, provider: str) -> tuple[Event, int]:
    return ev(JobAccepted, block, job_id=job_id, provider=provider, determinism_class=CLASS,
              collateral=50 * TOKEN)


def committed(job_id: int, block: int, provider: str, energy_mj: int) -> tuple[Event, int]:
    return ev(ResultCommitted, block, job_id=job_id, provider=provider, root=b"\xaa" * 32,
              final_state_hash=b"\xbb" * 32, energy_mj=energy_mj, move_total=0, green_bps=0,
              result_uri="http://127.0.0.1:9001/artifacts", seed_block=block + 1, draw_deadline=9_999)


def joined(block: int, member: str, seats: int, member_seats: int, pool_seats: int) -> tuple[Event, int]:
    return ev(PoolJoined, block, dclass=CLASS, member=member, seats=seats,
              member_seats=member_seats, pool_seats=pool_seats)


def case_opened(job_id: int, block: int) -> tuple[Event, int]:
    return ev(CaseOpened, block, job_id=job_id, dclass=CLASS, committee_size=3, max_rounds=3,
              commit_window=60, reveal_window=30, voter_slash_bps=1_000, noshow_slash_bps=2_000)


def drawn(job_id: int, block: int, round: int, *voters: str) -> tuple[Event, int]:
    return ev(SeatsDrawn, block, job_id=job_id, round=round, voters=list(voters))


def voting(job_id: int, block: int, round: int = 0) -> tuple[Event, int]:
    return ev(CourtVotingStarted, block, job_id=job_id, round=round, commit_end=1_000 + block + 60,
              reveal_end=1_000 + block + 90)


def vote(job_id: int, block: int, voter: str, seats: int, round: int = 0) -> tuple[Event, int]:
    return ev(VoteCommitted, block, job_id=job_id, voter=voter, round=round, seats=seats)


def reveal(job_id: int, block: int, voter: str, seats: int, *, fraud: bool, counted: bool = True,
           round: int = 0) -> tuple[Event, int]:
    return ev(VoteRevealed, block, job_id=job_id, voter=voter, round=round, fraud=fraud,
              counted=counted, seats=seats)


def decided(job_id: int, block: int, outcome: int, drawn_seats: int, ok: int, fraud: int,
            round: int = 0) -> tuple[Event, int]:
    return ev(CaseDecided, block, job_id=job_id, round=round, outcome=outcome,
              drawn_seats=drawn_seats, ok_seats=ok, fraud_seats=fraud)


def settled(job_id: int, block: int, voter: str, seats: int, reward: int = 0, penalty: int = 0,
            round: int = 0) -> tuple[Event, int]:
    return ev(SeatSettled, block, job_id=job_id, voter=voter, round=round, seats=seats,
              reward=reward, penalty=penalty)


def story() -> MarketIndex:
    """Two verifiers join the class pool with two seats each. The honest job's committee is
    A, B, A: A proves its ok replay, B reveals ok without the digests (a no-show). The
    cheater's committee is B, A, B: both vote fraud."""
    index = MarketIndex()
    index.apply_all([
        joined(5, VERIFIER_A, 2, 2, 2),
        joined(6, VERIFIER_B, 2, 2, 4),
        posted(1, 10, min_green_bps=5000),
        posted(2, 11),
        posted(3, 12),
        accepted(1, 13, HONEST),
        accepted(2, 14, CHEATER),
        ev(JobCancelled, 15, job_id=3, refund=105 * TOKEN),
        committed(1, 20, HONEST, 7_200_000),
        committed(2, 21, CHEATER, 3_600_000),
        ev(AuditDrawn, 25, job_id=1, seed=b"\x05" * 32, indices=[0, 3], targets=[], open_deadline=2_000),
        case_opened(1, 25),
        drawn(1, 25, 0, VERIFIER_A, VERIFIER_B, VERIFIER_A),
        ev(SegmentOpened, 26, job_id=1, index=0, start_hash=b"\x00" * 32, start_energy_mj=0,
           start_move=0, start_seal=b"\x0a" * 32, end_hash=b"\x01" * 32, end_energy_mj=1_800_000,
           end_move=500, end_seal=b"\x0b" * 32),
        voting(1, 27),
        vote(1, 30, VERIFIER_A, 2),
        vote(1, 30, VERIFIER_B, 1),
        reveal(1, 35, VERIFIER_A, 2, fraud=False),
        reveal(1, 35, VERIFIER_B, 1, fraud=False, counted=False),
        decided(1, 40, OK, 3, 2, 0),
        ev(PotFixed, 40, job_id=1, pot=5 * TOKEN, winning_seats=2, reward_per_seat=5 * TOKEN // 2,
           remainder=0),
        ev(JobFinalized, 40, job_id=1, outcome=PAID, paid=100 * TOKEN, bonus=20 * TOKEN,
           premium=0, energy_mj=7_200_000, carbon_mg=0),
        settled(1, 41, VERIFIER_A, 2, reward=5 * TOKEN),
        settled(1, 41, VERIFIER_B, 1, penalty=NOSHOW_PENALTY),
        ev(AuditDrawn, 42, job_id=2, seed=b"\x06" * 32, indices=[1, 1], targets=[], open_deadline=2_000),
        case_opened(2, 42),
        drawn(2, 42, 0, VERIFIER_B, VERIFIER_A, VERIFIER_A),
        voting(2, 43),
        vote(2, 44, VERIFIER_A, 2),
        vote(2, 44, VERIFIER_B, 1),
        reveal(2, 46, VERIFIER_A, 2, fraud=True),
        reveal(2, 46, VERIFIER_B, 1, fraud=True),
        decided(2, 50, FRAUD, 3, 0, 3),
        ev(ProviderSlashed, 50, job_id=2, provider=CHEATER, amount=50 * TOKEN, reason="fraud"),
        ev(PotFixed, 50, job_id=2, pot=25 * TOKEN, winning_seats=3, reward_per_seat=25 * TOKEN // 3,
           remainder=25 * TOKEN % 3),
        ev(JobFinalized, 50, job_id=2, outcome=SLASHED, paid=0, bonus=0, premium=0, energy_mj=0, carbon_mg=0),
        settled(2, 51, VERIFIER_A, 2, reward=2 * (25 * TOKEN // 3)),
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
    assert honest_job.opened[0]["end_seal"] == "0x" + "0b" * 32
    assert honest_job.opened[0]["end_energy_mj"] == 1_800_000
    assert honest_job.wall_s == 30.0
    assert [t.event for t in honest_job.timeline][:2] == ["JobPosted", "JobAccepted"]
    assert ("VotingStarted", "round 0") in [(t.event, t.detail) for t in honest_job.timeline]
    assert snap.stats.jobs_by_state == {"PAID": 1, "SLASHED": 1, "CANCELLED": 1}
    assert snap.stats.total_slashed == 50 * TOKEN
    assert snap.stats.escrow_posted == 0


def test_a_job_votes_once_its_court_round_starts() -> None:
    index = MarketIndex()
    index.apply_all([posted(1, 1), accepted(1, 2, HONEST), committed(1, 3, HONEST, 1),
                     ev(AuditDrawn, 4, job_id=1, seed=b"\x05" * 32, indices=[0], targets=[], open_deadline=9),
                     case_opened(1, 4), drawn(1, 4, 0, VERIFIER_A)])
    assert index.snapshot().jobs[0].state is JobState.AUDITING
    index.apply(*voting(1, 5))
    job = index.snapshot().jobs[0]
    assert job.state is JobState.VOTING
    assert job.rounds[0].reveal_end == 1_095


def test_providers_carry_pay_bonus_energy_and_slashes() -> None:
    providers = {p.address: p for p in story().snapshot().providers}
    honest, cheater = providers[HONEST], providers[CHEATER]
    assert (honest.jobs_paid, honest.earned, honest.bonus) == (1, 100 * TOKEN, 20 * TOKEN)
    assert honest.energy_mj == 7_200_000 and honest.slashed_amount == 0
    assert (cheater.jobs_paid, cheater.jobs_slashed, cheater.slashed_amount) == (0, 1, 50 * TOKEN)
    assert cheater.earned == 0
    assert cheater.energy_mj == 3_600_000  # the committed claim, though the slash event says 0


def test_a_case_shows_its_committee_votes_decision_and_settlements() -> None:
    job = story().snapshot().job(1)
    assert job is not None and job.case is not None
    case = job.case
    assert (case.dclass, case.committee_size, case.outcome, case.decided_round) == (
        CLASS_HEX, 3, CaseOutcome.OK, 0)
    (rnd,) = case.rounds
    assert rnd.drawn_seats == 3
    assert [(s.voter, s.seats) for s in rnd.seats] == [(VERIFIER_A, 2), (VERIFIER_B, 1)]
    a, b = rnd.seats
    assert (a.vote, a.result, a.reward, a.penalty) == ("ok", "won", 5 * TOKEN, 0)
    # an ok vote without the work digests counts as a no-show and pays the no-show penalty
    assert (b.vote, b.counted, b.result, b.penalty) == ("ok without proof", False, "no-show",
                                                        NOSHOW_PENALTY)
    assert (rnd.ok_seats, rnd.fraud_seats) == (2, 0)
    assert (case.pot, case.winning_seats, case.reward_per_seat) == (5 * TOKEN, 2, 5 * TOKEN // 2)


def test_a_slashing_committee_and_a_seat_not_yet_settled() -> None:
    job = story().snapshot().job(2)
    assert job is not None and job.case is not None
    assert job.case.outcome is CaseOutcome.FRAUD
    seats = {s.voter: s for s in job.rounds[0].seats}
    assert seats[VERIFIER_A].result == seats[VERIFIER_B].result == "won"
    assert seats[VERIFIER_A].settled and not seats[VERIFIER_B].settled
    assert job.case.remainder == 25 * TOKEN % 3


def test_verifiers_count_seats_votes_results_and_money() -> None:
    verifiers = {v.address: v for v in story().snapshot().verifiers}
    a, b = verifiers[VERIFIER_A], verifiers[VERIFIER_B]
    assert (a.seats_drawn, a.votes_committed, a.votes_revealed, a.ok_votes, a.fraud_votes) == (4, 2, 2, 1, 1)
    assert (a.won, a.lost, a.no_shows, a.penalties) == (2, 0, 0, 0)
    assert a.rewards == 5 * TOKEN + 2 * (25 * TOKEN // 3)
    assert (b.seats_drawn, b.unproven_votes, b.fraud_votes, b.won, b.no_shows) == (2, 1, 1, 1, 1)
    assert (b.rewards, b.penalties) == (0, NOSHOW_PENALTY)


def test_pools_follow_joins_draws_settlements_and_penalised_seats() -> None:
    snap = story().snapshot()
    (pool,) = snap.pools
    members = {m.address: m for m in pool.members}
    # B's no-show seat left the pool with its penalty; B's seat on job 2 is still busy
    assert (members[VERIFIER_A].seats, members[VERIFIER_A].busy_seats) == (2, 0)
    assert (members[VERIFIER_B].seats, members[VERIFIER_B].busy_seats) == (1, 1)
    assert (pool.seats, pool.busy_seats) == (3, 1)
    assert (snap.stats.pools, snap.stats.pool_seats) == (1, 3)
    verifiers = {v.address: v for v in snap.verifiers}
    assert (verifiers[VERIFIER_A].pool_seats, verifiers[VERIFIER_B].pool_seats) == (2, 1)

    index = story()
    index.apply(*ev(PoolLeft, 60, dclass=CLASS, member=VERIFIER_A, seats=2, member_seats=0,
                    pool_seats=1))
    (pool,) = index.snapshot().pools
    assert [m.address for m in pool.members] == [VERIFIER_B] and pool.seats == 1


def test_an_undecided_round_draws_a_larger_one_and_only_its_no_shows_pay() -> None:
    """Round 0 splits 1-1 with a no-show: round 1 (7 seats) decides OK. Round 0's revealers get
    neither reward nor penalty, its no-show is penalised."""
    c = "0xVerifierC"
    index = MarketIndex()
    index.apply_all([
        posted(1, 1), accepted(1, 2, HONEST), committed(1, 3, HONEST, 1),
        case_opened(1, 4), drawn(1, 4, 0, VERIFIER_A, VERIFIER_B, c), voting(1, 5),
        vote(1, 6, VERIFIER_A, 1), vote(1, 6, VERIFIER_B, 1),
        reveal(1, 7, VERIFIER_A, 1, fraud=False), reveal(1, 7, VERIFIER_B, 1, fraud=True),
        drawn(1, 8, 1, *[VERIFIER_A] * 4, *[VERIFIER_B] * 3), voting(1, 8, round=1),
        vote(1, 9, VERIFIER_A, 4, round=1), vote(1, 9, VERIFIER_B, 3, round=1),
        reveal(1, 10, VERIFIER_A, 4, fraud=False, round=1),
        reveal(1, 10, VERIFIER_B, 3, fraud=True, round=1),
        decided(1, 11, OK, 7, 4, 3, round=1),
    ])
    job = index.snapshot().job(1)
    assert job is not None and job.case is not None
    assert job.state is JobState.VOTING  # JobFinalized comes in the same transaction, after
    r0, r1 = job.rounds
    assert [s.result for s in r0.seats] == ["neutral", "neutral", "no-show"]
    assert [(s.voter, s.seats, s.result) for s in r1.seats] == [(VERIFIER_A, 4, "won"),
                                                                (VERIFIER_B, 3, "lost")]
    assert (r1.commit_end, job.case.decided_round) == (1_068, 1)


def test_no_decision_and_a_dropped_case() -> None:
    index = MarketIndex()
    index.apply_all([
        case_opened(1, 1), drawn(1, 1, 0, VERIFIER_A), voting(1, 2),
        vote(1, 3, VERIFIER_A, 1), reveal(1, 4, VERIFIER_A, 1, fraud=True),
        decided(1, 5, NO_DECISION, 3, 0, 1),
        case_opened(2, 6), drawn(2, 6, 0, VERIFIER_B),
        ev(ProviderSlashed, 9, job_id=2, provider=CHEATER, amount=TOKEN, reason="unopened"),
        decided(2, 9, DROPPED, 1, 0, 0),
    ])
    snap = index.snapshot()
    no_decision, dropped = snap.job(1), snap.job(2)
    assert no_decision is not None and dropped is not None
    assert no_decision.rounds[0].seats[0].result == "neutral"
    assert dropped.state is JobState.SLASHED and dropped.rounds[0].seats[0].result == "dropped"
    # the court paid job 1 optimistically: no seat proved a replay, so it is flagged unaudited
    index.apply(*ev(JobFinalized, 10, job_id=1, outcome=PAID, paid=TOKEN, bonus=0, premium=0,
                    energy_mj=1, carbon_mg=0))
    assert index.snapshot().job(1).unaudited
    assert not dropped.unaudited


def test_a_job_paid_on_counted_ok_votes_is_audited() -> None:
    paid = story().snapshot().job(1)
    assert paid is not None and paid.state is JobState.PAID and paid.rounds[0].ok_seats > 0
    assert not paid.unaudited


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
    index.apply(*vote(8, 7, VERIFIER_A, 2))  # a case opened before the indexed range
    snap = index.snapshot()
    assert [j.job_id for j in snap.jobs] == [7, 8]
    assert snap.jobs[0].state is JobState.ACCEPTED
    assert [(s.voter, s.seats, s.vote) for s in snap.jobs[1].rounds[0].seats] == [
        (VERIFIER_A, 2, "sealed")]
    assert snap.block == 7


def test_a_renamed_event_field_fails_loudly_instead_of_folding_in_a_default() -> None:
    with pytest.raises(ValidationError, match="voter"):
        VoteCommitted(block_number=1, log_index=0, tx_hash="0x", job_id=1, verifier=VERIFIER_A,
                      round=0, seats=1)


def test_indexer_merges_both_contracts_events_in_chain_order() -> None:
    """The court's VotingStarted sits between the market's events of the same block by log index."""
    from types import SimpleNamespace

    from greenproof.indexer import Indexer

    def at(item: tuple[Event, int], log_index: int) -> Event:
        return item[0].model_copy(update={"log_index": log_index})

    market = [at(posted(1, 3), 0), at(accepted(1, 3, HONEST), 1), at(committed(1, 4, HONEST, 1), 0),
              at(ev(AuditDrawn, 5, job_id=1, seed=b"\x05" * 32, indices=[0], targets=[], open_deadline=9), 0)]
    court = [at(case_opened(1, 5), 1), at(drawn(1, 5, 0, VERIFIER_A), 2)]
    chain = SimpleNamespace(block_number=lambda: 5, timestamp=lambda block: 1_000 + block)
    gateway = SimpleNamespace(
        deployment=SimpleNamespace(deployment_block=0), chain=chain,
        market_events=lambda lo, hi: market, court_events=lambda lo, hi: court,
    )
    indexer = Indexer(gateway)  # type: ignore[arg-type]
    assert indexer.refresh() == 6
    job = indexer.index.snapshot().jobs[0]
    assert [t.event for t in job.timeline] == ["JobPosted", "JobAccepted", "ResultCommitted",
                                               "AuditDrawn", "CaseOpened", "SeatsDrawn"]
    assert job.state is JobState.AUDITING and job.rounds[0].seats[0].voter == VERIFIER_A


def test_indexer_starts_at_the_manifest_deployment_block() -> None:
    """A testnet indexer must not rescan from genesis: it starts where the contracts were deployed."""
    from types import SimpleNamespace

    from greenproof.chain.manifest import Deployment
    from greenproof.indexer import Indexer

    deployment = Deployment(chain_id=31337, token="0x" + "11" * 20, stake_manager="0x" + "22" * 20,
                            green_registry="0x" + "33" * 20, job_market="0x" + "44" * 20,
                            verifier_court="0x" + "66" * 20, audit_rules="0x" + "77" * 20,
                            deployment_block=4_242, deployer="0x" + "55" * 20)
    gateway = SimpleNamespace(deployment=deployment)
    assert Indexer(gateway).next_block == 4_242  # type: ignore[arg-type]
    assert Indexer(gateway, from_block=7).next_block == 7  # type: ignore[arg-type]
