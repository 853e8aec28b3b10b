"""JobMarket: a full flow for every outcome, read as stories.

Every story ends by checking that no token was created or lost: what the
market holds equals what it still owes (claimables), and after everybody
withdrew it holds nothing.
"""

from __future__ import annotations

import ape
import pytest
from job_market_helpers import (
    CANCELLED,
    COLLATERAL,
    COMMITTED,
    EXPIRED,
    FEE,
    PAID,
    PAYMENT,
    PROVIDER_STAKE,
    SLASHED,
    TOKEN,
    VERIFIER_STAKE,
    accept_and_commit,
    attest,
    draw,
    fund,
    make_run,
    post,
    to_finalize,
    to_voting,
    vote,
    warp,
)


@pytest.fixture(scope="module")
def s(system, requester, provider, verifier, verifier2, stranger):
    fund(system, requester)
    fund(system, provider, stake=PROVIDER_STAKE)
    fund(system, verifier, verifier2, stranger, stake=VERIFIER_STAKE)
    return system


def owed(s, *accounts) -> int:
    return sum(s.market.claimable(a) for a in accounts)


def withdraw_all(s, *accounts) -> None:
    for a in accounts:
        if s.market.claimable(a) > 0:
            s.market.withdraw(sender=a)


def test_honest_job_without_votes_pays_provider_and_refunds_fee(s, chain, requester, provider, stranger):
    m = s.market
    job = post(m, requester, chain)
    run = make_run(job, 8)
    to_voting(m, chain, provider, job, run, stranger)
    to_finalize(m, chain, job)
    tx = m.finalize(job, sender=stranger)
    assert m.job_state(job) == PAID
    assert m.claimable(provider) == PAYMENT
    assert m.claimable(requester) == FEE
    assert s.stake_manager.locked(provider) == 0
    ev = tx.events.filter(m.JobFinalized)[0]
    assert (ev.outcome, ev.paid, ev.bonus, ev.energy_mj) == (PAID, PAYMENT, 0, run.energy)
    assert ev.carbon_g == run.energy * 400 // 3_600_000_000  # default grid intensity
    before = s.token.balanceOf(provider)
    m.withdraw(sender=provider)
    assert s.token.balanceOf(provider) == before + PAYMENT
    m.withdraw(sender=requester)
    assert s.token.balanceOf(m) == 0


def test_honest_job_with_ok_votes_shares_fee_by_weight(s, chain, requester, provider, verifier, verifier2, stranger):
    m = s.market
    s.stake_manager.stake(VERIFIER_STAKE, sender=verifier2)  # verifier2 weighs twice as much
    job = post(m, requester, chain)
    to_voting(m, chain, provider, job, make_run(job, 8), stranger)
    vote(m, job, {verifier: False, verifier2: False}, chain)
    assert s.stake_manager.locked(verifier2) == 2 * VERIFIER_STAKE
    to_finalize(m, chain, job)
    m.finalize(job, sender=stranger)
    assert m.job_state(job) == PAID
    assert m.claimable(provider) == PAYMENT
    assert m.claimable(requester) == 0
    m.settle_vote(job, verifier, sender=stranger)
    m.settle_vote(job, verifier2, sender=stranger)
    assert m.claimable(verifier) == FEE // 3
    assert m.claimable(verifier2) == FEE - FEE // 3  # the last winner takes the rest
    assert s.stake_manager.locked(verifier) == 0 and s.stake_manager.locked(verifier2) == 0
    assert s.token.balanceOf(m) == owed(s, provider, verifier, verifier2)
    withdraw_all(s, provider, verifier, verifier2)
    assert s.token.balanceOf(m) == 0


def test_fraud_majority_slashes_provider_and_penalises_ok_minority(
    s, chain, requester, provider, verifier, verifier2, stranger
):
    m, sm = s.market, s.stake_manager
    job = post(m, requester, chain)
    to_voting(m, chain, provider, job, make_run(job, 8), stranger)
    vote(m, job, {verifier: True, verifier2: True, stranger: False}, chain)
    to_finalize(m, chain, job)
    tx = m.finalize(job, sender=requester)
    assert m.job_state(job) == SLASHED
    ev = tx.events.filter(m.ProviderSlashed)[0]
    assert (ev.amount, ev.reason) == (COLLATERAL, "fraud")
    fin = tx.events.filter(m.JobFinalized)[0]  # a slashed job's energy claim is void
    assert (fin.outcome, fin.paid, fin.bonus, fin.energy_mj, fin.carbon_g) == (SLASHED, 0, 0, 0, 0)
    assert sm.staked(provider) == PROVIDER_STAKE - COLLATERAL
    to_requester = COLLATERAL * m.requester_share_bps() // 10_000
    assert m.claimable(requester) == PAYMENT + to_requester
    assert m.claimable(provider) == 0

    # winners wait for the non-winning vote (or the grace period)
    with ape.reverts("market: non-winning votes unsettled"):
        m.settle_vote(job, verifier, sender=verifier)
    penalty = VERIFIER_STAKE * m.voter_slash_bps() // 10_000
    tx = m.settle_vote(job, stranger, sender=verifier)
    assert tx.events.filter(m.VoteSettled)[0].penalty == penalty
    assert sm.staked(stranger) == VERIFIER_STAKE - penalty and sm.locked(stranger) == 0
    pot = FEE + COLLATERAL - to_requester + penalty
    m.settle_vote(job, verifier, sender=stranger)
    m.settle_vote(job, verifier2, sender=stranger)
    assert m.claimable(verifier) == pot // 2
    assert m.claimable(verifier2) == pot - pot // 2
    assert s.token.balanceOf(m) == owed(s, requester, verifier, verifier2)
    withdraw_all(s, requester, verifier, verifier2)
    assert s.token.balanceOf(m) == 0


def test_ok_majority_penalises_fraud_minority_after_grace(s, chain, requester, provider, verifier, verifier2, stranger):
    m, sm = s.market, s.stake_manager
    job = post(m, requester, chain)
    to_voting(m, chain, provider, job, make_run(job, 8), stranger)
    vote(m, job, {verifier: False, verifier2: False, stranger: True}, chain)
    to_finalize(m, chain, job)
    m.finalize(job, sender=requester)
    assert m.job_state(job) == PAID
    # after the grace a winner may settle before the loser; the loser's penalty
    # then goes to the remaining winner
    warp(chain, m.vote_reveal_window())
    m.settle_vote(job, verifier, sender=verifier)
    assert m.claimable(verifier) == FEE // 2
    penalty = VERIFIER_STAKE * m.voter_slash_bps() // 10_000
    m.settle_vote(job, stranger, sender=verifier)
    assert sm.staked(stranger) == VERIFIER_STAKE - penalty
    m.settle_vote(job, verifier2, sender=verifier2)
    assert m.claimable(verifier2) == FEE - FEE // 2 + penalty
    with ape.reverts("market: vote already settled"):
        m.settle_vote(job, verifier2, sender=verifier2)
    assert s.token.balanceOf(m) == owed(s, provider, verifier, verifier2)


def test_no_show_voter_is_penalised_to_the_requester(s, chain, requester, provider, verifier, stranger):
    m, sm = s.market, s.stake_manager
    job = post(m, requester, chain)
    to_voting(m, chain, provider, job, make_run(job, 8), stranger)
    vote(m, job, {verifier: True}, chain, reveal=set())  # commits, never reveals
    to_finalize(m, chain, job)
    m.finalize(job, sender=stranger)
    assert m.job_state(job) == PAID  # no revealed vote: optimistic
    assert m.claimable(requester) == FEE
    penalty = VERIFIER_STAKE * m.voter_slash_bps() // 10_000
    m.settle_vote(job, verifier, sender=stranger)
    assert sm.staked(verifier) == VERIFIER_STAKE - penalty
    assert sm.locked(verifier) == 0
    assert m.claimable(requester) == FEE + penalty
    assert s.token.balanceOf(m) == owed(s, requester, provider)


def test_no_show_in_a_fraud_vote_feeds_the_winners(s, chain, requester, provider, verifier, verifier2, stranger):
    m = s.market
    job = post(m, requester, chain)
    to_voting(m, chain, provider, job, make_run(job, 8), stranger)
    vote(m, job, {verifier: True, stranger: False}, chain, reveal={verifier})
    to_finalize(m, chain, job)
    m.finalize(job, sender=stranger)
    assert m.job_state(job) == SLASHED  # 500 fraud vs 0 ok revealed
    penalty = VERIFIER_STAKE * m.voter_slash_bps() // 10_000
    m.settle_vote(job, stranger, sender=stranger)
    m.settle_vote(job, verifier, sender=stranger)
    to_requester = COLLATERAL * m.requester_share_bps() // 10_000
    assert m.claimable(verifier) == FEE + COLLATERAL - to_requester + penalty


def test_provider_missing_the_deadline_is_slashed(s, chain, requester, provider, stranger):
    m, sm, reg = s.market, s.stake_manager, s.green_registry
    pool = reg.pool()
    job = post(m, requester, chain)
    m.accept_job(job, b"\x01" * 32, sender=provider)
    with ape.reverts("market: deadline not passed"):
        m.expire_job(job, sender=stranger)
    warp(chain, 3_600)
    tx = m.expire_job(job, sender=stranger)
    assert m.job_state(job) == EXPIRED
    assert tx.events.filter(m.ProviderSlashed)[0].reason == "expired"
    assert tx.events.filter(m.JobExpired)[0].slashed == COLLATERAL
    to_requester = COLLATERAL * m.requester_share_bps() // 10_000
    assert m.claimable(requester) == PAYMENT + FEE + to_requester
    assert reg.pool() == pool + COLLATERAL - to_requester
    assert sm.staked(provider) == PROVIDER_STAKE - COLLATERAL and sm.locked(provider) == 0
    m.withdraw(sender=requester)
    assert s.token.balanceOf(m) == 0


def test_provider_that_never_opens_is_slashed(s, chain, requester, provider, stranger):
    m, sm = s.market, s.stake_manager
    job = post(m, requester, chain)
    accept_and_commit(m, provider, job, make_run(job, 8))
    draw(m, chain, job, stranger)
    with ape.reverts("market: open window not passed"):
        m.slash_unopened(job, sender=stranger)
    warp(chain, m.open_window())
    tx = m.slash_unopened(job, sender=stranger)
    assert m.job_state(job) == SLASHED
    assert tx.events.filter(m.ProviderSlashed)[0].reason == "unopened"
    to_requester = COLLATERAL * m.requester_share_bps() // 10_000
    assert m.claimable(requester) == PAYMENT + FEE + to_requester
    assert sm.staked(provider) == PROVIDER_STAKE - COLLATERAL and sm.locked(provider) == 0


def test_partly_opened_job_is_slashed(s, chain, requester, provider, stranger):
    m = s.market
    job = post(m, requester, chain, num_segments=64, audit_samples=8)
    run = make_run(job, 64)
    accept_and_commit(m, provider, job, run)
    indices = sorted(set(draw(m, chain, job, stranger)))
    m.open_segment(job, *run.opening(indices[0]), sender=provider)
    assert m.is_opened(job, indices[0]) and not m.is_opened(job, indices[-1])
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


def test_green_provider_earns_bonus_capped_by_pool(s, chain, owner, attestor, requester, provider, stranger):
    m, reg = s.market, s.green_registry
    attest(s, chain, owner, attestor, provider, green_bps=8_000, carbon=50)
    full = PAYMENT * reg.max_bonus_bps() * 8_000 // 10_000 // 10_000  # 16 tokens
    reg.fund_pool(full + 4 * TOKEN, sender=requester)

    job = post(m, requester, chain, min_green_bps=5_000)
    run = make_run(job, 8)
    to_voting(m, chain, provider, job, run, stranger)
    to_finalize(m, chain, job)
    tx = m.finalize(job, sender=stranger)
    ev = tx.events.filter(m.JobFinalized)[0]
    assert ev.bonus == full
    assert ev.carbon_g == run.energy * 50 // 3_600_000_000
    assert m.claimable(provider) == PAYMENT + full
    assert reg.pool() == 4 * TOKEN

    job2 = post(m, requester, chain)
    to_voting(m, chain, provider, job2, make_run(job2, 8), stranger)
    to_finalize(m, chain, job2)
    ev = m.finalize(job2, sender=stranger).events.filter(m.JobFinalized)[0]
    assert ev.bonus == 4 * TOKEN  # capped by what is left in the pool
    assert reg.pool() == 0
    assert s.token.balanceOf(m) == owed(s, provider, requester)


def test_seed_is_rearmed_when_its_block_hash_is_gone(s, chain, requester, provider, stranger):
    m = s.market
    job = post(m, requester, chain)
    accept_and_commit(m, provider, job, make_run(job, 8))
    with ape.reverts("market: seed block not reached"):
        m.draw_audit(job, sender=stranger)
    chain.mine(300)
    tx = m.draw_audit(job, sender=stranger)
    rearmed = tx.events.filter(m.AuditRearmed)
    assert len(rearmed) == 1
    assert rearmed[0].seed_block == tx.block_number + m.seed_lookahead()
    assert m.job_state(job) == COMMITTED
    assert list(m.audit_indices(job)) == []
    indices = draw(m, chain, job, stranger)
    assert len(indices) == 4 and all(0 <= i < 8 for i in indices)


def test_a_flood_of_voters_cannot_make_finalize_expensive(s, chain, accounts, owner, requester, provider, stranger):
    m = s.market
    crowd = [accounts.generate_test_account() for _ in range(20)]
    for v in crowd:
        owner.transfer(v, 10**18)
        fund(s, v, stake=10 * TOKEN)

    def finalize_gas(voters) -> int:
        job = post(m, requester, chain)
        to_voting(m, chain, provider, job, make_run(job, 8), stranger)
        vote(m, job, {v: False for v in voters}, chain)
        to_finalize(m, chain, job)
        gas = m.finalize(job, sender=stranger).gas_used
        m.withdraw(sender=provider)  # same storage starting point for the next run
        return gas

    one, many = finalize_gas(crowd[:1]), finalize_gas(crowd[1:])
    assert abs(many - one) < 1_000, (one, many)
