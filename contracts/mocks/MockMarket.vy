# pragma version ~=0.4.3
"""
@title MockMarket
@custom:contract-name MockMarket
@license GNU Affero General Public License v3.0 only
@notice TEST ONLY. Stands in for JobMarket in the StakeManager and
        GreenRegistry unit tests: a settable `max_job_lifetime` and
        passthrough calls to the market-only functions. Anyone may call it.
"""


# INTERFACES #

from ..interfaces import IGreenRegistry
from ..interfaces import IJobMarket
from ..interfaces import IStakeManager

implements: IJobMarket


# STORAGE #

max_job_lifetime: public(uint256)
stake_manager: public(IStakeManager)
green_registry: public(IGreenRegistry)


# CONSTRUCTOR #

@deploy
def __init__(stake_manager_: address, green_registry_: address, max_job_lifetime_: uint256):
    """
    @notice Deploys the mock market.
    @param stake_manager_ The StakeManager to pass calls to.
    @param green_registry_ The GreenRegistry to pass calls to.
    @param max_job_lifetime_ The initial `max_job_lifetime`.
    """
    self.stake_manager = IStakeManager(stake_manager_)
    self.green_registry = IGreenRegistry(green_registry_)
    self.max_job_lifetime = max_job_lifetime_


# EXTERNAL #

@external
def set_max_job_lifetime(lifetime: uint256):
    """
    @notice Sets the value `max_job_lifetime` returns.
    @param lifetime Seconds.
    """
    self.max_job_lifetime = lifetime


@external
def lock(account: address, amount: uint256):
    """
    @notice Passes `lock` through to the StakeManager.
    @param account The staker.
    @param amount The amount.
    """
    extcall self.stake_manager.lock(account, amount)


@external
def unlock(account: address, amount: uint256):
    """
    @notice Passes `unlock` through to the StakeManager.
    @param account The staker.
    @param amount The amount.
    """
    extcall self.stake_manager.unlock(account, amount)


@external
def slash(account: address, amount: uint256, to: address) -> uint256:
    """
    @notice Passes `slash` through to the StakeManager.
    @param account The staker.
    @param amount The most to slash.
    @param to The recipient.
    @return uint256 The amount slashed.
    """
    return extcall self.stake_manager.slash(account, amount, to)


@external
def pay_bonus(provider: address, payment: uint256) -> uint256:
    """
    @notice Passes `pay_bonus` through to the GreenRegistry (the bonus lands here).
    @param provider The provider.
    @param payment The job payment.
    @return uint256 The bonus received.
    """
    return extcall self.green_registry.pay_bonus(provider, payment)
