"""VerifierCourt: construction, wiring, owner parameters with their hard bounds and
cross rules, lifetime vs unbonding, ownership."""

from __future__ import annotations

import ape
import pytest
from conftest import SEAT_STAKE, UNBONDING_PERIOD

DAY = 86_400

# name: (default, low bound, high bound) with the other parameters at their defaults
PARAMS = {
    "committee_size": (3, 1, 7),  # 7: (7 + 1) * 2**(3 - 1) - 1 = 31 seats in round 2
    "max_rounds": (3, 1, 3),  # 3: (3 + 1) * 2**2 - 1 = 15; 4 rounds -> 31; the lifetime caps it first
    "commit_window": (3_600, 10, 7 * DAY),
    "reveal_window": (3_600, 10, 7 * DAY),
    "voter_slash_bps": (1_000, 0, 1_999),  # below noshow_slash_bps (2 000)
    "noshow_slash_bps": (2_000, 1_001, 10_000),  # above voter_slash_bps (1 000)
    "min_class_stake": (3 * SEAT_STAKE, SEAT_STAKE, 2**128 - 1),
}


def test_defaults_and_constants(court, system):
    for name, (default, _, _) in PARAMS.items():
        assert getattr(court, name)() == default, name
    assert court.SEAT_STAKE() == SEAT_STAKE
    assert (court.MAX_POOL_MEMBERS(), court.MAX_COMMITTEE(), court.MAX_ROUNDS()) == (1024, 31, 5)
    assert court.MAX_MEMBER_SEATS() == 2**32 - 1
    assert court.max_voting_time() == 3 * (3_600 + 3_600)
    assert (court.market(), court.stake_manager()) == (system.market.address, system.stake_manager.address)
    assert system.stake_manager.court() == court.address
    assert court.owner() == system.market.owner()


@pytest.mark.parametrize("name", list(PARAMS))
def test_setter_bounds_and_event(court, system, owner, stranger, name):
    _, lo, hi = PARAMS[name]
    setter = getattr(court, f"set_{name}")
    system.stake_manager.set_unbonding_period(365 * DAY, sender=owner)  # room for any window
    with ape.reverts("ownable: caller is not the owner"):
        setter(lo, sender=stranger)
    old = getattr(court, name)()
    tx = setter(hi, sender=owner)
    ev = tx.events.filter(court.ParameterSet)[0]
    assert (ev["name"], ev.old_value, ev.new_value) == (name, old, hi)
    assert getattr(court, name)() == hi
    setter(lo, sender=owner)
    assert getattr(court, name)() == lo


def test_hard_bounds(court, system, owner):
    system.stake_manager.set_unbonding_period(365 * DAY, sender=owner)
    for setter, bad in (
        (court.set_committee_size, 0),
        (court.set_committee_size, 32),
        (court.set_max_rounds, 0),
        (court.set_max_rounds, 6),
        (court.set_commit_window, 9),
        (court.set_commit_window, 7 * DAY + 1),
        (court.set_reveal_window, 9),
        (court.set_reveal_window, 7 * DAY + 1),
        (court.set_voter_slash_bps, 5_001),
        (court.set_noshow_slash_bps, 0),
        (court.set_noshow_slash_bps, 10_001),
        (court.set_min_class_stake, 0),
        (court.set_min_class_stake, 2**128),
    ):
        with ape.reverts("court: parameter out of bounds"):
            setter(bad, sender=owner)


def test_the_last_round_holds_at_most_max_committee_seats(court, system, owner):
    """Sizes 3, 7, 15, 31: committee and rounds bound each other (every seat count fits a round)."""
    system.stake_manager.set_unbonding_period(365 * DAY, sender=owner)
    with ape.reverts("court: last round too large"):
        court.set_committee_size(8, sender=owner)  # 8, 17, 35
    court.set_max_rounds(4, sender=owner)  # 3, 7, 15, 31
    with ape.reverts("court: last round too large"):
        court.set_max_rounds(5, sender=owner)
    with ape.reverts("court: last round too large"):
        court.set_committee_size(4, sender=owner)
    court.set_committee_size(1, sender=owner)
    court.set_max_rounds(5, sender=owner)  # 1, 3, 7, 15, 31
    court.set_max_rounds(1, sender=owner)
    court.set_committee_size(31, sender=owner)


def test_a_no_show_always_loses_more_than_a_loser(court, owner):
    with ape.reverts("court: no-show must lose more"):
        court.set_voter_slash_bps(2_000, sender=owner)
    with ape.reverts("court: no-show must lose more"):
        court.set_noshow_slash_bps(1_000, sender=owner)
    court.set_noshow_slash_bps(6_000, sender=owner)
    court.set_voter_slash_bps(5_000, sender=owner)
    assert court.noshow_slash_bps() > court.voter_slash_bps()


def test_min_class_stake_is_at_least_one_seat(court, owner):
    with ape.reverts("court: below one seat"):
        court.set_min_class_stake(SEAT_STAKE - 1, sender=owner)


def test_constructor_rules(project, owner, system):
    with ape.reverts("court: stake manager is zero address"):
        owner.deploy(project.VerifierCourt, ape.utils.ZERO_ADDRESS, SEAT_STAKE)
    with ape.reverts("court: zero seat stake"):
        owner.deploy(project.VerifierCourt, system.stake_manager, 0)
    with ape.reverts("court: seat stake too large"):
        owner.deploy(project.VerifierCourt, system.stake_manager, 2**96)
    owner.deploy(project.VerifierCourt, system.stake_manager, 2**96 - 1)


def test_set_market_rules(project, owner, stranger, system):
    """The court serves the one market built on it, wired once by the owner, and only
    while that market's lifetime (with the court's rounds) fits the unbonding period."""
    sm = owner.deploy(project.StakeManager, system.token, UNBONDING_PERIOD)
    court = owner.deploy(project.VerifierCourt, sm, SEAT_STAKE)
    market = owner.deploy(project.JobMarket, system.token, sm, system.green_registry, court, system.rules)
    with ape.reverts("ownable: caller is not the owner"):
        court.set_market(market, sender=stranger)
    with ape.reverts("court: market is zero address"):
        court.set_market(ape.utils.ZERO_ADDRESS, sender=owner)
    with ape.reverts("court: market uses another court"):
        court.set_market(system.market, sender=owner)
    court.set_commit_window(7 * DAY, sender=owner)  # unwired: the setter cannot check yet
    with ape.reverts("court: lifetime exceeds unbonding"):
        court.set_market(market, sender=owner)
    court.set_commit_window(3_600, sender=owner)
    tx = court.set_market(market, sender=owner)
    assert [e.market for e in tx.events.filter(court.MarketSet)] == [market.address]
    with ape.reverts("court: market already set"):
        court.set_market(market, sender=owner)


def test_two_step_ownership(court, owner, stranger):
    court.transfer_ownership(stranger, sender=owner)
    assert court.owner() == owner.address and court.pending_owner() == stranger.address
    court.accept_ownership(sender=stranger)
    court.set_committee_size(1, sender=stranger)
    with ape.reverts("ownable: caller is not the owner"):
        court.set_committee_size(2, sender=owner)
