"""VerifierCourt's market interface driven directly: a ``MockMarket`` is wired as the
court's market, so the rules the real JobMarket never trips are pinned too
(a case opens once, votes start once, a decided case cannot be dropped, the pot
is fixed once and only after a decision)."""

from __future__ import annotations

import ape
import pytest
from conftest import MOCK_MAX_JOB_LIFETIME, SEAT_STAKE

CLASS = b"\x0c" * 32
SEED = b"\x5e" * 32
DAY = 86_400


@pytest.fixture
def wired(project, owner, token, stake_manager, green_registry, mock_market, funded, verifier, verifier2, verifier3):
    court = owner.deploy(project.VerifierCourt, stake_manager, SEAT_STAKE)
    mock_market.set_court(court, sender=owner)
    court.set_market(mock_market, sender=owner)
    stake_manager.set_court(court, sender=owner)
    for v in (verifier, verifier2, verifier3):
        token.mint(v, SEAT_STAKE, sender=v)
        stake_manager.stake(SEAT_STAKE, sender=v)
        court.join(CLASS, 1, sender=v)
    return court, mock_market


def test_a_case_opens_once_and_votes_start_once(wired, stranger):
    court, market = wired
    with ape.reverts("court: no case"):
        market.start_voting(1, SEED, sender=stranger)
    with ape.reverts("court: no case"):
        market.drop_case(1, sender=stranger)
    market.open_case(1, CLASS, SEED, sender=stranger)
    with ape.reverts("court: case exists"):
        market.open_case(1, CLASS, SEED, sender=stranger)
    with ape.reverts("court: case not voting"):
        market.decide(1, sender=stranger)
    market.start_voting(1, SEED, sender=stranger)
    with ape.reverts("court: voting already started"):
        market.start_voting(1, SEED, sender=stranger)


def test_a_decided_case_is_final(wired, chain, owner, stranger, verifier):
    court, market = wired
    court.set_max_rounds(1, sender=owner)
    market.open_case(1, CLASS, SEED, sender=stranger)
    with ape.reverts("court: case not decided"):
        market.set_pot(1, 10, sender=stranger)
    market.start_voting(1, SEED, sender=stranger)
    with ape.reverts("court: round not over"):
        market.decide(1, sender=stranger)
    chain.mine(1, timestamp=court.case_of(1).reveal_end)
    tx = market.decide(1, sender=stranger)
    assert tx.events.filter(court.CaseDecided)[0].outcome == 3  # NO_DECISION: nobody voted
    with ape.reverts("court: pot too large"):
        market.set_pot(1, 2**128, sender=stranger)
    assert market.set_pot(1, 10, sender=stranger).events.filter(court.PotFixed)[0].remainder == 10
    with ape.reverts("court: pot already fixed"):
        market.set_pot(1, 10, sender=stranger)
    with ape.reverts("court: case decided"):
        market.drop_case(1, sender=stranger)
    with ape.reverts("court: case not voting"):
        market.decide(1, sender=stranger)
    with ape.reverts("court: case not voting"):
        court.commit_vote(1, SEED, sender=verifier)
    # a no-show of a NO_DECISION case: the penalty is slashed to the market,
    # which credits it (this mock refuses: it has no requester to credit)
    with ape.reverts("mock: no court"):
        court.settle(1, 0, verifier, sender=stranger)


def test_a_dropped_case_cannot_start_or_be_decided(wired, stranger, verifier):
    court, market = wired
    market.open_case(2, CLASS, SEED, sender=stranger)
    market.drop_case(2, sender=stranger)
    with ape.reverts("court: case decided"):
        market.start_voting(2, SEED, sender=stranger)
    with ape.reverts("court: case not decided"):  # no pot for a dropped case
        market.set_pot(2, 0, sender=stranger)
    court.settle(2, 0, verifier, sender=stranger)  # neither reward nor penalty: no market call
    assert court.member_of(CLASS, verifier) == (1, 0)


def test_set_market_checks_the_markets_lifetime(project, owner, stake_manager, mock_market):
    court = owner.deploy(project.VerifierCourt, stake_manager, SEAT_STAKE)
    mock_market.set_court(court, sender=owner)
    mock_market.set_max_job_lifetime(stake_manager.unbonding_period(), sender=owner)
    with ape.reverts("court: lifetime exceeds unbonding"):
        court.set_market(mock_market, sender=owner)
    mock_market.set_max_job_lifetime(MOCK_MAX_JOB_LIFETIME, sender=owner)
    court.set_market(mock_market, sender=owner)
    assert court.market() == mock_market.address
