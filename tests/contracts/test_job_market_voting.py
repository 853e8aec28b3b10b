"""JobMarket: commit-reveal voting, finalize and settle: every rule and its revert reason."""

from __future__ import annotations

import ape
import pytest
from job_market_helpers import (
    PROVIDER_STAKE,
    VERIFIER_STAKE,
    VOTE_COMMITTED,
    VOTE_FRAUD,
    VOTE_OK,
    commitment,
    fund,
    make_run,
    post,
    salt_of,
    to_finalize,
    to_reveal,
    to_voting,
)


@pytest.fixture(scope="module")
def s(system, requester, provider, verifier, verifier2, stranger):
    fund(system, requester, provider)
    system.stake_manager.stake(PROVIDER_STAKE, sender=provider)
    fund(system, verifier, stake=VERIFIER_STAKE)
    fund(system, verifier2, stake=2_000 * 10**18)  # above max_vote_stake
    fund(system, stranger)  # holds tokens, no stake
    return system


@pytest.fixture
def voting(s, chain, requester, provider, stranger):
    job = post(s.market, requester, chain)
    to_voting(s.market, chain, provider, job, make_run(job, 8), stranger)
    return job


def test_commit_vote_locks_capped_weight(s, voting, verifier, verifier2):
    m, sm = s.market, s.stake_manager
    c = commitment(voting, verifier2, False, salt_of(verifier2))
    tx = m.commit_vote(voting, c, sender=verifier2)
    assert tx.events.filter(m.VoteCommitted)[0].weight == m.max_vote_stake()
    assert sm.locked(verifier2) == m.max_vote_stake()
    v = m.vote_of(voting, verifier2)
    assert (v.commitment, v.weight, v.status, v.settled) == (c, m.max_vote_stake(), VOTE_COMMITTED, False)
    m.commit_vote(voting, commitment(voting, verifier, True, salt_of(verifier)), sender=verifier)
    assert sm.locked(verifier) == VERIFIER_STAKE
    assert m.get_job(voting).n_votes == 2


def test_commit_vote_rules(s, chain, voting, requester, provider, verifier, stranger):
    m = s.market
    c = commitment(voting, verifier, False, salt_of(verifier))
    with ape.reverts("market: job party cannot vote"):
        m.commit_vote(voting, c, sender=requester)
    with ape.reverts("market: job party cannot vote"):
        m.commit_vote(voting, c, sender=provider)
    with ape.reverts("market: empty commitment"):
        m.commit_vote(voting, b"\0" * 32, sender=verifier)
    with ape.reverts("market: insufficient verifier stake"):
        m.commit_vote(voting, c, sender=stranger)
    with ape.reverts("market: job not voting"):
        m.commit_vote(voting + 1, c, sender=verifier)
    m.commit_vote(voting, c, sender=verifier)
    with ape.reverts("market: already voted"):
        m.commit_vote(voting, c, sender=verifier)
    to_reveal(m, chain, voting)
    with ape.reverts("market: commit window closed"):
        m.commit_vote(voting, c, sender=stranger)


def test_reveal_rules(s, chain, voting, verifier, verifier2, stranger):
    m = s.market
    m.commit_vote(voting, commitment(voting, verifier, True, salt_of(verifier)), sender=verifier)
    m.commit_vote(voting, commitment(voting, verifier2, False, salt_of(verifier2)), sender=verifier2)
    with ape.reverts("market: reveal window not open"):
        m.reveal_vote(voting, True, salt_of(verifier), sender=verifier)
    to_reveal(m, chain, voting)
    with ape.reverts("market: no vote committed"):
        m.reveal_vote(voting, True, salt_of(stranger), sender=stranger)
    with ape.reverts("market: commitment mismatch"):
        m.reveal_vote(voting, False, salt_of(verifier), sender=verifier)
    with ape.reverts("market: commitment mismatch"):
        m.reveal_vote(voting, True, salt_of(verifier2), sender=verifier)
    tx = m.reveal_vote(voting, True, salt_of(verifier), sender=verifier)
    ev = tx.events.filter(m.VoteRevealed)[0]
    assert (ev.fraud, ev.weight) == (True, VERIFIER_STAKE)
    with ape.reverts("market: already revealed"):
        m.reveal_vote(voting, True, salt_of(verifier), sender=verifier)
    m.reveal_vote(voting, False, salt_of(verifier2), sender=verifier2)
    assert m.vote_of(voting, verifier).status == VOTE_FRAUD
    assert m.vote_of(voting, verifier2).status == VOTE_OK
    j = m.get_job(voting)
    assert (j.fraud_weight, j.ok_weight) == (VERIFIER_STAKE, m.max_vote_stake())
    with ape.reverts("market: voting not over"):
        m.finalize(voting, sender=stranger)
    to_finalize(m, chain, voting)
    with ape.reverts("market: reveal window closed"):
        m.reveal_vote(voting, True, salt_of(verifier), sender=verifier)


def test_finalize_and_settle_rules(s, chain, voting, requester, verifier, stranger):
    m = s.market
    with ape.reverts("market: job not finalized"):
        m.settle_vote(voting, verifier, sender=stranger)
    m.commit_vote(voting, commitment(voting, verifier, False, salt_of(verifier)), sender=verifier)
    to_reveal(m, chain, voting)
    m.reveal_vote(voting, False, salt_of(verifier), sender=verifier)
    to_finalize(m, chain, voting)
    m.finalize(voting, sender=stranger)
    with ape.reverts("market: job not voting"):
        m.finalize(voting, sender=stranger)
    with ape.reverts("market: no vote"):
        m.settle_vote(voting, stranger, sender=stranger)
    tx = m.settle_vote(voting, verifier, sender=stranger)
    ev = tx.events.filter(m.VoteSettled)[0]
    assert ev.won and ev.penalty == 0
    assert m.vote_of(voting, verifier).settled
    with ape.reverts("market: vote already settled"):
        m.settle_vote(voting, verifier, sender=stranger)
    with ape.reverts("market: nothing to withdraw"):
        m.withdraw(sender=stranger)
