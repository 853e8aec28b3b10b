"""StakeManager: bonding, unbonding, market-only lock/unlock/slash, governance."""

import ape
import pytest
from conftest import MOCK_MAX_JOB_LIFETIME, UNBONDING_PERIOD

E18 = 10**18
MAX_UNBONDING_PERIOD = 365 * 86_400


def assert_solvent(token, stake_manager):
    """Tokens held == stake + unbonding (nobody sent tokens here directly in these tests)."""
    assert token.balanceOf(stake_manager) == (
        stake_manager.total_staked() + stake_manager.total_unbonding()
    )


# ------------------------------------------------------------------ constructor


def test_constructor_sets_token_period_and_owner(stake_manager, token, owner):
    assert stake_manager.token() == token.address
    assert stake_manager.unbonding_period() == UNBONDING_PERIOD
    assert stake_manager.owner() == owner.address
    assert stake_manager.market() == ape.utils.ZERO_ADDRESS
    assert stake_manager.MAX_UNBONDING_PERIOD() == MAX_UNBONDING_PERIOD


@pytest.mark.parametrize(
    "period, reason",
    [
        (0, "stake: unbonding period zero"),
        (MAX_UNBONDING_PERIOD + 1, "stake: unbonding period too long"),
    ],
)
def test_constructor_rejects_out_of_bound_period(project, owner, token, period, reason):
    with ape.reverts(reason):
        owner.deploy(project.StakeManager, token, period)


def test_constructor_rejects_zero_token(project, owner):
    with ape.reverts("stake: token is zero address"):
        owner.deploy(project.StakeManager, ape.utils.ZERO_ADDRESS, UNBONDING_PERIOD)


# ------------------------------------------------------------------ set_market


def test_set_market_once(stake_manager, mock_market, owner):
    tx = stake_manager.set_market(mock_market, sender=owner)
    assert stake_manager.market() == mock_market.address
    assert [log.market for log in tx.decode_logs(stake_manager.MarketSet)] == [mock_market.address]
    with ape.reverts("stake: market already set"):
        stake_manager.set_market(mock_market, sender=owner)


def test_set_market_only_owner(stake_manager, mock_market, stranger):
    with ape.reverts("ownable: caller is not the owner"):
        stake_manager.set_market(mock_market, sender=stranger)


def test_set_market_rejects_zero_address(stake_manager, owner):
    with ape.reverts("stake: market is zero address"):
        stake_manager.set_market(ape.utils.ZERO_ADDRESS, sender=owner)


def test_set_market_requires_unbonding_longer_than_any_job(stake_manager, mock_market, owner):
    mock_market.set_max_job_lifetime(UNBONDING_PERIOD, sender=owner)  # equal is not enough
    with ape.reverts("stake: unbonding period too short"):
        stake_manager.set_market(mock_market, sender=owner)
    assert stake_manager.market() == ape.utils.ZERO_ADDRESS
    mock_market.set_max_job_lifetime(UNBONDING_PERIOD - 1, sender=owner)
    stake_manager.set_market(mock_market, sender=owner)
    assert stake_manager.market() == mock_market.address


# ------------------------------------------------------------------ set_court


@pytest.fixture
def mock_court(project, owner, stake_manager, green_registry):
    """A second pass-through contract, wired as the StakeManager's court."""
    court = owner.deploy(project.MockMarket, stake_manager, green_registry, 0)
    stake_manager.set_court(court, sender=owner)
    return court


def test_set_court_once_by_the_owner(stake_manager, mock_market, owner, stranger):
    with ape.reverts("ownable: caller is not the owner"):
        stake_manager.set_court(mock_market, sender=stranger)
    with ape.reverts("stake: court is zero address"):
        stake_manager.set_court(ape.utils.ZERO_ADDRESS, sender=owner)
    tx = stake_manager.set_court(mock_market, sender=owner)
    assert stake_manager.court() == mock_market.address
    assert [log.court for log in tx.decode_logs(stake_manager.CourtSet)] == [mock_market.address]
    with ape.reverts("stake: court already set"):
        stake_manager.set_court(mock_market, sender=owner)


def test_the_court_is_the_second_authorised_caller(
    stake_manager, wired_market, mock_court, token, funded, provider, stranger
):
    """Court and market lock, unlock and slash the same balances (seats next to collateral)."""
    stake_manager.stake(100 * E18, sender=provider)
    wired_market.lock(provider, 60 * E18, sender=stranger)  # job collateral
    mock_court.lock(provider, 30 * E18, sender=stranger)  # verifier seats
    assert stake_manager.locked(provider) == 90 * E18
    with ape.reverts("stake: amount exceeds free stake"):
        mock_court.lock(provider, 10 * E18 + 1, sender=stranger)
    mock_court.unlock(provider, 10 * E18, sender=stranger)
    before = token.balanceOf(wired_market)
    mock_court.slash(provider, 10 * E18, wired_market, sender=stranger)  # a penalty, to the market
    assert token.balanceOf(wired_market) == before + 10 * E18
    assert stake_manager.staked(provider) == 90 * E18 and stake_manager.locked(provider) == 80 * E18


# ------------------------------------------------------------------ set_unbonding_period


def test_set_unbonding_period_emits_and_bounds(stake_manager, owner, stranger):
    tx = stake_manager.set_unbonding_period(20 * 86_400, sender=owner)
    (log,) = tx.decode_logs(stake_manager.UnbondingPeriodSet)
    assert (log.old_period, log.new_period) == (UNBONDING_PERIOD, 20 * 86_400)
    assert stake_manager.unbonding_period() == 20 * 86_400
    with ape.reverts("ownable: caller is not the owner"):
        stake_manager.set_unbonding_period(UNBONDING_PERIOD, sender=stranger)
    with ape.reverts("stake: unbonding period zero"):
        stake_manager.set_unbonding_period(0, sender=owner)
    with ape.reverts("stake: unbonding period too long"):
        stake_manager.set_unbonding_period(MAX_UNBONDING_PERIOD + 1, sender=owner)
    stake_manager.set_unbonding_period(MAX_UNBONDING_PERIOD, sender=owner)
    assert stake_manager.unbonding_period() == MAX_UNBONDING_PERIOD


def test_set_unbonding_period_stays_above_market_lifetime(stake_manager, wired_market, owner):
    with ape.reverts("stake: unbonding period too short"):
        stake_manager.set_unbonding_period(MOCK_MAX_JOB_LIFETIME, sender=owner)
    stake_manager.set_unbonding_period(MOCK_MAX_JOB_LIFETIME + 1, sender=owner)
    assert stake_manager.unbonding_period() == MOCK_MAX_JOB_LIFETIME + 1


def test_period_change_keeps_pending_release(
    chain, stake_manager, wired_market, funded, provider, owner
):
    stake_manager.stake(10 * E18, sender=provider)
    stake_manager.request_unstake(10 * E18, sender=provider)
    release = stake_manager.unbonding_release(provider)
    stake_manager.set_unbonding_period(MAX_UNBONDING_PERIOD, sender=owner)
    assert stake_manager.unbonding_release(provider) == release


# ------------------------------------------------------------------ stake


def test_stake_bonds_tokens(token, stake_manager, funded, provider):
    before = token.balanceOf(provider)
    tx = stake_manager.stake(100 * E18, sender=provider)
    (log,) = tx.decode_logs(stake_manager.Staked)
    assert (log.account, log.amount, log.staked) == (provider.address, 100 * E18, 100 * E18)
    stake_manager.stake(5 * E18, sender=provider)
    assert stake_manager.staked(provider) == 105 * E18
    assert stake_manager.free_stake(provider) == 105 * E18
    assert stake_manager.total_staked() == 105 * E18
    assert token.balanceOf(provider) == before - 105 * E18
    assert_solvent(token, stake_manager)


def test_stake_rejects_zero(stake_manager, funded, provider):
    with ape.reverts("stake: zero amount"):
        stake_manager.stake(0, sender=provider)


def test_stake_without_approval_moves_nothing(token, stake_manager, provider2, owner):
    token.mint(provider2, E18, sender=owner)
    token.approve(stake_manager, 0, sender=provider2)
    before = token.balanceOf(provider2)
    with ape.reverts("erc20: insufficient allowance"):
        stake_manager.stake(E18, sender=provider2)
    assert stake_manager.staked(provider2) == 0
    assert token.balanceOf(provider2) == before


# ------------------------------------------------------------------ unstake and withdraw


def test_request_unstake_moves_free_stake_to_unbonding(
    chain, token, stake_manager, funded, provider
):
    stake_manager.stake(100 * E18, sender=provider)
    tx = stake_manager.request_unstake(40 * E18, sender=provider)
    (log,) = tx.decode_logs(stake_manager.UnstakeRequested)
    block_time = chain.blocks[-1].timestamp
    assert (log.account, log.amount, log.unbonding) == (provider.address, 40 * E18, 40 * E18)
    assert log.release_time == block_time + UNBONDING_PERIOD
    assert stake_manager.staked(provider) == 60 * E18
    assert stake_manager.unbonding(provider) == 40 * E18
    assert stake_manager.unbonding_release(provider) == block_time + UNBONDING_PERIOD
    assert stake_manager.total_staked() == 60 * E18
    assert stake_manager.total_unbonding() == 40 * E18
    assert_solvent(token, stake_manager)


def test_request_unstake_rejects_zero_and_more_than_free(
    stake_manager, wired_market, funded, provider
):
    stake_manager.stake(100 * E18, sender=provider)
    wired_market.lock(provider, 70 * E18, sender=provider)
    with ape.reverts("stake: zero amount"):
        stake_manager.request_unstake(0, sender=provider)
    with ape.reverts("stake: amount exceeds free stake"):
        stake_manager.request_unstake(30 * E18 + 1, sender=provider)
    stake_manager.request_unstake(30 * E18, sender=provider)
    assert stake_manager.free_stake(provider) == 0
    assert stake_manager.locked(provider) == 70 * E18


def test_new_request_rearms_the_timer_for_the_whole_bucket(chain, stake_manager, funded, provider):
    stake_manager.stake(100 * E18, sender=provider)
    stake_manager.request_unstake(10 * E18, sender=provider)
    chain.mine(deltatime=UNBONDING_PERIOD - 100)
    stake_manager.request_unstake(10 * E18, sender=provider)
    second_release = chain.blocks[-1].timestamp + UNBONDING_PERIOD
    assert stake_manager.unbonding_release(provider) == second_release
    chain.mine(timestamp=second_release - 50)  # the first request's time has passed
    with ape.reverts("stake: still unbonding"):
        stake_manager.withdraw(sender=provider)
    chain.pending_timestamp = second_release
    stake_manager.withdraw(sender=provider)
    assert stake_manager.unbonding(provider) == 0


def test_withdraw_after_release(chain, token, stake_manager, funded, provider):
    stake_manager.stake(100 * E18, sender=provider)
    stake_manager.request_unstake(40 * E18, sender=provider)
    release = stake_manager.unbonding_release(provider)
    before = token.balanceOf(provider)
    chain.pending_timestamp = release - 1
    with ape.reverts("stake: still unbonding"):
        stake_manager.withdraw(sender=provider)
    chain.pending_timestamp = release
    tx = stake_manager.withdraw(sender=provider)
    (log,) = tx.decode_logs(stake_manager.Withdrawn)
    assert (log.account, log.amount) == (provider.address, 40 * E18)
    assert token.balanceOf(provider) == before + 40 * E18
    assert stake_manager.unbonding(provider) == 0
    assert stake_manager.unbonding_release(provider) == 0
    assert stake_manager.total_unbonding() == 0
    assert stake_manager.staked(provider) == 60 * E18
    assert_solvent(token, stake_manager)


def test_withdraw_with_nothing_unbonding(stake_manager, funded, provider):
    stake_manager.stake(E18, sender=provider)
    with ape.reverts("stake: nothing unbonding"):
        stake_manager.withdraw(sender=provider)


# ------------------------------------------------------------------ market-only: lock / unlock


def test_market_functions_before_anything_is_wired(stake_manager, funded, provider, stranger):
    for call in (
        lambda: stake_manager.lock(provider, 1, sender=stranger),
        lambda: stake_manager.unlock(provider, 1, sender=stranger),
        lambda: stake_manager.slash(provider, 1, stranger, sender=stranger),
    ):
        with ape.reverts("stake: caller is not the market or court"):
            call()


def test_market_functions_reject_other_callers(stake_manager, wired_market, mock_court, funded, provider):
    stake_manager.stake(10 * E18, sender=provider)
    with ape.reverts("stake: caller is not the market or court"):
        stake_manager.lock(provider, E18, sender=provider)
    with ape.reverts("stake: caller is not the market or court"):
        stake_manager.unlock(provider, 0, sender=provider)
    with ape.reverts("stake: caller is not the market or court"):
        stake_manager.slash(provider, E18, provider, sender=provider)
    assert stake_manager.locked(provider) == 0
    assert stake_manager.staked(provider) == 10 * E18


def test_lock_and_unlock(stake_manager, wired_market, funded, provider, stranger):
    stake_manager.stake(100 * E18, sender=provider)
    tx = wired_market.lock(provider, 60 * E18, sender=stranger)
    (log,) = tx.decode_logs(stake_manager.Locked)
    assert (log.account, log.amount, log.locked) == (provider.address, 60 * E18, 60 * E18)
    assert stake_manager.locked(provider) == 60 * E18
    assert stake_manager.free_stake(provider) == 40 * E18
    with ape.reverts("stake: amount exceeds free stake"):
        wired_market.lock(provider, 40 * E18 + 1, sender=stranger)
    tx = wired_market.unlock(provider, 25 * E18, sender=stranger)
    (log,) = tx.decode_logs(stake_manager.Unlocked)
    assert (log.amount, log.locked) == (25 * E18, 35 * E18)
    with ape.reverts("stake: amount exceeds locked"):
        wired_market.unlock(provider, 35 * E18 + 1, sender=stranger)
    assert stake_manager.locked(provider) == 35 * E18
    assert stake_manager.free_stake(provider) == 65 * E18


# ------------------------------------------------------------------ market-only: slash


def test_slash_takes_bonded_stake_and_pays_the_recipient(
    token, stake_manager, wired_market, funded, provider, stranger
):
    stake_manager.stake(100 * E18, sender=provider)
    tx = wired_market.slash(provider, 30 * E18, wired_market, sender=stranger)
    (log,) = tx.decode_logs(stake_manager.Slashed)
    assert (log.account, log.to, log.requested) == (
        provider.address,
        wired_market.address,
        30 * E18,
    )
    assert (log.from_stake, log.from_unbonding) == (30 * E18, 0)
    assert stake_manager.staked(provider) == 70 * E18
    assert token.balanceOf(wired_market) == 30 * E18
    assert_solvent(token, stake_manager)


def test_slash_clamps_locked_to_remaining_stake(
    stake_manager, wired_market, funded, provider, stranger
):
    stake_manager.stake(100 * E18, sender=provider)
    wired_market.lock(provider, 80 * E18, sender=stranger)
    wired_market.slash(provider, 50 * E18, wired_market, sender=stranger)
    assert stake_manager.staked(provider) == 50 * E18
    assert stake_manager.locked(provider) == 50 * E18
    assert stake_manager.free_stake(provider) == 0


def test_unlock_then_slash_keeps_other_locks(
    stake_manager, wired_market, funded, provider, stranger
):
    """The documented market pattern: release a job's lock, then slash it."""
    stake_manager.stake(100 * E18, sender=provider)
    wired_market.lock(provider, 30 * E18, sender=stranger)  # job A
    wired_market.lock(provider, 50 * E18, sender=stranger)  # job B
    wired_market.unlock(provider, 50 * E18, sender=stranger)
    wired_market.slash(provider, 50 * E18, wired_market, sender=stranger)
    assert stake_manager.staked(provider) == 50 * E18
    assert stake_manager.locked(provider) == 30 * E18


def test_unstaking_never_dodges_a_slash(
    chain, token, stake_manager, wired_market, funded, provider, stranger
):
    stake_manager.stake(100 * E18, sender=provider)
    wired_market.lock(provider, 40 * E18, sender=stranger)
    stake_manager.request_unstake(60 * E18, sender=provider)  # all it may: the free part
    with ape.reverts("stake: amount exceeds free stake"):
        stake_manager.request_unstake(1, sender=provider)
    tx = wired_market.slash(provider, 70 * E18, wired_market, sender=stranger)
    (log,) = tx.decode_logs(stake_manager.Slashed)
    assert (log.from_stake, log.from_unbonding) == (40 * E18, 30 * E18)
    assert stake_manager.staked(provider) == 0
    assert stake_manager.locked(provider) == 0
    assert stake_manager.unbonding(provider) == 30 * E18
    assert token.balanceOf(wired_market) == 70 * E18
    chain.pending_timestamp = stake_manager.unbonding_release(provider)
    stake_manager.withdraw(sender=provider)
    assert token.balanceOf(provider) == 10**6 * E18 - 70 * E18
    assert_solvent(token, stake_manager)


def test_slash_never_exceeds_what_is_staked(
    token, stake_manager, wired_market, funded, provider, stranger
):
    stake_manager.stake(10 * E18, sender=provider)
    stake_manager.request_unstake(4 * E18, sender=provider)
    tx = wired_market.slash(provider, 1_000 * E18, stranger, sender=stranger)
    (log,) = tx.decode_logs(stake_manager.Slashed)
    assert log.from_stake + log.from_unbonding == 10 * E18
    assert token.balanceOf(stranger) == 10**6 * E18 + 10 * E18
    # nothing left: slashing again returns 0 and moves nothing
    tx = wired_market.slash(provider, E18, stranger, sender=stranger)
    (log,) = tx.decode_logs(stake_manager.Slashed)
    assert log.from_stake + log.from_unbonding == 0
    assert token.balanceOf(stranger) == 10**6 * E18 + 10 * E18
    assert stake_manager.total_staked() == 0
    assert stake_manager.total_unbonding() == 0
    assert_solvent(token, stake_manager)


def test_slash_returns_the_amount_slashed(stake_manager, wired_market, funded, provider, stranger):
    stake_manager.stake(10 * E18, sender=provider)
    assert wired_market.slash.call(provider, 25 * E18, stranger, sender=stranger) == 10 * E18
    assert wired_market.slash.call(provider, 3 * E18, stranger, sender=stranger) == 3 * E18


def test_slash_rejects_zero_recipient(stake_manager, wired_market, funded, provider, stranger):
    stake_manager.stake(10 * E18, sender=provider)
    with ape.reverts("stake: slash to zero address"):
        wired_market.slash(provider, E18, ape.utils.ZERO_ADDRESS, sender=stranger)


# ------------------------------------------------------------------ ownership


def test_two_step_ownership(stake_manager, owner, stranger):
    stake_manager.transfer_ownership(stranger, sender=owner)
    assert stake_manager.owner() == owner.address
    assert stake_manager.pending_owner() == stranger.address
    with ape.reverts("ownable: caller is not the owner"):
        stake_manager.set_unbonding_period(UNBONDING_PERIOD, sender=stranger)
    stake_manager.accept_ownership(sender=stranger)
    assert stake_manager.owner() == stranger.address
    stake_manager.set_unbonding_period(UNBONDING_PERIOD + 1, sender=stranger)
    assert stake_manager.unbonding_period() == UNBONDING_PERIOD + 1
