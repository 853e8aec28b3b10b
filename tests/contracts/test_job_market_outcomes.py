"""JobMarket with its VerifierCourt: a full flow for every outcome, read as stories.

Every story ends by checking that no token was created or lost: what the
market holds equals what it still owes (claimables and pots), the court holds
nothing, and after everybody withdrew the market holds nothing.
"""

from __future__ import annotations

import ape
import pytest
from job_market_helpers import (
    CANCELLED,
    COLLATERAL,
    DETERMINISM,
    DROPPED,
    EXPIRED,
    FEE,
    NO_DECISION,
    NO_PROOF,
    OUTCOME_OK,
    PAID,
    PAYMENT,
    PROVIDER_STAKE,
    SEAT,
    SLASHED,
    TOKEN,
    VOTING,
    accept_and_commit,
    allow,
    attest,
    decide,
    draw,
    fraud,
    fund,
    lazy,
    make_run,
    no_show,
    ok,
    post,
    seat,
    seats_of,
    to_voting,
    vote,
    warp,
)

LOSER_PENALTY = SEAT * 1_000 // 10_000  # default voter_slash_bps
NO_SHOW_PENALTY = SEAT * 2_000 // 10_000  # default noshow_slash_bps
REQUESTER_SHARE = COLLATERAL * 5_000 // 10_000


@pytest.fixture(scope="module")
def s(system, requester, provider, verifier, verifier2, verifier3, stranger):
    fund(system, requester, stranger)
    fund(system, provider, stake=PROVIDER_STAKE)
    seat(system, verifier, verifier2, verifier3)  # one seat each: every committee of 3 is all of them
    return system


@pytest.fixture(scope="module")
def trio(verifier, verifier2, verifier3):
    return [verifier, verifier2, verifier3]


@pytest.fixture
def crowd(s, accounts, owner):
    """Five more verifiers with one seat each (so every seat of a round is a different voter)."""
    out = [accounts.generate_test_account() for _ in range(5)]
    for v in out:
        owner.transfer(v, 10**18)
    seat(s, *out)
    return out


def owed(s, *accounts) -> int:
    return sum(s.market.claimable(a) for a in accounts)


def withdraw_all(s, *accounts) -> None:
    for a in accounts:
        if s.market.claimable(a) > 0:
            s.market.withdraw(sender=a)


def settle_all(s, job, voters, rnd=0):
    return {v: s.court.settle(job, rnd, v, sender=v).events.filter(s.court.SeatSettled)[0] for v in voters}


def voting_job(s, chain, requester, provider, stranger, **kw):
    job = post(s.market, requester, chain, **kw)
    run = make_run(job, kw.get("num_segments", 8))
    indices = to_voting(s.market, chain, provider, job, run, stranger)
    return job, run, indices


def run_class(m, job):
    return m.get_job(job).determinism_class


def test_honest_job_pays_the_provider_and_shares_the_fee_by_seat(s, chain, requester, provider, stranger, trio):
    m, c, sm = s.market, s.court, s.stake_manager
    job, run, indices = voting_job(s, chain, requester, provider, stranger)
    assert seats_of(c, job, trio) == {v: 1 for v in trio}
    assert all(sm.locked(v) == SEAT for v in trio)
    vote(c, chain, job, {v: ok(run, indices) for v in trio})
    tx = decide(m, c, chain, job, stranger)
    assert m.job_state(job) == PAID
    ev = tx.events.filter(m.JobFinalized)[0]
    assert (ev.outcome, ev.paid, ev.bonus, ev.premium, ev.energy_mj) == (PAID, PAYMENT, 0, 0, run.energy)
    assert ev.carbon_mg == run.energy * 400 // 3_600_000 == 3_200  # 8 Wh at the default 400 g/kWh
    decided = tx.events.filter(c.CaseDecided)[0]
    assert (decided.outcome, decided.drawn_seats, decided.ok_seats, decided.fraud_seats) == (OUTCOME_OK, 3, 3, 0)
    pot = tx.events.filter(c.PotFixed)[0]
    assert (pot.pot, pot.winning_seats, pot.reward_per_seat, pot.remainder) == (FEE, 3, FEE // 3, FEE % 3)
    assert m.claimable(provider) == PAYMENT
    assert m.claimable(requester) == FEE % 3  # the rounding rest, at the decision
    assert s.stake_manager.locked(provider) == 0
    settled = settle_all(s, job, trio)
    assert all((e.reward, e.penalty) == (FEE // 3, 0) for e in settled.values())
    assert all(m.claimable(v) == FEE // 3 for v in trio)
    # the seats are back in the pool, still locked, and free to sit again
    assert all(c.member_of(run_class(m, job), v).free_seats == 1 for v in trio)
    assert all(sm.locked(v) == SEAT for v in trio)
    assert m.get_job(job).pot == 0
    assert s.token.balanceOf(m) == owed(s, provider, requester, *trio)
    withdraw_all(s, provider, requester, *trio)
    assert s.token.balanceOf(m) == 0


def test_fraud_majority_slashes_the_provider_and_pays_the_fraud_seats(
    s, chain, requester, provider, stranger, verifier, verifier2, verifier3
):
    m, c, sm = s.market, s.court, s.stake_manager
    job, run, indices = voting_job(s, chain, requester, provider, stranger)
    vote(c, chain, job, {verifier: fraud(), verifier2: fraud(), verifier3: ok(run, indices)})
    tx = decide(m, c, chain, job, requester)
    assert m.job_state(job) == SLASHED
    assert (tx.events.filter(m.ProviderSlashed)[0].amount, tx.events.filter(m.ProviderSlashed)[0].reason) == (COLLATERAL, "fraud")
    fin = tx.events.filter(m.JobFinalized)[0]  # a slashed job's energy claim is void
    assert (fin.outcome, fin.paid, fin.bonus, fin.premium, fin.energy_mj, fin.carbon_mg) == (SLASHED, 0, 0, 0, 0, 0)
    assert sm.staked(provider) == PROVIDER_STAKE - COLLATERAL
    assert m.claimable(requester) == PAYMENT + FEE + REQUESTER_SHARE  # the fee comes back too
    pot = COLLATERAL - REQUESTER_SHARE
    assert m.get_job(job).pot == pot
    settled = settle_all(s, job, [verifier3, verifier, verifier2])  # loser first: order is free
    assert (settled[verifier3].reward, settled[verifier3].penalty) == (0, LOSER_PENALTY)
    assert settled[verifier].reward == settled[verifier2].reward == pot // 2
    assert m.claimable(requester) == PAYMENT + FEE + REQUESTER_SHARE + LOSER_PENALTY
    # the loser's seat left the pool: its remaining stake is free, nothing locked
    assert sm.staked(verifier3) == SEAT - LOSER_PENALTY and sm.locked(verifier3) == 0
    assert c.member_of(run_class(m, job), verifier3) == (0, 0)
    assert s.token.balanceOf(m) == owed(s, requester, verifier, verifier2)
    withdraw_all(s, requester, verifier, verifier2)
    assert s.token.balanceOf(m) == 0


def test_a_no_show_loses_more_than_a_loser(s, chain, requester, provider, stranger, verifier, verifier2, verifier3):
    m, c, sm = s.market, s.court, s.stake_manager
    job, run, indices = voting_job(s, chain, requester, provider, stranger)
    vote(c, chain, job, {verifier: ok(run, indices), verifier2: ok(run, indices), verifier3: no_show()})
    decide(m, c, chain, job, stranger)
    assert m.job_state(job) == PAID  # 2 ok seats of 3
    assert m.claimable(requester) == 0  # FEE // 2 has no rest
    before = sm.staked(verifier3)
    ev = c.settle(job, 0, verifier3, sender=stranger).events.filter(c.SeatSettled)[0]
    assert (ev.reward, ev.penalty) == (0, NO_SHOW_PENALTY)
    assert NO_SHOW_PENALTY > LOSER_PENALTY
    assert sm.staked(verifier3) == before - NO_SHOW_PENALTY
    assert m.claimable(requester) == NO_SHOW_PENALTY  # the party a missing vote harms
    settle_all(s, job, [verifier, verifier2])
    assert m.claimable(verifier) == m.claimable(verifier2) == FEE // 2


def test_an_ok_vote_without_the_replayed_digests_is_a_no_show(
    s, chain, requester, provider, stranger, verifier, verifier2, verifier3
):
    m, c = s.market, s.court
    job, run, indices = voting_job(s, chain, requester, provider, stranger)
    vote(c, chain, job, {verifier: ok(run, indices), verifier2: ok(run, indices), verifier3: lazy()})
    ev = c.seat_of(job, 0, verifier3)
    assert ev.status == NO_PROOF
    assert c.case_of(job).ok_seats == 2
    decide(m, c, chain, job, stranger)
    assert m.job_state(job) == PAID
    assert c.settle(job, 0, verifier3, sender=stranger).events.filter(c.SeatSettled)[0].penalty == NO_SHOW_PENALTY


def test_lazy_ok_votes_cannot_pay_a_provider(
    s, chain, owner, requester, provider, stranger, verifier, verifier2, verifier3
):
    """Two seats vote ok without replaying and one votes fraud: the lazy seats do not
    count as ok, so there is no ok majority (nor a fraud one: 1 seat of 3)."""
    m, c = s.market, s.court
    c.set_max_rounds(1, sender=owner)
    job, run, indices = voting_job(s, chain, requester, provider, stranger)
    vote(c, chain, job, {verifier: lazy(), verifier2: lazy(), verifier3: fraud()})
    case = c.case_of(job)
    assert (case.ok_seats, case.fraud_seats) == (0, 1)
    tx = decide(m, c, chain, job, stranger)
    assert tx.events.filter(c.CaseDecided)[0].outcome == NO_DECISION
    assert m.job_state(job) == PAID  # optimistic, nobody is slashed for fraud


def test_without_a_majority_a_larger_committee_is_drawn(s, chain, owner, requester, provider, stranger, trio, crowd):
    """Round 0 (2 seats) ties 1 ok : 1 fraud; round 1 (2 * 2 + 1 = 5 seats, from the
    6 seats still free) decides. Round 0's revealers get their stake back untouched."""
    m, c, sm = s.market, s.court, s.stake_manager
    c.set_committee_size(2, sender=owner)
    everyone = trio + crowd
    job, run, indices = voting_job(s, chain, requester, provider, stranger)
    first = list(seats_of(c, job, everyone))
    assert len(first) == 2
    vote(c, chain, job, {first[0]: ok(run, indices), first[1]: fraud()})
    seed0 = c.case_of(job).seed
    tx = decide(m, c, chain, job, stranger)
    assert m.job_state(job) == VOTING  # not decided yet
    assert not tx.events.filter(m.JobFinalized)
    case = c.case_of(job)
    assert case.round == 1 and case.drawn_seats == 5 and case.seed != seed0
    drawn = tx.events.filter(c.SeatsDrawn)[0]
    assert drawn.round == 1 and len(drawn.voters) == 5
    assert not set(drawn.voters) & {str(v.address) for v in first}  # round 0's seats are busy
    second = list(seats_of(c, job, everyone))
    assert len(second) == 5
    vote(c, chain, job, {v: ok(run, indices) for v in second})
    decide(m, c, chain, job, stranger)
    assert m.job_state(job) == PAID
    with ape.reverts("court: no such round"):
        c.settle(job, 2, first[0], sender=stranger)
    for v in first:  # an earlier round's revealers: no reward, no penalty
        ev = c.settle(job, 0, v, sender=stranger).events.filter(c.SeatSettled)[0]
        assert (ev.reward, ev.penalty) == (0, 0)
        assert sm.locked(v) == SEAT
    for v in second:
        assert c.settle(job, 1, v, sender=stranger).events.filter(c.SeatSettled)[0].reward == FEE // 5
    assert c.pool_of(run_class(m, job)).busy_seats == 0


def test_after_the_last_round_the_provider_is_paid_and_nobody_slashed_for_fraud(
    s, chain, owner, requester, provider, stranger, trio
):
    m, c, sm = s.market, s.court, s.stake_manager
    c.set_max_rounds(1, sender=owner)
    job, run, indices = voting_job(s, chain, requester, provider, stranger)
    vote(c, chain, job, {v: no_show() for v in trio})
    tx = decide(m, c, chain, job, stranger)
    assert tx.events.filter(c.CaseDecided)[0].outcome == NO_DECISION
    assert m.job_state(job) == PAID
    assert sm.staked(provider) == PROVIDER_STAKE and sm.locked(provider) == 0
    assert m.claimable(provider) == PAYMENT
    assert m.claimable(requester) == FEE  # the whole pot: nobody won
    for v in trio:
        assert c.settle(job, 0, v, sender=stranger).events.filter(c.SeatSettled)[0].penalty == NO_SHOW_PENALTY
    assert m.claimable(requester) == FEE + 3 * NO_SHOW_PENALTY
    assert s.token.balanceOf(m) == owed(s, provider, requester)


def test_settlement_order_never_moves_money(s, chain, owner, requester, provider, stranger, trio, crowd):
    """Five seats: three fraud, one ok (a loser), one no-show. Settled front to back
    and back to front, every seat gets the same reward or penalty."""
    m, c = s.market, s.court
    c.set_committee_size(5, sender=owner)
    c.set_max_rounds(1, sender=owner)
    everyone = trio + crowd
    job, run, indices = voting_job(s, chain, requester, provider, stranger)
    seated = list(seats_of(c, job, everyone))
    ballots = dict(zip(seated, [fraud(), fraud(), fraud(), ok(run, indices), no_show()], strict=True))
    vote(c, chain, job, ballots)
    decide(m, c, chain, job, stranger)
    assert m.job_state(job) == SLASHED

    def outcome(order):
        snap = chain.snapshot()
        amounts = {v: (e.reward, e.penalty) for v, e in settle_all(s, job, order).items()}
        claims = {a: m.claimable(a) for a in [requester, *seated]}
        held_ = s.token.balanceOf(m)
        chain.restore(snap)
        return amounts, claims, held_

    forward, backward = outcome(seated), outcome(list(reversed(seated)))
    assert forward == backward
    amounts, claims, held_ = forward
    pot = COLLATERAL - REQUESTER_SHARE
    assert [amounts[v] for v in seated] == [(pot // 3, 0)] * 3 + [(0, LOSER_PENALTY), (0, NO_SHOW_PENALTY)]
    assert claims[requester] == PAYMENT + FEE + REQUESTER_SHARE + pot % 3 + LOSER_PENALTY + NO_SHOW_PENALTY
    assert held_ == sum(claims.values())


def test_provider_missing_the_deadline_is_slashed(s, chain, requester, provider, stranger):
    m, sm, reg = s.market, s.stake_manager, s.green_registry
    pool = reg.pool()
    job = post(m, requester, chain)
    m.accept_job(job, DETERMINISM, sender=provider)
    with ape.reverts("market: deadline not passed"):
        m.expire_job(job, sender=stranger)
    warp(chain, 3_600)
    tx = m.expire_job(job, sender=stranger)
    assert m.job_state(job) == EXPIRED
    assert tx.events.filter(m.ProviderSlashed)[0].reason == "expired"
    assert tx.events.filter(m.JobExpired)[0].slashed == COLLATERAL
    assert m.claimable(requester) == PAYMENT + FEE + REQUESTER_SHARE
    assert reg.pool() == pool + COLLATERAL - REQUESTER_SHARE
    assert sm.staked(provider) == PROVIDER_STAKE - COLLATERAL and sm.locked(provider) == 0
    m.withdraw(sender=requester)
    assert s.token.balanceOf(m) == 0


def test_provider_that_never_opens_is_slashed_and_the_committee_freed(
    s, chain, requester, provider, stranger, trio
):
    m, sm, c = s.market, s.stake_manager, s.court
    job = post(m, requester, chain)
    run = make_run(job, 8)
    accept_and_commit(m, provider, job, run)
    draw(m, chain, job, stranger, run)
    assert seats_of(c, job, trio) == {v: 1 for v in trio}  # round 0 is drawn with the audit
    with ape.reverts("market: open window not passed"):
        m.slash_unopened(job, sender=stranger)
    warp(chain, m.open_window())
    tx = m.slash_unopened(job, sender=stranger)
    assert m.job_state(job) == SLASHED
    assert tx.events.filter(m.ProviderSlashed)[0].reason == "unopened"
    assert tx.events.filter(c.CaseDecided)[0].outcome == DROPPED
    assert m.claimable(requester) == PAYMENT + FEE + REQUESTER_SHARE
    assert sm.staked(provider) == PROVIDER_STAKE - COLLATERAL and sm.locked(provider) == 0
    for v in trio:  # they never got to vote: neither reward nor penalty
        ev = c.settle(job, 0, v, sender=stranger).events.filter(c.SeatSettled)[0]
        assert (ev.reward, ev.penalty) == (0, 0)
        assert sm.locked(v) == SEAT
    assert c.pool_of(DETERMINISM).free_seats == 3


def test_partly_opened_job_is_slashed(s, chain, requester, provider, stranger):
    m = s.market
    job = post(m, requester, chain, num_segments=64, audit_samples=8)
    run = make_run(job, 64)
    accept_and_commit(m, provider, job, run)
    indices = sorted(set(draw(m, chain, job, stranger, run)))
    assert len(indices) > 1
    m.open_segments(job, [run.opening(indices[0])], sender=provider)
    j = m.get_job(job)
    assert j.next_open_index == indices[0] + 1 and j.opened_mask not in (0, 2**8 - 1)
    warp(chain, m.open_window())
    with ape.reverts("market: open window passed"):
        m.open_segments(job, [run.opening(i) for i in indices[1:]], sender=provider)
    m.slash_unopened(job, sender=stranger)
    assert m.job_state(job) == SLASHED


def test_cancelled_job_refunds_the_requester(s, chain, requester, provider):
    m = s.market
    before = s.token.balanceOf(requester)
    job = post(m, requester, chain)
    assert s.token.balanceOf(requester) == before - PAYMENT - FEE
    tx = m.cancel_job(job, sender=requester)
    assert tx.events.filter(m.JobCancelled)[0].refund == PAYMENT + FEE
    assert m.job_state(job) == CANCELLED
    assert s.token.balanceOf(requester) == before
    with ape.reverts("market: job not open"):
        m.accept_job(job, b"\x01" * 32, sender=provider)


def test_green_provider_earns_bonus_capped_by_pool(
    s, chain, owner, attestor, requester, provider, stranger, trio
):
    """The bonus needs an allowance (the owner as allocator grants one, far above what
    the pool holds): the first job draws the full 20 % x 80 % bonus, the second what is left."""
    m, reg, c = s.market, s.green_registry, s.court
    attest(s, chain, owner, attestor, provider, green_bps=8_000, carbon=50)
    full = PAYMENT * reg.max_bonus_bps() * 8_000 // 10_000 // 10_000  # 16 tokens
    reg.fund_pool(full + 4 * TOKEN, sender=requester)
    allow(s, owner, owner, requester, 1_000 * TOKEN)

    job, run, indices = voting_job(s, chain, requester, provider, stranger, min_green_bps=5_000)
    vote(c, chain, job, {v: ok(run, indices) for v in trio})
    tx = decide(m, c, chain, job, stranger)
    ev = tx.events.filter(m.JobFinalized)[0]
    assert ev.bonus == full
    assert ev.carbon_mg == run.energy * 50 // 3_600_000 == 400  # 8 Wh at 50 g/kWh
    assert m.claimable(provider) == PAYMENT + full
    assert reg.pool() == 4 * TOKEN
    assert reg.allowance_of(requester) == 1_000 * TOKEN - full
    settle_all(s, job, trio)

    job2, run2, indices2 = voting_job(s, chain, requester, provider, stranger)
    vote(c, chain, job2, {v: ok(run2, indices2) for v in trio})
    ev = decide(m, c, chain, job2, stranger).events.filter(m.JobFinalized)[0]
    assert ev.bonus == 4 * TOKEN  # capped by what is left in the pool
    assert reg.pool() == 0
    assert reg.allowance_of(requester) == 1_000 * TOKEN - full - 4 * TOKEN


def test_finalize_costs_the_same_for_a_committee_of_one_and_of_fifteen(
    s, chain, accounts, owner, requester, provider, stranger, trio
):
    """finalize never loops over seats: its cost does not grow with the committee."""
    m, c = s.market, s.court
    crowd = [accounts.generate_test_account() for _ in range(14)]
    for v in crowd:
        owner.transfer(v, 10**18)
    seat(s, *crowd)
    c.set_max_rounds(1, sender=owner)
    everyone = crowd + trio

    def finalize_gas(size) -> int:
        c.set_committee_size(size, sender=owner)
        # a fee both committee sizes divide: the same storage writes either way
        job, run, indices = voting_job(s, chain, requester, provider, stranger, verifier_fee=15 * TOKEN)
        seated = seats_of(c, job, everyone)
        assert sum(seated.values()) == size
        vote(c, chain, job, {v: ok(run, indices) for v in seated})
        gas = decide(m, c, chain, job, stranger).gas_used
        m.withdraw(sender=provider)  # same storage starting point for the next run
        return gas

    one, many = finalize_gas(1), finalize_gas(15)
    assert abs(many - one) < 2_000, (one, many)
