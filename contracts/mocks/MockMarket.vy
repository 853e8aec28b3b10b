# pragma version ~=0.4.3
"""
@title MockMarket
@custom:contract-name MockMarket
@license GNU Affero General Public License v3.0 only
@notice TEST ONLY. Stands in for JobMarket in the StakeManager and
        GreenRegistry unit tests: a settable `max_job_lifetime` and
        passthrough calls to the market-only functions. Anyone may call it.
        In the VerifierCourt unit tests it stands in as the court's market
        (`set_court`, then the market-only calls passed through), so every
        rule of the court's market interface can be driven directly; its
        `audit_indices` is always empty and the court-only credits revert.
"""


# INTERFACES #

from ..interfaces import IGreenRegistry
from ..interfaces import IJobMarket
from ..interfaces import IStakeManager
from ..interfaces import IVerifierCourt

implements: IJobMarket


# STORAGE #

max_job_lifetime: public(uint256)
court: public(address)
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
def set_court(court_: address):
    """
    @notice Sets the value `court` returns (so a VerifierCourt accepts this mock as its market).
    @param court_ The court.
    """
    self.court = court_


@external
def open_case(job_id: uint256, dclass: bytes32, seed: bytes32):
    """
    @notice Passes `open_case` through to the court, under the court's
            `current_terms()` (as if the job had been accepted just now).
    @param job_id The job.
    @param dclass The class.
    @param seed The seed.
    """
    extcall IVerifierCourt(self.court).open_case(job_id, dclass, seed, staticcall IVerifierCourt(self.court).current_terms())


@external
def start_voting(job_id: uint256, seal_acc: bytes32):
    """
    @notice Passes `start_voting` through to the court.
    @param job_id The job.
    @param seal_acc The seal accumulator.
    """
    extcall IVerifierCourt(self.court).start_voting(job_id, seal_acc)


@external
def drop_case(job_id: uint256):
    """
    @notice Passes `drop_case` through to the court.
    @param job_id The job.
    """
    extcall IVerifierCourt(self.court).drop_case(job_id)


@external
def decide(job_id: uint256) -> (uint8, uint256):
    """
    @notice Passes `decide` through to the court.
    @param job_id The job.
    @return uint8 The outcome.
    @return uint256 The winning seats.
    """
    return extcall IVerifierCourt(self.court).decide(job_id)


@external
def set_pot(job_id: uint256, pot: uint256) -> uint256:
    """
    @notice Passes `set_pot` through to the court.
    @param job_id The job.
    @param pot The pot.
    @return uint256 The remainder.
    """
    return extcall IVerifierCourt(self.court).set_pot(job_id, pot)


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
def pay_bonus(provider: address, requester: address, payment: uint256) -> uint256:
    """
    @notice Passes `pay_bonus` through to the GreenRegistry (the bonus lands here).
    @param provider The provider.
    @param requester The requester whose allowance pays.
    @param payment The job payment.
    @return uint256 The bonus received.
    """
    return extcall self.green_registry.pay_bonus(provider, requester, payment)


@view
@external
def audit_indices(job_id: uint256) -> DynArray[uint32, 64]:
    """
    @notice No audit here: always empty.
    @param job_id Ignored.
    @return DynArray[uint32, 64] Empty.
    """
    return []


@external
def credit_from_pot(job_id: uint256, to: address, amount: uint256):
    """
    @notice Not supported (no court): reverts.
    @param job_id Ignored.
    @param to Ignored.
    @param amount Ignored.
    """
    raise "mock: no court"


@external
def credit_penalty(job_id: uint256, amount: uint256):
    """
    @notice Not supported (no court): reverts.
    @param job_id Ignored.
    @param amount Ignored.
    """
    raise "mock: no court"
