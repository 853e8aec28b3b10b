"""JobMarket: owner parameters, their defaults and hard bounds, ownership, lifetime
(with every round of the court) vs unbonding, the court-only credits."""

from __future__ import annotations

import ape
import pytest

DAY = 86_400
TOKEN = 10**18

# name: (default, low bound, high bound)
PARAMS = {
    "seed_lookahead": (2, 1, 64),
    "open_window": (3_600, 10, 7 * DAY),
    "max_audit_samples": (48, 1, 64),
    "min_collateral_bps": (10_000, 1_000, 100_000),
    "requester_share_bps": (5_000, 0, 10_000),
    "max_job_duration": (7 * DAY, 300, 180 * DAY),  # low: at least min_job_duration (300)
    "min_job_duration": (300, 60, 7 * DAY),
    "draw_window": (3_600, 60, 7 * DAY),
}


def test_defaults_and_lifetime(market, system):
    for name, (default, _, _) in PARAMS.items():
        assert getattr(market, name)() == default, name
    for gone in ("vote_commit_window", "min_verifier_stake", "max_vote_stake", "voter_slash_bps", "commit_vote", "vote_of"):
        assert not hasattr(market, gone), gone  # the vote lives in the court
    assert market.court() == system.court.address
    # deadline + draw window + open window + every round of the court (3 x (1 h + 1 h)) + 1 h margin
    assert system.court.max_voting_time() == 3 * 2 * 3_600
    assert market.max_job_lifetime() == 7 * DAY + 3_600 + 3_600 + 6 * 3_600 + 3_600 == 637_200
    assert market.max_job_lifetime() < system.stake_manager.unbonding_period()
    assert market.owner() == system.stake_manager.owner()


@pytest.mark.parametrize("name", list(PARAMS))
def test_setter_bounds_and_event(market, system, owner, stranger, name):
    _, lo, hi = PARAMS[name]
    setter = getattr(market, f"set_{name}")
    with ape.reverts("ownable: caller is not the owner"):
        setter(lo, sender=stranger)
    bound_lo = 60 if name == "max_job_duration" else lo  # the hard bound; min_job_duration's is tighter
    if bound_lo > 0:
        with ape.reverts("market: parameter out of bounds"):
            setter(bound_lo - 1, sender=owner)
    if name == "max_job_duration":
        system.stake_manager.set_unbonding_period(365 * DAY, sender=owner)
    elif name in ("open_window", "draw_window"):
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


def test_lifetime_must_stay_below_unbonding(market, system, owner):
    unbonding = system.stake_manager.unbonding_period()
    room = unbonding - market.max_job_lifetime()
    with ape.reverts("market: lifetime exceeds unbonding"):
        market.set_max_job_duration(market.max_job_duration() + room, sender=owner)
    with ape.reverts("market: lifetime exceeds unbonding"):
        market.set_open_window(market.open_window() + room, sender=owner)
    with ape.reverts("market: lifetime exceeds unbonding"):
        market.set_draw_window(market.draw_window() + room, sender=owner)
    market.set_open_window(market.open_window() + room - 1, sender=owner)
    assert market.max_job_lifetime() == unbonding - 1
    # and the StakeManager cannot shorten its period below it
    with ape.reverts("stake: unbonding period too short"):
        system.stake_manager.set_unbonding_period(unbonding - 1, sender=owner)


def test_lifetime_counts_every_round_of_the_court(market, system, owner):
    """The court's windows and rounds lengthen a job's life; its setters keep it below
    the unbonding period too."""
    court = system.court
    unbonding = system.stake_manager.unbonding_period()
    base = market.max_job_lifetime()
    court.set_max_rounds(2, sender=owner)
    assert market.max_job_lifetime() == base - 2 * 3_600
    room = unbonding - market.max_job_lifetime()  # each window counts max_rounds times
    with ape.reverts("court: lifetime exceeds unbonding"):
        court.set_commit_window(court.commit_window() + (room + 1) // 2, sender=owner)
    with ape.reverts("court: lifetime exceeds unbonding"):
        court.set_reveal_window(court.reveal_window() + (room + 1) // 2, sender=owner)
    court.set_reveal_window(court.reveal_window() + (room - 1) // 2, sender=owner)
    assert market.max_job_lifetime() < unbonding
    with ape.reverts("court: lifetime exceeds unbonding"):
        court.set_max_rounds(3, sender=owner)


def test_constructor_checks_unbonding_and_tokens(project, owner, system):
    from ape import reverts

    rules = system.rules
    # the defaults need 637 200 s (7 d + 1 h draw + 1 h open + 3 x 2 h of rounds + 1 h)
    short = owner.deploy(project.StakeManager, system.token, 637_200)
    short_court = owner.deploy(project.VerifierCourt, short, 10**20)
    with reverts("market: lifetime exceeds unbonding"):
        owner.deploy(project.JobMarket, system.token, short, system.green_registry, short_court, rules)
    enough = owner.deploy(project.StakeManager, system.token, 637_201)
    owner.deploy(project.JobMarket, system.token, enough, system.green_registry,
                 owner.deploy(project.VerifierCourt, enough, 10**20), rules)
    with reverts("market: court stake mismatch"):
        owner.deploy(project.JobMarket, system.token, system.stake_manager, system.green_registry, short_court, rules)
    other = owner.deploy(project.MockToken, "Other", "OTH", 18)
    with reverts("market: stake token mismatch"):
        owner.deploy(project.JobMarket, other, system.stake_manager, system.green_registry, system.court, rules)
    stake_other = owner.deploy(project.StakeManager, other, 14 * DAY)
    with reverts("market: registry token mismatch"):
        owner.deploy(project.JobMarket, other, stake_other, system.green_registry, system.court, rules)
    with reverts("market: audit rules not a contract"):
        owner.deploy(project.JobMarket, system.token, system.stake_manager, system.green_registry, system.court, owner)


def test_only_the_court_credits(market, stranger, owner):
    with ape.reverts("market: caller is not the court"):
        market.credit_from_pot(1, stranger, 0, sender=stranger)
    with ape.reverts("market: caller is not the court"):
        market.credit_penalty(1, 0, sender=owner)


def test_two_step_ownership(market, owner, stranger):
    market.transfer_ownership(stranger, sender=owner)
    assert market.owner() == owner.address and market.pending_owner() == stranger.address
    market.accept_ownership(sender=stranger)
    assert market.owner() == stranger.address
    market.set_seed_lookahead(3, sender=stranger)
    with ape.reverts("ownable: caller is not the owner"):
        market.set_seed_lookahead(4, sender=owner)
