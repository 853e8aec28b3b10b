# pragma version ~=0.4.3
"""
@title StakeManager
@custom:contract-name StakeManager
@license GNU Affero General Public License v3.0 only
@notice Role-agnostic bonded stake for greenproof providers and verifiers
        (docs/protocol.md §2.1). Guarantees:
        - `locked(a) <= staked(a)` for every account, always;
        - only free stake (`staked - locked`) can start unbonding, and
          unbonding stake is released only after `unbonding_period`;
        - `slash` takes bonded stake first and then unbonding stake, so
          requesting an unstake never dodges a slash;
        - `unbonding_period` stays strictly longer than the market's
          `max_job_lifetime()`, which covers every round of the court
          (checked by `set_market` and the setter);
        - tokens held == `total_staked + total_unbonding` (plus anything sent
          to this contract directly, which is never accounted).
@dev Only the market and the court (each set once by the owner) may
     `lock`, `unlock` and `slash`: the market for job collateral, the court
     for verifier seats. Both follow unlock-then-slash, so `slash` never
     needs its clamp. Ownership is snekmate's 2-step ownership.
"""


# INTERFACES #

from ethereum.ercs import IERC20

from snekmate.auth import ownable
from snekmate.auth import ownable_2step

from .interfaces import IJobMarket
from .interfaces import IStakeManager

implements: IStakeManager

initializes: ownable
initializes: ownable_2step[ownable := ownable]

exports: (
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
    ownable_2step.renounce_ownership,
)


# EVENTS #

event Staked:
    account: indexed(address)
    amount: uint256
    staked: uint256


event UnstakeRequested:
    account: indexed(address)
    amount: uint256
    unbonding: uint256
    release_time: uint256


event Withdrawn:
    account: indexed(address)
    amount: uint256


event Locked:
    account: indexed(address)
    amount: uint256
    locked: uint256


event Unlocked:
    account: indexed(address)
    amount: uint256
    locked: uint256


event Slashed:
    account: indexed(address)
    to: indexed(address)
    requested: uint256
    from_stake: uint256
    from_unbonding: uint256


event MarketSet:
    market: indexed(address)


event CourtSet:
    court: indexed(address)


event UnbondingPeriodSet:
    old_period: uint256
    new_period: uint256


# CONSTANTS #

# @dev Hard upper bound for `unbonding_period`.
MAX_UNBONDING_PERIOD: public(constant(uint256)) = 365 * 86400


# STORAGE #

token: public(immutable(IERC20))
market: public(address)
court: public(address)
unbonding_period: public(uint256)

staked: public(HashMap[address, uint256])
locked: public(HashMap[address, uint256])
unbonding: public(HashMap[address, uint256])
unbonding_release: public(HashMap[address, uint256])

total_staked: public(uint256)
total_unbonding: public(uint256)


# CONSTRUCTOR #

@deploy
def __init__(token_: address, unbonding_period_: uint256):
    """
    @notice Deploys the stake manager; the deployer becomes the owner.
    @dev The market is wired later with `set_market`, which checks that
         `unbonding_period_` exceeds the market's longest job lifetime.
    @param token_ The ERC20 token that is staked.
    @param unbonding_period_ Seconds between `request_unstake` and `withdraw`,
           `0 < unbonding_period_ <= MAX_UNBONDING_PERIOD`.
    """
    assert token_ != empty(address), "stake: token is zero address"
    assert unbonding_period_ > 0, "stake: unbonding period zero"
    assert unbonding_period_ <= MAX_UNBONDING_PERIOD, "stake: unbonding period too long"
    ownable.__init__()
    ownable_2step.__init__()
    token = IERC20(token_)
    self.unbonding_period = unbonding_period_
    log UnbondingPeriodSet(old_period=0, new_period=unbonding_period_)


# EXTERNAL: GOVERNANCE #

@external
def set_market(market_: address):
    """
    @notice Wires the job market, once.
    @dev Reverts unless `unbonding_period > market_.max_job_lifetime()`, so a
         stake locked by a job can never finish unbonding before that job ends.
    @param market_ The JobMarket contract allowed to lock, unlock and slash.
    """
    ownable._check_owner()
    assert self.market == empty(address), "stake: market already set"
    assert market_ != empty(address), "stake: market is zero address"
    assert self.unbonding_period > staticcall IJobMarket(market_).max_job_lifetime(), "stake: unbonding period too short"
    self.market = market_
    log MarketSet(market=market_)


@external
def set_court(court_: address):
    """
    @notice Wires the verifier court, once: the second contract allowed to
            lock, unlock and slash (verifier seats).
    @dev The court's voting rounds count in the market's
         `max_job_lifetime()`, which `set_market` and
         `set_unbonding_period` keep below the unbonding period.
    @param court_ The VerifierCourt contract.
    """
    ownable._check_owner()
    assert self.court == empty(address), "stake: court already set"
    assert court_ != empty(address), "stake: court is zero address"
    self.court = court_
    log CourtSet(court=court_)


@external
def set_unbonding_period(period: uint256):
    """
    @notice Changes the unbonding period for future unstake requests.
    @dev Pending requests keep their release time. Bounded by
         `0 < period <= MAX_UNBONDING_PERIOD` and, once the market is set,
         `period > market.max_job_lifetime()`.
    @param period The new unbonding period in seconds.
    """
    ownable._check_owner()
    assert period > 0, "stake: unbonding period zero"
    assert period <= MAX_UNBONDING_PERIOD, "stake: unbonding period too long"
    if self.market != empty(address):
        assert period > staticcall IJobMarket(self.market).max_job_lifetime(), "stake: unbonding period too short"
    old: uint256 = self.unbonding_period
    self.unbonding_period = period
    log UnbondingPeriodSet(old_period=old, new_period=period)


# EXTERNAL: STAKERS #

@external
@nonreentrant
def stake(amount: uint256):
    """
    @notice Bonds `amount` tokens of the caller (needs an ERC20 approval).
    @param amount Token base units to bond, > 0.
    """
    assert amount > 0, "stake: zero amount"
    self.staked[msg.sender] += amount
    self.total_staked += amount
    log Staked(account=msg.sender, amount=amount, staked=self.staked[msg.sender])
    assert extcall token.transferFrom(msg.sender, self, amount, default_return_value=True), "stake: transferFrom failed"


@external
def request_unstake(amount: uint256):
    """
    @notice Moves `amount` of the caller's free stake into unbonding.
    @dev The whole unbonding bucket is released at one time: a new request
         re-arms the timer to `now + unbonding_period` for everything already
         unbonding. Unbonding stake can still be slashed until withdrawn.
    @param amount Token base units, `0 < amount <= free_stake(caller)`.
    """
    assert amount > 0, "stake: zero amount"
    assert amount <= self._free(msg.sender), "stake: amount exceeds free stake"
    self.staked[msg.sender] -= amount
    self.total_staked -= amount
    self.unbonding[msg.sender] += amount
    self.total_unbonding += amount
    release: uint256 = block.timestamp + self.unbonding_period
    self.unbonding_release[msg.sender] = release
    log UnstakeRequested(account=msg.sender, amount=amount, unbonding=self.unbonding[msg.sender], release_time=release)


@external
@nonreentrant
def withdraw() -> uint256:
    """
    @notice Pays the caller its whole unbonding balance once released.
    @return uint256 The amount paid out.
    """
    amount: uint256 = self.unbonding[msg.sender]
    assert amount > 0, "stake: nothing unbonding"
    assert block.timestamp >= self.unbonding_release[msg.sender], "stake: still unbonding"
    self.unbonding[msg.sender] = 0
    self.unbonding_release[msg.sender] = 0
    self.total_unbonding -= amount
    log Withdrawn(account=msg.sender, amount=amount)
    assert extcall token.transfer(msg.sender, amount, default_return_value=True), "stake: transfer failed"
    return amount


# EXTERNAL: MARKET AND COURT #

@external
def lock(account: address, amount: uint256):
    """
    @notice Locks `amount` of `account`'s free stake (job collateral, seat stake).
    @param account The staker.
    @param amount Token base units, `<= free_stake(account)`.
    """
    self._check_caller()
    assert amount <= self._free(account), "stake: amount exceeds free stake"
    self.locked[account] += amount
    log Locked(account=account, amount=amount, locked=self.locked[account])


@external
def unlock(account: address, amount: uint256):
    """
    @notice Releases `amount` of `account`'s locked stake.
    @param account The staker.
    @param amount Token base units, `<= locked(account)`.
    """
    self._check_caller()
    assert amount <= self.locked[account], "stake: amount exceeds locked"
    self.locked[account] -= amount
    log Unlocked(account=account, amount=amount, locked=self.locked[account])


@external
@nonreentrant
def slash(account: address, amount: uint256, to: address) -> uint256:
    """
    @notice Slashes up to `amount` of `account`'s stake and sends it to `to`.
    @dev Takes bonded stake first, then unbonding stake (unstaking never
         dodges a slash). If bonded stake falls below `locked`, `locked` is
         clamped to it. The lock of the slashed job is NOT released here:
         unlock it first, then slash. Never reverts for lack of stake: it
         slashes what there is and returns that.
    @param account The staker to slash.
    @param amount The most to slash, in token base units.
    @param to The recipient of the slashed tokens (the market itself).
    @return uint256 The amount actually slashed (`<= amount`).
    """
    self._check_caller()
    assert to != empty(address), "stake: slash to zero address"
    bonded: uint256 = self.staked[account]
    from_stake: uint256 = min(amount, bonded)
    from_unbonding: uint256 = min(amount - from_stake, self.unbonding[account])
    if from_stake > 0:
        self.staked[account] = bonded - from_stake
        self.total_staked -= from_stake
        if self.locked[account] > bonded - from_stake:
            self.locked[account] = bonded - from_stake
    if from_unbonding > 0:
        self.unbonding[account] -= from_unbonding
        self.total_unbonding -= from_unbonding
    slashed: uint256 = from_stake + from_unbonding
    log Slashed(account=account, to=to, requested=amount, from_stake=from_stake, from_unbonding=from_unbonding)
    if slashed > 0:
        assert extcall token.transfer(to, slashed, default_return_value=True), "stake: transfer failed"
    return slashed


# EXTERNAL: VIEWS #

@view
@external
def free_stake(account: address) -> uint256:
    """
    @notice Bonded stake that is not locked: `staked - locked`.
    @param account The staker.
    @return uint256 The free stake.
    """
    return self._free(account)


# INTERNAL #

@view
@internal
def _free(account: address) -> uint256:
    return self.staked[account] - self.locked[account]


@view
@internal
def _check_caller():
    # neither is ever the zero address, which no caller can be
    assert msg.sender == self.market or msg.sender == self.court, "stake: caller is not the market or court"
