# pragma version ~=0.4.3
"""
@title GreenRegistry
@custom:contract-name GreenRegistry
@license GNU Affero General Public License v3.0 only
@notice Energy attestations and the green bonus pool (docs/protocol.md §2.2).
        Guarantees:
        - an attestation is accepted only if signed (EIP-712, domain
          "greenproof"/"1", this chain, this contract) by a registered
          attestor, with `green_bps <= 10000`, a nonce above the provider's
          last one, `valid_from < valid_until` and `valid_until` in the future;
        - an attestation is in force only inside `[valid_from, valid_until)`
          and only while its attestor is still registered (removing an
          attestor revokes what it signed);
        - `bonus_for(p, payment) = payment * max_bonus_bps * green_bps / 10000 / 10000`,
          capped by the pool; only the market can draw on the pool;
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


event PoolFunded:
    funder: indexed(address)
    amount: uint256
    pool: uint256


event BonusPaid:
    provider: indexed(address)
    market: indexed(address)
    payment: uint256
    bonus: uint256
    green_bps: uint256


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

# @dev Hard upper bound for the default grid intensity (g CO2e per kWh);
# the dirtiest grids are around 1000.
MAX_CARBON_G_PER_KWH: public(constant(uint256)) = 5000

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


token: public(immutable(IERC20))
market: public(address)
max_bonus_bps: public(uint256)
default_carbon_g_per_kwh: public(uint256)
pool: public(uint256)

is_attestor: public(HashMap[address, bool])
_attestations: HashMap[address, Attestation]


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
    assert token_ != empty(address), "green: token is zero address"
    assert max_bonus_bps_ <= MAX_BONUS_BPS_LIMIT, "green: max bonus bps too high"
    assert default_carbon_g_per_kwh_ > 0, "green: carbon intensity zero"
    assert default_carbon_g_per_kwh_ <= MAX_CARBON_G_PER_KWH, "green: carbon intensity too high"
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
    assert self.market == empty(address), "green: market already set"
    assert market_ != empty(address), "green: market is zero address"
    self.market = market_
    log MarketSet(market=market_)


@external
def add_attestor(attestor: address):
    """
    @notice Registers an accredited energy auditor.
    @param attestor The address whose EIP-712 signatures are accepted.
    """
    ownable._check_owner()
    assert attestor != empty(address), "green: attestor is zero address"
    assert not self.is_attestor[attestor], "green: already an attestor"
    self.is_attestor[attestor] = True
    log AttestorAdded(attestor=attestor)


@external
def remove_attestor(attestor: address):
    """
    @notice Deregisters an attestor.
    @dev Attestations it signed stop being in force at once.
    @param attestor The attestor to remove.
    """
    ownable._check_owner()
    assert self.is_attestor[attestor], "green: not an attestor"
    self.is_attestor[attestor] = False
    log AttestorRemoved(attestor=attestor)


@external
def set_max_bonus_bps(bps: uint256):
    """
    @notice Sets the bonus at 100 % green, in bps of the payment.
    @param bps The new value, `<= MAX_BONUS_BPS_LIMIT` (5000).
    """
    ownable._check_owner()
    assert bps <= MAX_BONUS_BPS_LIMIT, "green: max bonus bps too high"
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
    assert g_per_kwh > 0, "green: carbon intensity zero"
    assert g_per_kwh <= MAX_CARBON_G_PER_KWH, "green: carbon intensity too high"
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
    @dev The new attestation replaces the previous one. Signature: EIP-712
         over `EnergyAttestation(...)` (see `attestation_digest`).
    @param provider The attested provider.
    @param green_bps Share of renewable energy, `<= 10000`.
    @param carbon_g_per_kwh Attested grid intensity, g CO2e per kWh.
    @param region Free-form region tag (e.g. a grid zone code).
    @param valid_from Start of validity (unix seconds, inclusive).
    @param valid_until End of validity (unix seconds, exclusive), in the future.
    @param nonce Must exceed the provider's last accepted nonce.
    @param signature The attestor's 65-byte (r, s, v) signature.
    """
    assert provider != empty(address), "green: provider is zero address"
    assert convert(green_bps, uint256) <= BPS, "green: green_bps above 10000"
    assert valid_from < valid_until, "green: empty validity window"
    assert convert(valid_until, uint256) > block.timestamp, "green: attestation expired"
    assert nonce > self._attestations[provider].nonce, "green: stale nonce"
    digest: bytes32 = self._digest(provider, green_bps, carbon_g_per_kwh, region, valid_from, valid_until, nonce)
    signer: address = ecdsa._recover_sig(digest, signature)
    assert self.is_attestor[signer], "green: signer not an attestor"
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


# EXTERNAL: BONUS POOL #

@external
@nonreentrant
def fund_pool(amount: uint256):
    """
    @notice Adds `amount` of the caller's tokens to the bonus pool (needs an approval).
    @param amount Token base units, > 0.
    """
    assert amount > 0, "green: zero amount"
    self.pool += amount
    log PoolFunded(funder=msg.sender, amount=amount, pool=self.pool)
    assert extcall token.transferFrom(msg.sender, self, amount, default_return_value=True), "green: transferFrom failed"


@external
@nonreentrant
def pay_bonus(provider: address, payment: uint256) -> uint256:
    """
    @notice Pays the green bonus for a job paid `payment` to `provider`.
    @dev Market only. Transfers the bonus to the market (msg.sender), which
         credits the provider's claimable balance. Returns 0 (and moves
         nothing) when the provider is not green or the pool is empty.
    @param provider The paid provider.
    @param payment The job payment the bonus is a share of.
    @return uint256 The bonus transferred to the market.
    """
    assert self.market != empty(address), "green: market not set"
    assert msg.sender == self.market, "green: caller is not the market"
    bps: uint256 = self._green_bps(provider)
    bonus: uint256 = self._bonus(bps, payment)
    self.pool -= bonus
    log BonusPaid(provider=provider, market=msg.sender, payment=payment, bonus=bonus, green_bps=bps)
    if bonus > 0:
        assert extcall token.transfer(msg.sender, bonus, default_return_value=True), "green: transfer failed"
    return bonus


# EXTERNAL: VIEWS #

@view
@external
def bonus_for(provider: address, payment: uint256) -> uint256:
    """
    @notice The bonus `pay_bonus` would pay now.
    @param provider The provider.
    @param payment The job payment.
    @return uint256 `payment * max_bonus_bps * green_bps / 10000 / 10000`, capped by the pool.
    """
    return self._bonus(self._green_bps(provider), payment)


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
    @return uint256 Grams CO2e per kWh.
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
    @return bool True inside `[valid_from, valid_until)` while its attestor is registered.
    """
    return self._in_force(provider)


@view
@external
def nonce_of(provider: address) -> uint64:
    """
    @notice The provider's last accepted attestation nonce (0 if none).
    @param provider The provider.
    @return uint64 The nonce; the next attestation needs a higher one.
    """
    return self._attestations[provider].nonce


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
    a: Attestation = self._attestations[provider]
    if a.attestor == empty(address) or not self.is_attestor[a.attestor]:
        return False
    return convert(a.valid_from, uint256) <= block.timestamp and block.timestamp < convert(a.valid_until, uint256)


@view
@internal
def _green_bps(provider: address) -> uint256:
    if self._in_force(provider):
        return convert(self._attestations[provider].green_bps, uint256)
    return 0


@view
@internal
def _bonus(bps: uint256, payment: uint256) -> uint256:
    return min(payment * self.max_bonus_bps * bps // BPS // BPS, self.pool)
