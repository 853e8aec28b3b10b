"""JobMarket: post, cancel, accept: every rule and its revert reason; no funds move on revert."""

from __future__ import annotations

import ape
import pytest
from job_market_helpers import (
    ACCEPTED,
    COLLATERAL,
    DETERMINISM,
    FEE,
    OPEN,
    OTHER_CLASS,
    PAYMENT,
    PROVIDER_STAKE,
    SPEC_HASH,
    SPEC_URI,
    TOKEN,
    attest,
    fund,
    post,
    seat,
)


@pytest.fixture(scope="module")
def s(system, requester, provider, provider2, verifier, verifier2, verifier3):
    fund(system, requester)
    fund(system, provider, stake=PROVIDER_STAKE)
    fund(system, provider2, stake=COLLATERAL - 1)
    seat(system, verifier, verifier2, verifier3)  # 3 seats: the court's default min_class_stake
    return system


def test_post_job_escrows_and_emits_every_parameter(s, chain, requester):
    m = s.market
    before = s.token.balanceOf(requester)
    deadline = chain.pending_timestamp + 600
    premium = 7 * TOKEN
    job = post(m, requester, chain, deadline=deadline, min_green_bps=2_500, green_premium=premium)
    assert job == 1 and m.next_job_id() == 2
    assert s.token.balanceOf(requester) == before - PAYMENT - FEE - premium
    assert s.token.balanceOf(m) == PAYMENT + FEE + premium
    j = m.get_job(job)
    assert (j.requester, j.state, j.num_segments, j.audit_samples) == (requester.address, OPEN, 8, 4)
    assert (j.payment, j.verifier_fee, j.collateral, j.deadline, j.min_green_bps, j.green_premium) == (
        PAYMENT, FEE, COLLATERAL, deadline, 2_500, premium)
    assert j.spec_hash == SPEC_HASH
    logs = list(m.JobPosted.range(0, chain.blocks.head.number + 1))
    ev = logs[-1]
    assert ev.spec_uri == SPEC_URI and ev.spec_hash == SPEC_HASH and ev.collateral == COLLATERAL
    assert ev.deadline == deadline and ev.min_green_bps == 2_500 and ev.num_segments == 8
    assert ev.green_premium == premium
    m.cancel_job(job, sender=requester)  # the premium comes back with the rest
    assert s.token.balanceOf(requester) == before


def test_a_spec_travels_as_a_data_uri_of_up_to_max_uri_bytes(s, chain, requester):
    m = s.market
    longest = "data:application/json;base64," + "A" * (m.MAX_URI() - 29)
    assert len(longest) == m.MAX_URI() == 4096
    job = post(m, requester, chain, spec_uri=longest)
    assert list(m.JobPosted.range(0, chain.blocks.head.number + 1))[-1].spec_uri == longest
    before = s.token.balanceOf(requester)
    with ape.reverts():  # one byte over the ABI bound: rejected before any state change
        post(m, requester, chain, spec_uri=longest + "A")
    assert s.token.balanceOf(requester) == before and m.next_job_id() == job + 1


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"spec_hash": b"\0" * 32}, "market: empty spec hash"),
        ({"num_segments": 0}, "market: zero segments"),
        ({"audit_samples": 0}, "market: zero audit samples"),
        ({"audit_samples": 49}, "market: too many audit samples"),
        ({"payment": 0}, "market: zero payment"),
        ({"payment": 2**128, "collateral": 2**129}, "market: amount too large"),
        ({"verifier_fee": 2**128}, "market: amount too large"),
        ({"collateral": PAYMENT - 1}, "market: collateral too low"),
        ({"payment": 2**112, "collateral": 2**112}, "market: collateral too large"),
        ({"deadline": 1}, "market: deadline too soon"),
        ({"green_premium": 2**128}, "market: amount too large"),
        ({"deadline": 2**40}, "market: deadline too far"),
        ({"min_green_bps": 10_001}, "market: green bps above 10000"),
    ],
)
def test_post_job_rejects_bad_terms(s, chain, requester, override, reason):
    before = s.token.balanceOf(requester)
    with ape.reverts(reason):
        post(s.market, requester, chain, **override)
    assert s.token.balanceOf(requester) == before


def test_cancel_rules(s, chain, requester, provider):
    m = s.market
    job = post(m, requester, chain)
    with ape.reverts("market: caller is not the requester"):
        m.cancel_job(job, sender=provider)
    with ape.reverts("market: job not open"):
        m.cancel_job(job + 1, sender=requester)
    m.accept_job(job, DETERMINISM, sender=provider)
    with ape.reverts("market: job not open"):
        m.cancel_job(job, sender=requester)
    assert s.token.balanceOf(m) == PAYMENT + FEE


def test_accept_locks_collateral(s, chain, requester, provider):
    m = s.market
    job = post(m, requester, chain)
    tx = m.accept_job(job, DETERMINISM, sender=provider)
    ev = tx.events.filter(m.JobAccepted)[0]
    assert (ev["provider"], ev.determinism_class, ev.collateral) == (provider.address, DETERMINISM, COLLATERAL)
    assert s.stake_manager.locked(provider) == COLLATERAL
    j = m.get_job(job)
    assert j.state == ACCEPTED and j.provider == provider.address
    assert j.determinism_class == DETERMINISM  # stored: the court judges the job in this class
    with ape.reverts("market: job not open"):
        m.accept_job(job, DETERMINISM, sender=provider)


def test_accept_needs_a_class_pool_of_min_class_stake(s, chain, owner, requester, provider, verifier):
    """A provider cannot pick a class nobody can judge: its pool must hold min_class_stake."""
    m, c = s.market, s.court
    job = post(m, requester, chain)
    assert c.pool_stake(OTHER_CLASS) == 0
    with ape.reverts("market: class pool too small"):
        m.accept_job(job, OTHER_CLASS, sender=provider)
    assert c.pool_stake(DETERMINISM) == c.min_class_stake()
    c.set_min_class_stake(c.min_class_stake() + 1, sender=owner)
    with ape.reverts("market: class pool too small"):
        m.accept_job(job, DETERMINISM, sender=provider)
    s.stake_manager.stake(c.SEAT_STAKE(), sender=verifier)
    c.join(DETERMINISM, 1, sender=verifier)
    m.accept_job(job, DETERMINISM, sender=provider)


def test_accept_rules(s, chain, owner, attestor, requester, provider, provider2):
    m = s.market
    job = post(m, requester, chain, deadline=chain.pending_timestamp + m.min_job_duration())
    with ape.reverts("market: requester cannot accept"):
        m.accept_job(job, DETERMINISM, sender=requester)
    with ape.reverts("market: insufficient free stake"):
        m.accept_job(job, DETERMINISM, sender=provider2)
    chain.mine(1, timestamp=m.get_job(job).deadline)
    with ape.reverts("market: deadline passed"):
        m.accept_job(job, DETERMINISM, sender=provider)
    green = post(m, requester, chain, min_green_bps=6_000)
    with ape.reverts("market: provider not green enough"):
        m.accept_job(green, DETERMINISM, sender=provider)
    attest(s, chain, owner, attestor, provider, green_bps=5_999)
    with ape.reverts("market: provider not green enough"):
        m.accept_job(green, DETERMINISM, sender=provider)
    attest(s, chain, owner, attestor, provider, green_bps=6_000)
    m.accept_job(green, DETERMINISM, sender=provider)
    assert s.stake_manager.locked(provider) == COLLATERAL
