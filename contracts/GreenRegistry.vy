# pragma version ~=0.4.3
"""
@title GreenRegistry
@custom:contract-name GreenRegistry
@license GNU Affero General Public License v3.0 only
@notice Energy attestations, and the green bonus pool that pays only against
        allowances (docs/protocol.md §2.2, §7).
        Guarantees:
        - an attestation is accepted only if signed (EIP-712, domain
          "greenproof"/"1", this chain, this contract) by a registered
          attestor, with `green_bps <= 10000`, `carbon_g_per_kwh <=
          MAX_CARBON_G_PER_KWH`, `valid_from < valid_until`, `valid_until`
          in the future and a nonce above that attestor's last one for the
          provider (nonces are per (provider, attestor): no attestor can
          lock a provider out of another's attestations);
        - an attestation in force is replaced only by one that is in force
          already (`valid_from <= now`) and starts no earlier than it: a
          pre-signed future attestation, or an older one, submitted by
          anyone, cannot displace it;
        - an attestation is in force only inside `[valid_from, valid_until)`
          and only while its attestor holds the registration it signed
          under (removing an attestor revokes what it signed, and adding it
          back does not revive it);
        - the pool pays a bonus only to the market, for a requester with an
          allowance from a registered allocator:
          `min(payment * max_bonus_bps * green_bps / 10**8, allowance, pool)`;
          the allowance and the pool shrink by what is paid;
        - every amount is bounded (`MAX_AMOUNT = 2**128`), so no product
          overflows: `payment * max_bonus_bps * green_bps < 2**155`;
        - tokens held == `pool` (plus anything sent here directly).
@dev Ownership is snekmate's 2-step ownership; signatures use snekmate's
     `ecdsa` and `eip712_domain_separator`.
"""


# INTERFACES #

from ethereum.ercs import IERC20

from snekmate.auth import ownable
from snekmate.auth import ownable_2step
from snekmate.utils import ecdsa
from snekmate.utils import eip712_domain_separator

from .interfaces import IGreenRegistry

implements: IGreenRegistry

initializes: ownable
initializes: ownable_2step[ownable := ownable]
initializes: eip712_domain_separator

exports: (
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
    ownable_2step.renounce_ownership,
    eip712_domain_separator.eip712Domain,
)


# EVENTS #

event AttestorAdded:
    attestor: indexed(address)


event AttestorRemoved:
    attestor: indexed(address)


event AttestationSubmitted:
    provider: indexed(address)
    attestor: indexed(address)
    green_bps: uint16
    carbon_g_per_kwh: uint32
    region: bytes32
    valid_from: uint64
    valid_until: uint64
    nonce: uint64


event AllocatorAdded:
    allocator: indexed(address)


event AllocatorRemoved:
    allocator: indexed(address)


event AllowanceGranted:
    requester: indexed(address)
    allocator: indexed(address)
    amount: uint256


event AllowanceRevoked:
    requester: indexed(address)
    allocator: indexed(address)
    by: indexed(address)
    amount: uint256


event PoolFunded:
    funder: indexed(address)
    amount: uint256
    pool: uint256


event BonusPaid:
    provider: indexed(address)
    requester: indexed(address)
    allocator: indexed(address)
    payment: uint256
    bonus: uint256
    green_bps: uint256
    allowance: uint256


event MarketSet:
    market: indexed(address)


event MaxBonusBpsSet:
    old_bps: uint256
    new_bps: uint256


event DefaultCarbonIntensitySet:
    old_g_per_kwh: uint256
    new_g_per_kwh: uint256


# CONSTANTS #

BPS: constant(uint256) = 10000

# @dev Hard upper bound for `max_bonus_bps` (+50 % at 100 % green).
MAX_BONUS_BPS_LIMIT: public(constant(uint256)) = 5000

# @dev Hard upper bound for every grid intensity, attested or default (g CO2e
# per kWh); the dirtiest grids are around 1000.
MAX_CARBON_G_PER_KWH: public(constant(uint256)) = 5000

# @dev Upper bound for a payment the bonus is computed on and for an allowance.
MAX_AMOUNT: public(constant(uint256)) = 2**128

ATTESTATION_TYPEHASH: public(constant(bytes32)) = keccak256(
    "EnergyAttestation(address provider,uint16 green_bps,uint32 carbon_g_per_kwh,bytes32 region,uint64 valid_from,uint64 valid_until,uint64 nonce)"
)


# STORAGE #

struct Attestation:
    provider: address
    green_bps: uint16
    carbon_g_per_kwh: uint32
    region: bytes32
    valid_from: uint64
    valid_until: uint64
    nonce: uint64
    attestor: address


struct Allowance:
    amount: uint256
    allocator: address
    term: uint256


token: public(immutable(IERC20))
market: public(address)
max_bonus_bps: public(uint256)
default_carbon_g_per_kwh: public(uint256)
pool: public(uint256)

# @dev A role's registration "term": 0 while the account does not hold the
#      role, else the value of `_last_term` when it was added. What it signed or
#      granted records the term and counts only while the term is unchanged.
_last_term: uint256
_attestor_term: HashMap[address, uint256]
_allocator_term: HashMap[address, uint256]

_attestations: HashMap[address, Attestation]
_attestation_term: HashMap[address, uint256]
_nonces: HashMap[address, HashMap[address, uint64]]
_allowances: HashMap[address, Allowance]


# CONSTRUCTOR #

@deploy
def __init__(token_: address, max_bonus_bps_: uint256, default_carbon_g_per_kwh_: uint256):
    """
    @notice Deploys the registry; the deployer becomes the owner.
    @param token_ The ERC20 token of the bonus pool.
    @param max_bonus_bps_ Bonus at 100 % green, in bps of the payment, `<= 5000`.
    @param default_carbon_g_per_kwh_ Grid intensity used when a provider has no
           attestation in force, `0 < x <= MAX_CARBON_G_PER_KWH`.
    """
    assert token_ != empty(address), "registry: token is zero address"
    assert max_bonus_bps_ <= MAX_BONUS_BPS_LIMIT, "registry: max bonus bps too high"
    self._check_carbon(default_carbon_g_per_kwh_)
    ownable.__init__()
    ownable_2step.__init__()
    eip712_domain_separator.__init__("greenproof", "1")
    token = IERC20(token_)
    self.max_bonus_bps = max_bonus_bps_
    self.default_carbon_g_per_kwh = default_carbon_g_per_kwh_
    log MaxBonusBpsSet(old_bps=0, new_bps=max_bonus_bps_)
    log DefaultCarbonIntensitySet(old_g_per_kwh=0, new_g_per_kwh=default_carbon_g_per_kwh_)


# EXTERNAL: GOVERNANCE #

@external
def set_market(market_: address):
    """
    @notice Wires the job market (the only account that can pay bonuses), once.
    @param market_ The JobMarket contract.
    """
    ownable._check_owner()
    assert self.market == empty(address), "registry: market already set"
    assert market_ != empty(address), "registry: market is zero address"
    self.market = market_
    log MarketSet(market=market_)


@external
def add_attestor(attestor: address):
    """
    @notice Registers an accredited energy auditor.
    @dev Starts a new term: attestations it signed under an earlier
         registration stay revoked.
    @param attestor The address whose EIP-712 signatures are accepted.
    """
    ownable._check_owner()
    assert attestor != empty(address), "registry: attestor is zero address"
    assert self._attestor_term[attestor] == 0, "registry: already an attestor"
    self._attestor_term[attestor] = self._new_term()
    log AttestorAdded(attestor=attestor)


@external
def remove_attestor(attestor: address):
    """
    @notice Deregisters an attestor.
    @dev Attestations it signed stop being in force at once, for good. Its
         nonces are kept.
    @param attestor The attestor to remove.
    """
    ownable._check_owner()
    assert self._attestor_term[attestor] != 0, "registry: not an attestor"
    self._attestor_term[attestor] = 0
    log AttestorRemoved(attestor=attestor)


@external
def add_allocator(allocator: address):
    """
    @notice Registers an allocator, who grants requesters allowances on the bonus pool.
    @dev Starts a new term: allowances it granted under an earlier
         registration stay void.
    @param allocator The allocator.
    """
    ownable._check_owner()
    assert allocator != empty(address), "registry: allocator is zero address"
    assert self._allocator_term[allocator] == 0, "registry: already an allocator"
    self._allocator_term[allocator] = self._new_term()
    log AllocatorAdded(allocator=allocator)


@external
def remove_allocator(allocator: address):
    """
    @notice Deregisters an allocator.
    @dev Every allowance it granted stops counting at once, for good.
    @param allocator The allocator to remove.
    """
    ownable._check_owner()
    assert self._allocator_term[allocator] != 0, "registry: not an allocator"
    self._allocator_term[allocator] = 0
    log AllocatorRemoved(allocator=allocator)


@external
def set_max_bonus_bps(bps: uint256):
    """
    @notice Sets the bonus at 100 % green, in bps of the payment.
    @param bps The new value, `<= MAX_BONUS_BPS_LIMIT` (5000).
    """
    ownable._check_owner()
    assert bps <= MAX_BONUS_BPS_LIMIT, "registry: max bonus bps too high"
    old: uint256 = self.max_bonus_bps
    self.max_bonus_bps = bps
    log MaxBonusBpsSet(old_bps=old, new_bps=bps)


@external
def set_default_carbon_intensity(g_per_kwh: uint256):
    """
    @notice Sets the grid intensity used for providers without an attestation in force.
    @param g_per_kwh Grams CO2e per kWh, `0 < g_per_kwh <= MAX_CARBON_G_PER_KWH`.
    """
    ownable._check_owner()
    self._check_carbon(g_per_kwh)
    old: uint256 = self.default_carbon_g_per_kwh
    self.default_carbon_g_per_kwh = g_per_kwh
    log DefaultCarbonIntensitySet(old_g_per_kwh=old, new_g_per_kwh=g_per_kwh)


# EXTERNAL: ATTESTATIONS #

@external
def submit_attestation(
    provider: address,
    green_bps: uint16,
    carbon_g_per_kwh: uint32,
    region: bytes32,
    valid_from: uint64,
    valid_until: uint64,
    nonce: uint64,
    signature: Bytes[65],
):
    """
    @notice Stores a provider's energy attestation; anyone may submit it.
    @dev Replaces the stored attestation, except that one in force is
         replaced only by an attestation that is in force already and starts
         no earlier: a future one (`valid_from > now`) is refused while one
         is in force (submit it once it starts), and so is one older than
         the one in force. Signature: EIP-712 over `EnergyAttestation(...)`
         (see `attestation_digest`).
    @param provider The attested provider.
    @param green_bps Share of renewable energy, `<= 10000`.
    @param carbon_g_per_kwh Attested grid intensity, g CO2e per kWh, `<= MAX_CARBON_G_PER_KWH`.
    @param region Free-form region tag (e.g. a grid zone code).
    @param valid_from Start of validity (unix seconds, inclusive).
    @param valid_until End of validity (unix seconds, exclusive), in the future.
    @param nonce Must exceed the signing attestor's last accepted nonce for this provider.
    @param signature The attestor's 65-byte (r, s, v) signature.
    """
    assert provider != empty(address), "registry: provider is zero address"
    assert convert(green_bps, uint256) <= BPS, "registry: green_bps above 10000"
    assert convert(carbon_g_per_kwh, uint256) <= MAX_CARBON_G_PER_KWH, "registry: carbon intensity too high"
    assert valid_from < valid_until, "registry: empty validity window"
    assert convert(valid_until, uint256) > block.timestamp, "registry: attestation expired"
    if self._in_force(provider):
        assert convert(valid_from, uint256) <= block.timestamp, "registry: starts in future, one in force"
        assert valid_from >= self._attestations[provider].valid_from, "registry: older than the one in force"
    digest: bytes32 = self._digest(provider, green_bps, carbon_g_per_kwh, region, valid_from, valid_until, nonce)
    signer: address = ecdsa._recover_sig(digest, signature)
    assert self._attestor_term[signer] != 0, "registry: signer not an attestor"
    assert nonce > self._nonces[provider][signer], "registry: stale nonce"
    self._nonces[provider][signer] = nonce
    self._attestations[provider] = Attestation(
        provider=provider,
        green_bps=green_bps,
        carbon_g_per_kwh=carbon_g_per_kwh,
        region=region,
        valid_from=valid_from,
        valid_until=valid_until,
        nonce=nonce,
        attestor=signer,
    )
    self._attestation_term[provider] = self._attestor_term[signer]
    log AttestationSubmitted(
        provider=provider,
        attestor=signer,
        green_bps=green_bps,
        carbon_g_per_kwh=carbon_g_per_kwh,
        region=region,
        valid_from=valid_from,
        valid_until=valid_until,
        nonce=nonce,
    )


# EXTERNAL: ALLOWANCES #

@external
def grant_allowance(requester: address, amount: uint256):
    """
    @notice Sets `requester`'s allowance: the bonus its jobs may still draw from the pool.
    @dev Allocator only. The allowance is accountable to its allocator: while
         it holds a positive allowance granted by a registered allocator,
         no other allocator may grant it one.
    @param requester The requester.
    @param amount Token base units of bonus, `0 < amount <= MAX_AMOUNT`; replaces what is left.
    """
    assert self._allocator_term[msg.sender] != 0, "registry: caller is not an allocator"
    assert requester != empty(address), "registry: requester is zero address"
    assert amount > 0, "registry: zero amount"
    assert amount <= MAX_AMOUNT, "registry: amount above 2**128"
    held: Allowance = self._allowances[requester]
    assert held.allocator == msg.sender or self._allowance(held) == 0, "registry: granted by another allocator"
    self._allowances[requester] = Allowance(
        amount=amount, allocator=msg.sender, term=self._allocator_term[msg.sender]
    )
    log AllowanceGranted(requester=requester, allocator=msg.sender, amount=amount)


@external
def revoke_allowance(requester: address):
    """
    @notice Zeroes `requester`'s allowance.
    @dev The allocator that granted it, or the owner.
    @param requester The requester.
    """
    held: Allowance = self._allowances[requester]
    assert held.allocator != empty(address), "registry: no allowance"
    if msg.sender != ownable.owner:
        assert msg.sender == held.allocator, "registry: not the granting allocator"
    self._allowances[requester] = empty(Allowance)
    log AllowanceRevoked(requester=requester, allocator=held.allocator, by=msg.sender, amount=self._allowance(held))


# EXTERNAL: BONUS POOL #

@external
@nonreentrant
def fund_pool(amount: uint256):
    """
    @notice Adds `amount` of the caller's tokens to the bonus pool (needs an approval).
    @dev The market funds it with the undrawn share of slashes; anyone may donate.
    @param amount Token base units, > 0.
    """
    assert amount > 0, "registry: zero amount"
    self.pool += amount
    log PoolFunded(funder=msg.sender, amount=amount, pool=self.pool)
    assert extcall token.transferFrom(msg.sender, self, amount, default_return_value=True), "registry: transferFrom failed"


@external
@nonreentrant
def pay_bonus(provider: address, requester: address, payment: uint256) -> uint256:
    """
    @notice Pays the green bonus of a job `requester` paid `payment` to `provider`.
    @dev Market only; the market calls it only for a job a committee judged
         ok. Transfers the bonus to the market (msg.sender), which credits the
         provider's claimable balance; the requester's allowance and the pool
         shrink by it. Returns 0 (and moves nothing) when the provider is not
         green, the requester has no allowance or the pool is empty.
    @param provider The paid provider.
    @param requester The job's requester, whose allowance pays.
    @param payment The job payment the bonus is a share of, `<= MAX_AMOUNT`.
    @return uint256 The bonus transferred to the market.
    """
    assert self.market != empty(address), "registry: market not set"
    assert msg.sender == self.market, "registry: caller is not the market"
    bps: uint256 = self._green_bps(provider)
    held: Allowance = self._allowances[requester]
    bonus: uint256 = self._bonus(bps, payment, self._allowance(held))
    left: uint256 = self._allowance(held) - bonus
    if bonus > 0:
        self._allowances[requester].amount = left
        self.pool -= bonus
    log BonusPaid(
        provider=provider,
        requester=requester,
        allocator=held.allocator,
        payment=payment,
        bonus=bonus,
        green_bps=bps,
        allowance=left,
    )
    if bonus > 0:
        assert extcall token.transfer(msg.sender, bonus, default_return_value=True), "registry: transfer failed"
    return bonus


# EXTERNAL: VIEWS #

@view
@external
def bonus_for(provider: address, requester: address, payment: uint256) -> uint256:
    """
    @notice The bonus `pay_bonus` would pay now.
    @param provider The provider.
    @param requester The requester whose allowance would pay.
    @param payment The job payment, `<= MAX_AMOUNT`.
    @return uint256 `payment * max_bonus_bps * green_bps / 10**8`, capped by the allowance and the pool.
    """
    return self._bonus(self._green_bps(provider), payment, self._allowance(self._allowances[requester]))


@view
@external
def allowance_of(requester: address) -> uint256:
    """
    @notice What bonus `requester`'s jobs may still draw (0 once its allocator is removed).
    @param requester The requester.
    @return uint256 Token base units.
    """
    return self._allowance(self._allowances[requester])


@view
@external
def allocator_of(requester: address) -> address:
    """
    @notice The allocator that granted `requester`'s allowance (zero if none).
    @param requester The requester.
    @return address The granting allocator, kept while it is removed (its allowance counts 0).
    """
    return self._allowances[requester].allocator


@view
@external
def is_allocator(account: address) -> bool:
    """
    @notice Whether `account` is a registered allocator.
    @param account The account.
    @return bool True while registered.
    """
    return self._allocator_term[account] != 0


@view
@external
def is_attestor(account: address) -> bool:
    """
    @notice Whether `account` is a registered attestor.
    @param account The account.
    @return bool True while registered.
    """
    return self._attestor_term[account] != 0


@view
@external
def green_bps_of(provider: address) -> uint256:
    """
    @notice The provider's attested renewable share in bps, 0 when none is in force.
    @param provider The provider.
    @return uint256 Green share in bps (0..10000).
    """
    return self._green_bps(provider)


@view
@external
def carbon_intensity_of(provider: address) -> uint256:
    """
    @notice The provider's grid intensity (g CO2e per kWh): attested if in force, else the default.
    @param provider The provider.
    @return uint256 Grams CO2e per kWh, `<= MAX_CARBON_G_PER_KWH`.
    """
    if self._in_force(provider):
        return convert(self._attestations[provider].carbon_g_per_kwh, uint256)
    return self.default_carbon_g_per_kwh


@view
@external
def attestation_of(provider: address) -> Attestation:
    """
    @notice The provider's last accepted attestation (in force or not).
    @param provider The provider.
    @return Attestation The stored attestation (all zero if none), with its attestor.
    """
    return self._attestations[provider]


@view
@external
def attestation_in_force(provider: address) -> bool:
    """
    @notice Whether the provider's attestation is in force now.
    @param provider The provider.
    @return bool True inside `[valid_from, valid_until)` while its attestor holds the registration it signed under.
    """
    return self._in_force(provider)


@view
@external
def nonce_of(provider: address, attestor: address) -> uint64:
    """
    @notice The last nonce `attestor` signed for `provider` that was accepted (0 if none).
    @param provider The provider.
    @param attestor The attestor.
    @return uint64 The nonce; that attestor's next attestation for the provider needs a higher one.
    """
    return self._nonces[provider][attestor]


@view
@external
def attestation_digest(
    provider: address,
    green_bps: uint16,
    carbon_g_per_kwh: uint32,
    region: bytes32,
    valid_from: uint64,
    valid_until: uint64,
    nonce: uint64,
) -> bytes32:
    """
    @notice The EIP-712 digest an attestor signs for these fields.
    @param provider The attested provider.
    @param green_bps Share of renewable energy in bps.
    @param carbon_g_per_kwh Grid intensity.
    @param region Region tag.
    @param valid_from Start of validity.
    @param valid_until End of validity.
    @param nonce Attestation nonce.
    @return bytes32 The EIP-712 typed-data hash (0x1901, domain separator, struct hash).
    """
    return self._digest(provider, green_bps, carbon_g_per_kwh, region, valid_from, valid_until, nonce)


@view
@external
def DOMAIN_SEPARATOR() -> bytes32:
    """
    @notice The EIP-712 domain separator of this contract on this chain.
    @return bytes32 The domain separator.
    """
    return eip712_domain_separator._domain_separator_v4()


# INTERNAL #

@internal
def _new_term() -> uint256:
    """
    @dev A fresh registration term (never 0, never reused).
    """
    self._last_term += 1
    return self._last_term


@pure
@internal
def _check_carbon(g_per_kwh: uint256):
    """
    @dev Bounds a default grid intensity: `0 < g_per_kwh <= MAX_CARBON_G_PER_KWH`.
    """
    assert g_per_kwh > 0, "registry: carbon intensity zero"
    assert g_per_kwh <= MAX_CARBON_G_PER_KWH, "registry: carbon intensity too high"


@view
@internal
def _digest(
    provider: address,
    green_bps: uint16,
    carbon_g_per_kwh: uint32,
    region: bytes32,
    valid_from: uint64,
    valid_until: uint64,
    nonce: uint64,
) -> bytes32:
    """
    @dev The EIP-712 typed-data hash of an `EnergyAttestation`.
    """
    struct_hash: bytes32 = keccak256(
        abi_encode(
            ATTESTATION_TYPEHASH,
            provider,
            green_bps,
            carbon_g_per_kwh,
            region,
            valid_from,
            valid_until,
            nonce,
        )
    )
    return eip712_domain_separator._hash_typed_data_v4(struct_hash)


@view
@internal
def _in_force(provider: address) -> bool:
    """
    @dev Inside its window, and its attestor still in the term it signed under.
    """
    a: Attestation = self._attestations[provider]
    term: uint256 = self._attestation_term[provider]
    if term == 0 or self._attestor_term[a.attestor] != term:
        return False
    return convert(a.valid_from, uint256) <= block.timestamp and block.timestamp < convert(a.valid_until, uint256)


@view
@internal
def _green_bps(provider: address) -> uint256:
    """
    @dev The green share in force, 0 when none is.
    """
    if self._in_force(provider):
        return convert(self._attestations[provider].green_bps, uint256)
    return 0


@view
@internal
def _allowance(held: Allowance) -> uint256:
    """
    @dev What an allowance is worth: its amount while its allocator is in the term it granted under, else 0.
    """
    if held.term == 0 or self._allocator_term[held.allocator] != held.term:
        return 0
    return held.amount


@view
@internal
def _bonus(bps: uint256, payment: uint256, allowance: uint256) -> uint256:
    """
    @dev `min(payment * max_bonus_bps * bps / 10**8, allowance, pool)`; with
         `payment <= 2**128`, `max_bonus_bps <= 5000`, `bps <= 10000` the
         product stays below 2**155.
    """
    assert payment <= MAX_AMOUNT, "registry: payment above 2**128"
    return min(min(payment * self.max_bonus_bps * bps // BPS // BPS, allowance), self.pool)
