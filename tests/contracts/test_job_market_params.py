"""JobMarket: owner parameters, their defaults and hard bounds, ownership, lifetime vs unbonding."""

from __future__ import annotations

import ape
import pytest

DAY = 86_400
TOKEN = 10**18

# name: (default, low bound, high bound)
PARAMS = {
    "seed_lookahead": (2, 1, 64),
    "open_window": (3_600, 10, 7 * DAY),
    "vote_commit_window": (3_600, 10, 7 * DAY),
    "vote_reveal_window": (3_600, 10, 7 * DAY),
    "max_audit_samples": (32, 1, 64),
    "min_collateral_bps": (10_000, 1_000, 100_000),
    "voter_slash_bps": (1_000, 0, 5_000),
    "requester_share_bps": (5_000, 0, 10_000),
    "max_job_duration": (7 * DAY, 60, 180 * DAY),
}


def test_defaults_and_lifetime(market, system):
    for name, (default, _, _) in PARAMS.items():
        assert getattr(market, name)() == default, name
    assert market.min_verifier_stake() == TOKEN
    assert market.max_vote_stake() == 1_000 * TOKEN
    assert market.max_job_lifetime() == 7 * DAY + 3 * 3_600 + 3_600
    assert market.max_job_lifetime() < system.stake_manager.unbonding_period()
    assert market.owner() == system.stake_manager.owner()


@pytest.mark.parametrize("name", list(PARAMS))
def test_setter_bounds_and_event(market, system, owner, stranger, name):
    _, lo, hi = PARAMS[name]
    setter = getattr(market, f"set_{name}")
    with ape.reverts("ownable: caller is not the owner"):
        setter(lo, sender=stranger)
    if lo > 0:
        with ape.reverts("market: parameter out of bounds"):
            setter(lo - 1, sender=owner)
    if name == "max_job_duration":
        system.stake_manager.set_unbonding_period(365 * DAY, sender=owner)
    elif name in ("open_window", "vote_commit_window", "vote_reveal_window"):
        system.stake_manager.set_unbonding_period(30 * DAY, sender=owner)
    with ape.reverts("market: parameter out of bounds"):
        setter(hi + 1, sender=owner)
    old = getattr(market, name)()
    tx = setter(hi, sender=owner)
    ev = tx.events.filter(market.ParameterSet)[0]
    assert (ev["name"], ev.old_value, ev.new_value) == (name, old, hi)
    assert getattr(market, name)() == hi
    setter(lo, sender=owner)
    assert getattr(market, name)() == lo


def test_stake_bounds_follow_each_other(market, owner):
    with ape.reverts("market: parameter out of bounds"):
        market.set_min_verifier_stake(market.max_vote_stake() + 1, sender=owner)
    with ape.reverts("market: parameter out of bounds"):
        market.set_max_vote_stake(market.min_verifier_stake() - 1, sender=owner)
    with ape.reverts("market: parameter out of bounds"):
        market.set_min_verifier_stake(0, sender=owner)
    with ape.reverts("market: parameter out of bounds"):
        market.set_max_vote_stake(2**128, sender=owner)
    market.set_max_vote_stake(5 * TOKEN, sender=owner)
    market.set_min_verifier_stake(5 * TOKEN, sender=owner)
    assert (market.min_verifier_stake(), market.max_vote_stake()) == (5 * TOKEN, 5 * TOKEN)


def test_lifetime_must_stay_below_unbonding(market, system, owner):
    unbonding = system.stake_manager.unbonding_period()
    room = unbonding - market.max_job_lifetime()
    with ape.reverts("market: lifetime exceeds unbonding"):
        market.set_max_job_duration(market.max_job_duration() + room, sender=owner)
    with ape.reverts("market: lifetime exceeds unbonding"):
        market.set_open_window(market.open_window() + room, sender=owner)
    market.set_vote_reveal_window(market.vote_reveal_window() + room - 1, sender=owner)
    assert market.max_job_lifetime() == unbonding - 1
    # and the StakeManager cannot shorten its period below it
    with ape.reverts("stake: unbonding period too short"):
        system.stake_manager.set_unbonding_period(unbonding - 1, sender=owner)


def test_constructor_checks_unbonding_and_tokens(project, owner, system):
    from ape import reverts

    short = owner.deploy(project.StakeManager, system.token, 7 * DAY)
    with reverts("market: lifetime exceeds unbonding"):
        owner.deploy(project.JobMarket, system.token, short, system.green_registry)
    other = owner.deploy(project.MockToken, "Other", "OTH", 18)
    with reverts("market: stake token mismatch"):
        owner.deploy(project.JobMarket, other, system.stake_manager, system.green_registry)
    stake_other = owner.deploy(project.StakeManager, other, 14 * DAY)
    with reverts("market: registry token mismatch"):
        owner.deploy(project.JobMarket, other, stake_other, system.green_registry)


def test_two_step_ownership(market, owner, stranger):
    market.transfer_ownership(stranger, sender=owner)
    assert market.owner() == owner.address and market.pending_owner() == stranger.address
    market.accept_ownership(sender=stranger)
    assert market.owner() == stranger.address
    market.set_seed_lookahead(3, sender=stranger)
    with ape.reverts("ownable: caller is not the owner"):
        market.set_seed_lookahead(4, sender=owner)
