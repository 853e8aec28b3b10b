"""GreenRegistry: attestors, EIP-712 energy attestations, allocators, allowances, the bonus pool.

The market-facing calls go through ``MockMarket`` (``wired_market``): the bonus
lands on it, as it lands on the JobMarket that credits the provider.
"""

import ape
import pytest
from conftest import (
    ATTESTATION_TYPES,
    DAY,
    DEFAULT_CARBON_G_PER_KWH,
    MAX_BONUS_BPS,
    sign_attestation,
)
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data

E18 = 10**18
U64 = 2**64 - 1
MAX_AMOUNT = 2**128
ZERO = ape.utils.ZERO_ADDRESS


# ------------------------------------------------------------------ roles of this module


@pytest.fixture(scope="session")
def allocator(accounts):
    """Grants requesters allowances on the bonus pool (no other role in this module)."""
    return accounts[9]


@pytest.fixture(scope="session")
def allocator2(accounts):
    """A second allocator (account 8 plays no other role in the registry's tests)."""
    return accounts[8]


@pytest.fixture(scope="session")
def rogue(accounts):
    """An attestor that turns rogue (account 5 plays no other role in the registry's tests)."""
    return accounts[5]


@pytest.fixture
def registered(green_registry, attestor, owner):
    green_registry.add_attestor(attestor, sender=owner)
    return attestor


@pytest.fixture
def allocators(green_registry, allocator, allocator2, owner):
    green_registry.add_allocator(allocator, sender=owner)
    green_registry.add_allocator(allocator2, sender=owner)
    return allocator, allocator2


def submit(green_registry, fields, signature, sender):
    return green_registry.submit_attestation(
        fields["provider"],
        fields["green_bps"],
        fields["carbon_g_per_kwh"],
        fields["region"],
        fields["valid_from"],
        fields["valid_until"],
        fields["nonce"],
        signature,
        sender=sender,
    )


def attest(green_registry, attestation, provider, signer, **overrides):
    """Sign and submit (as the provider) an attestation; returns its fields."""
    fields, signature = attestation(provider, signer, **overrides)
    submit(green_registry, fields, signature, sender=provider)
    return fields


def stored(green_registry, provider) -> tuple:
    a = green_registry.attestation_of(provider)
    return (a.green_bps, a.carbon_g_per_kwh, a.nonce, a.valid_until)


# ------------------------------------------------------------------ constructor and governance


def test_constructor(green_registry, token, owner):
    assert green_registry.token() == token.address
    assert green_registry.owner() == owner.address
    assert green_registry.max_bonus_bps() == MAX_BONUS_BPS
    assert green_registry.default_carbon_g_per_kwh() == DEFAULT_CARBON_G_PER_KWH
    assert green_registry.pool() == 0
    assert green_registry.market() == ZERO
    assert green_registry.MAX_AMOUNT() == MAX_AMOUNT
    _, name, version, chain_id, contract, _, _ = green_registry.eip712Domain()
    assert (name, version, contract) == ("greenproof", "1", green_registry.address)


@pytest.mark.parametrize(
    "token_zero, bonus, carbon, reason",
    [
        (True, 2_000, 400, "registry: token is zero address"),
        (False, 5_001, 400, "registry: max bonus bps too high"),
        (False, 2_000, 0, "registry: carbon intensity zero"),
        (False, 2_000, 5_001, "registry: carbon intensity too high"),
    ],
)
def test_constructor_bounds(project, owner, token, token_zero, bonus, carbon, reason):
    with ape.reverts(reason):
        owner.deploy(project.GreenRegistry, ZERO if token_zero else token, bonus, carbon)


def test_set_market_once(green_registry, mock_market, owner, stranger):
    with ape.reverts("ownable: caller is not the owner"):
        green_registry.set_market(mock_market, sender=stranger)
    with ape.reverts("registry: market is zero address"):
        green_registry.set_market(ZERO, sender=owner)
    tx = green_registry.set_market(mock_market, sender=owner)
    assert [log.market for log in tx.decode_logs(green_registry.MarketSet)] == [mock_market.address]
    with ape.reverts("registry: market already set"):
        green_registry.set_market(mock_market, sender=owner)


@pytest.mark.parametrize("role", ["attestor", "allocator"])
def test_owner_adds_and_removes_attestors_and_allocators(
    green_registry, attestor, allocator, owner, stranger, role
):
    who = attestor if role == "attestor" else allocator
    add, remove = getattr(green_registry, f"add_{role}"), getattr(green_registry, f"remove_{role}")
    is_role = getattr(green_registry, f"is_{role}")
    added, removed = (getattr(green_registry, f"{role.capitalize()}{what}") for what in ("Added", "Removed"))
    with ape.reverts("ownable: caller is not the owner"):
        add(who, sender=stranger)
    with ape.reverts(f"registry: {role} is zero address"):
        add(ZERO, sender=owner)
    with ape.reverts(f"registry: not an {role}"):
        remove(who, sender=owner)
    tx = add(who, sender=owner)
    assert [log[role] for log in tx.decode_logs(added)] == [who.address]
    assert is_role(who)
    with ape.reverts(f"registry: already an {role}"):
        add(who, sender=owner)
    with ape.reverts("ownable: caller is not the owner"):
        remove(who, sender=stranger)
    tx = remove(who, sender=owner)
    assert [log[role] for log in tx.decode_logs(removed)] == [who.address]
    assert not is_role(who)


def test_set_max_bonus_bps(green_registry, owner, stranger):
    tx = green_registry.set_max_bonus_bps(5_000, sender=owner)
    (log,) = tx.decode_logs(green_registry.MaxBonusBpsSet)
    assert (log.old_bps, log.new_bps) == (MAX_BONUS_BPS, 5_000)
    with ape.reverts("registry: max bonus bps too high"):
        green_registry.set_max_bonus_bps(5_001, sender=owner)
    with ape.reverts("ownable: caller is not the owner"):
        green_registry.set_max_bonus_bps(0, sender=stranger)
    green_registry.set_max_bonus_bps(0, sender=owner)
    assert green_registry.max_bonus_bps() == 0


def test_set_default_carbon_intensity(green_registry, provider, owner, stranger):
    tx = green_registry.set_default_carbon_intensity(700, sender=owner)
    (log,) = tx.decode_logs(green_registry.DefaultCarbonIntensitySet)
    assert (log.old_g_per_kwh, log.new_g_per_kwh) == (DEFAULT_CARBON_G_PER_KWH, 700)
    assert green_registry.carbon_intensity_of(provider) == 700
    with ape.reverts("registry: carbon intensity zero"):
        green_registry.set_default_carbon_intensity(0, sender=owner)
    with ape.reverts("registry: carbon intensity too high"):
        green_registry.set_default_carbon_intensity(5_001, sender=owner)
    with ape.reverts("ownable: caller is not the owner"):
        green_registry.set_default_carbon_intensity(300, sender=stranger)


# ------------------------------------------------------------------ attestations


def test_python_digest_matches_contract(chain, green_registry, provider, attestation, attestor):
    """eth-account's EIP-712 hash equals the contract's `attestation_digest`."""
    fields, signature = attestation(provider, attestor)
    domain = {
        "name": "greenproof",
        "version": "1",
        "chainId": chain.chain_id,
        "verifyingContract": green_registry.address,
    }
    digest = _hash_eip191_message(encode_typed_data(domain, ATTESTATION_TYPES, fields))
    assert (
        green_registry.attestation_digest(
            fields["provider"],
            fields["green_bps"],
            fields["carbon_g_per_kwh"],
            fields["region"],
            fields["valid_from"],
            fields["valid_until"],
            fields["nonce"],
        )
        == digest
    )
    assert Account._recover_hash(digest, signature=signature) == attestor.address


def test_signed_attestation_is_accepted(
    green_registry, registered, provider, stranger, attestation
):
    fields, signature = attestation(provider, registered, green_bps=9_500, carbon_g_per_kwh=30)
    tx = submit(green_registry, fields, signature, sender=stranger)  # anyone may submit
    (log,) = tx.decode_logs(green_registry.AttestationSubmitted)
    assert (log["provider"], log.attestor, log.green_bps, log.nonce) == (
        provider.address,
        registered.address,
        9_500,
        1,
    )
    assert green_registry.green_bps_of(provider) == 9_500
    assert green_registry.carbon_intensity_of(provider) == 30
    assert green_registry.attestation_in_force(provider)
    assert green_registry.nonce_of(provider, registered) == 1
    a = green_registry.attestation_of(provider)
    assert (a.provider, a.attestor, a.region) == (
        provider.address,
        registered.address,
        fields["region"],
    )
    assert (a.valid_from, a.valid_until) == (fields["valid_from"], fields["valid_until"])


def test_no_attestation_means_zero_green_and_default_carbon(green_registry, provider, attestor):
    assert green_registry.green_bps_of(provider) == 0
    assert green_registry.carbon_intensity_of(provider) == DEFAULT_CARBON_G_PER_KWH
    assert not green_registry.attestation_in_force(provider)
    assert green_registry.attestation_of(provider).nonce == 0
    assert green_registry.nonce_of(provider, attestor) == 0


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"green_bps": 10_001}, "registry: green_bps above 10000"),
        ({"carbon_g_per_kwh": 5_001}, "registry: carbon intensity too high"),
        (
            {"valid_from": 2_000_000_000, "valid_until": 2_000_000_000},
            "registry: empty validity window",
        ),
        ({"valid_from": 1_000, "valid_until": 2_000}, "registry: attestation expired"),
        ({"nonce": 0}, "registry: stale nonce"),
    ],
)
def test_bad_attestation_is_rejected(
    green_registry, registered, provider, stranger, attestation, overrides, reason
):
    fields, signature = attestation(provider, registered, **overrides)
    with ape.reverts(reason):
        submit(green_registry, fields, signature, sender=stranger)
    assert green_registry.attestation_of(provider).nonce == 0
    assert green_registry.green_bps_of(provider) == 0


def test_attested_carbon_up_to_the_bound_is_accepted(
    green_registry, registered, provider, attestation
):
    attest(green_registry, attestation, provider, registered, carbon_g_per_kwh=5_000)
    assert green_registry.carbon_intensity_of(provider) == green_registry.MAX_CARBON_G_PER_KWH()


def test_wrong_signer_is_rejected(green_registry, registered, provider, stranger, attestation):
    fields, signature = attestation(provider, stranger)  # stranger is not an attestor
    with ape.reverts("registry: signer not an attestor"):
        submit(green_registry, fields, signature, sender=provider)
    # a valid signature over different fields recovers someone else
    fields, signature = attestation(provider, registered)
    with ape.reverts("registry: signer not an attestor"):
        submit(green_registry, {**fields, "green_bps": 10_000}, signature, sender=provider)
    assert green_registry.green_bps_of(provider) == 0
    assert green_registry.attestation_of(provider).nonce == 0


def test_signature_for_another_contract_is_rejected(
    chain, green_registry, registered, provider, attestation, project, owner, token
):
    other = owner.deploy(project.GreenRegistry, token, MAX_BONUS_BPS, DEFAULT_CARBON_G_PER_KWH)
    fields, _ = attestation(provider, registered)
    signature = sign_attestation(other, chain.chain_id, registered.private_key, fields)
    with ape.reverts("registry: signer not an attestor"):
        submit(green_registry, fields, signature, sender=provider)


def test_nonce_must_increase(green_registry, registered, provider, attestation):
    attest(green_registry, attestation, provider, registered, nonce=5, green_bps=6_000)
    for stale in (5, 4):
        fields, signature = attestation(provider, registered, nonce=stale, green_bps=10_000)
        with ape.reverts("registry: stale nonce"):
            submit(green_registry, fields, signature, sender=provider)
    assert stored(green_registry, provider)[:3] == (6_000, 50, 5)
    attest(green_registry, attestation, provider, registered, nonce=6, green_bps=10_000)
    assert green_registry.green_bps_of(provider) == 10_000


def test_rogue_attestor_max_nonce_does_not_lock_the_provider_out(
    green_registry, registered, rogue, provider, owner, attestation
):
    """Measured: a rogue attestor signing nonce 2**64-1 locked the provider out of every
    future attestation, even after the rogue was removed. Nonces are per (provider, attestor)."""
    green_registry.add_attestor(rogue, sender=owner)
    attest(green_registry, attestation, provider, rogue, nonce=U64, green_bps=0)
    assert green_registry.nonce_of(provider, rogue) == U64
    assert green_registry.nonce_of(provider, registered) == 0
    # while the rogue is registered, another attestor's nonce 1 still goes through
    attest(green_registry, attestation, provider, registered, nonce=1, green_bps=9_000)
    assert green_registry.green_bps_of(provider) == 9_000
    assert green_registry.nonce_of(provider, registered) == 1
    assert green_registry.nonce_of(provider, rogue) == U64
    # the rogue's maxed nonce locks only itself out
    fields, signature = attestation(provider, rogue, nonce=U64, green_bps=0)
    with ape.reverts("registry: stale nonce"):
        submit(green_registry, fields, signature, sender=provider)


def test_removed_rogue_attestation_stops_counting_and_others_replace_it(
    chain, green_registry, registered, rogue, provider, owner, attestation
):
    green_registry.add_attestor(rogue, sender=owner)
    attest(
        green_registry, attestation, provider, rogue, nonce=U64, green_bps=0,
        carbon_g_per_kwh=5_000, valid_from=chain.pending_timestamp,
    )
    assert green_registry.attestation_in_force(provider)
    green_registry.remove_attestor(rogue, sender=owner)
    assert not green_registry.attestation_in_force(provider)
    assert green_registry.carbon_intensity_of(provider) == DEFAULT_CARBON_G_PER_KWH
    # an honest attestation that starts before the rogue's replaces it (it no longer counts)
    attest(
        green_registry, attestation, provider, registered, nonce=1, green_bps=7_000,
        valid_from=chain.pending_timestamp - DAY,
    )
    assert green_registry.green_bps_of(provider) == 7_000
    assert green_registry.attestation_of(provider).attestor == registered.address


def test_future_attestation_does_not_replace_the_one_in_force(
    chain, green_registry, registered, provider, stranger, attestation
):
    """Measured: the provider's pre-signed next-month attestation, submitted early by someone
    else, replaced the one in force and zeroed its green share for a month."""
    now = chain.pending_timestamp
    current = attest(
        green_registry, attestation, provider, registered, nonce=1, green_bps=8_000,
        valid_from=now - 60, valid_until=now + 30 * DAY,
    )
    next_month, signature = attestation(
        provider, registered, nonce=2, green_bps=9_000,
        valid_from=current["valid_until"], valid_until=current["valid_until"] + 30 * DAY,
    )
    with ape.reverts("registry: starts in future, one in force"):
        submit(green_registry, next_month, signature, sender=stranger)
    assert green_registry.green_bps_of(provider) == 8_000
    assert stored(green_registry, provider)[2] == 1
    # once it starts (the current one just expired), anyone may submit it
    chain.mine(timestamp=next_month["valid_from"])
    submit(green_registry, next_month, signature, sender=stranger)
    assert green_registry.green_bps_of(provider) == 9_000


def test_future_attestation_is_stored_when_none_is_in_force(
    chain, green_registry, registered, provider, attestation
):
    now = chain.pending_timestamp
    attest(
        green_registry, attestation, provider, registered, valid_from=now + DAY,
        valid_until=now + 2 * DAY,
    )
    assert green_registry.green_bps_of(provider) == 0  # not yet
    assert green_registry.carbon_intensity_of(provider) == DEFAULT_CARBON_G_PER_KWH
    chain.mine(timestamp=now + DAY)
    assert green_registry.green_bps_of(provider) == 8_000
    assert green_registry.carbon_intensity_of(provider) == 50
    chain.mine(timestamp=now + 2 * DAY)  # valid_until is exclusive
    assert green_registry.green_bps_of(provider) == 0
    assert green_registry.carbon_intensity_of(provider) == DEFAULT_CARBON_G_PER_KWH


def test_older_attestation_does_not_replace_a_newer_one_in_force(
    chain, green_registry, registered, rogue, provider, owner, stranger, attestation
):
    """Another attestor's still-valid attestation that starts earlier (e.g. leaked, never
    submitted) cannot displace the newer one in force; one that starts later can."""
    green_registry.add_attestor(rogue, sender=owner)
    now = chain.pending_timestamp
    older, signature = attestation(provider, rogue, green_bps=1_000, valid_from=now - 10 * DAY)
    attest(green_registry, attestation, provider, registered, green_bps=9_000, valid_from=now - DAY)
    with ape.reverts("registry: older than the one in force"):
        submit(green_registry, older, signature, sender=stranger)
    assert green_registry.green_bps_of(provider) == 9_000
    attest(green_registry, attestation, provider, rogue, nonce=2, green_bps=5_000,
           valid_from=now - DAY)
    assert green_registry.green_bps_of(provider) == 5_000


def test_removing_the_attestor_revokes_its_attestations_for_good(
    green_registry, registered, provider, owner, attestation
):
    attest(green_registry, attestation, provider, registered)
    assert green_registry.green_bps_of(provider) == 8_000
    green_registry.remove_attestor(registered, sender=owner)
    assert green_registry.green_bps_of(provider) == 0
    assert green_registry.carbon_intensity_of(provider) == DEFAULT_CARBON_G_PER_KWH
    # adding the attestor back does not revive what it signed before
    green_registry.add_attestor(registered, sender=owner)
    assert not green_registry.attestation_in_force(provider)
    assert green_registry.green_bps_of(provider) == 0
    # but its new attestations count; its nonces were kept
    fields, signature = attestation(provider, registered, nonce=1)
    with ape.reverts("registry: stale nonce"):
        submit(green_registry, fields, signature, sender=provider)
    attest(green_registry, attestation, provider, registered, nonce=2, green_bps=6_000)
    assert green_registry.green_bps_of(provider) == 6_000


def test_garbage_signature_is_rejected(green_registry, registered, provider, attestation):
    fields, _ = attestation(provider, registered)
    with ape.reverts("ecdsa: invalid signature"):
        submit(green_registry, fields, b"\x01" * 64 + b"\x00", sender=provider)


# ------------------------------------------------------------------ allocators and allowances


def test_allocator_grants_and_regrants_an_allowance(
    green_registry, allocators, requester, stranger, owner
):
    allocator, _ = allocators
    for who in (stranger, owner):  # neither is an allocator
        with ape.reverts("registry: caller is not an allocator"):
            green_registry.grant_allowance(requester, E18, sender=who)
    with ape.reverts("registry: requester is zero address"):
        green_registry.grant_allowance(ZERO, E18, sender=allocator)
    with ape.reverts("registry: zero amount"):
        green_registry.grant_allowance(requester, 0, sender=allocator)
    with ape.reverts("registry: amount above 2**128"):
        green_registry.grant_allowance(requester, MAX_AMOUNT + 1, sender=allocator)
    tx = green_registry.grant_allowance(requester, 500 * E18, sender=allocator)
    (log,) = tx.decode_logs(green_registry.AllowanceGranted)
    assert (log.requester, log.allocator, log.amount) == (
        requester.address, allocator.address, 500 * E18
    )
    assert green_registry.allowance_of(requester) == 500 * E18
    assert green_registry.allocator_of(requester) == allocator.address
    # a new grant by the same allocator replaces what is left
    green_registry.grant_allowance(requester, 200 * E18, sender=allocator)
    assert green_registry.allowance_of(requester) == 200 * E18
    green_registry.grant_allowance(requester, MAX_AMOUNT, sender=allocator)
    assert green_registry.allowance_of(requester) == MAX_AMOUNT


def test_an_allowance_is_accountable_to_its_allocator(
    green_registry, allocators, requester, owner, stranger
):
    allocator, other = allocators
    green_registry.grant_allowance(requester, 500 * E18, sender=allocator)
    with ape.reverts("registry: granted by another allocator"):
        green_registry.grant_allowance(requester, 900 * E18, sender=other)
    with ape.reverts("registry: not the granting allocator"):
        green_registry.revoke_allowance(requester, sender=other)
    with ape.reverts("registry: not the granting allocator"):
        green_registry.revoke_allowance(requester, sender=stranger)
    tx = green_registry.revoke_allowance(requester, sender=allocator)
    (log,) = tx.decode_logs(green_registry.AllowanceRevoked)
    assert (log.requester, log.allocator, log.by, log.amount) == (
        requester.address, allocator.address, allocator.address, 500 * E18
    )
    assert green_registry.allowance_of(requester) == 0
    assert green_registry.allocator_of(requester) == ZERO
    with ape.reverts("registry: no allowance"):
        green_registry.revoke_allowance(requester, sender=allocator)
    # with nothing held, another allocator may grant; the owner may revoke any
    green_registry.grant_allowance(requester, 900 * E18, sender=other)
    tx = green_registry.revoke_allowance(requester, sender=owner)
    (log,) = tx.decode_logs(green_registry.AllowanceRevoked)
    assert (log.allocator, log.by, log.amount) == (other.address, owner.address, 900 * E18)


def test_removing_an_allocator_voids_its_allowances_for_good(
    green_registry, allocators, requester, owner
):
    allocator, other = allocators
    green_registry.grant_allowance(requester, 500 * E18, sender=allocator)
    green_registry.remove_allocator(allocator, sender=owner)
    assert green_registry.allowance_of(requester) == 0
    with ape.reverts("registry: caller is not an allocator"):
        green_registry.grant_allowance(requester, E18, sender=allocator)
    green_registry.add_allocator(allocator, sender=owner)
    assert green_registry.allowance_of(requester) == 0  # not revived
    # a void allowance blocks nobody
    green_registry.grant_allowance(requester, 300 * E18, sender=other)
    assert green_registry.allowance_of(requester) == 300 * E18
    assert green_registry.allocator_of(requester) == other.address


# ------------------------------------------------------------------ pool and bonus


def test_fund_pool(token, green_registry, funded, stranger):
    with ape.reverts("registry: zero amount"):
        green_registry.fund_pool(0, sender=stranger)
    tx = green_registry.fund_pool(500 * E18, sender=stranger)
    (log,) = tx.decode_logs(green_registry.PoolFunded)
    assert (log.funder, log.amount, log.pool) == (stranger.address, 500 * E18, 500 * E18)
    assert green_registry.pool() == 500 * E18
    assert token.balanceOf(green_registry) == 500 * E18


def test_bonus_is_the_least_of_formula_allowance_and_pool(
    green_registry, registered, allocators, funded, provider, requester, stranger, attestation
):
    allocator, _ = allocators
    attest(green_registry, attestation, provider, registered, green_bps=7_500)
    payment = 1_000 * E18
    expected = payment * MAX_BONUS_BPS * 7_500 // 10_000 // 10_000  # 150 tokens
    assert expected == 150 * E18
    assert green_registry.bonus_for(provider, requester, payment) == 0  # no allowance, no pool
    green_registry.fund_pool(10_000 * E18, sender=stranger)
    assert green_registry.bonus_for(provider, requester, payment) == 0  # still no allowance
    green_registry.grant_allowance(requester, 10**9 * E18, sender=allocator)
    assert green_registry.bonus_for(provider, requester, payment) == expected
    assert green_registry.bonus_for(stranger, requester, payment) == 0  # not attested
    assert green_registry.bonus_for(provider, requester, 10**9 * E18) == 10_000 * E18  # pool
    green_registry.grant_allowance(requester, 40 * E18, sender=allocator)
    assert green_registry.bonus_for(provider, requester, payment) == 40 * E18  # allowance


def test_bonus_arithmetic_cannot_overflow(
    green_registry, registered, allocators, funded, provider, requester, owner, stranger,
    attestation,
):
    """Every factor at its bound: `payment * max_bonus_bps * green_bps` stays below 2**155."""
    allocator, _ = allocators
    green_registry.set_max_bonus_bps(green_registry.MAX_BONUS_BPS_LIMIT(), sender=owner)
    attest(green_registry, attestation, provider, registered, green_bps=10_000)
    green_registry.grant_allowance(requester, MAX_AMOUNT, sender=allocator)
    green_registry.fund_pool(E18, sender=stranger)
    assert green_registry.bonus_for(provider, requester, MAX_AMOUNT) == E18
    with ape.reverts("registry: payment above 2**128"):
        green_registry.bonus_for(provider, requester, MAX_AMOUNT + 1)


def test_pay_bonus_is_market_only(green_registry, mock_market, owner, provider, requester, stranger):
    with ape.reverts("registry: market not set"):
        green_registry.pay_bonus(provider, requester, E18, sender=stranger)
    green_registry.set_market(mock_market, sender=owner)
    with ape.reverts("registry: caller is not the market"):
        green_registry.pay_bonus(provider, requester, E18, sender=stranger)


def test_self_dealt_jobs_do_not_drain_the_pool_without_an_allowance(
    token, green_registry, wired_market, registered, allocators, funded, provider, stranger,
    attestation,
):
    """Measured: a requester that was also the provider was paid five 20 % bonuses on
    one-segment jobs and drained 1 000 from a 10 000 pool. The pool now pays only against an
    allowance an allocator granted to the requester."""
    allocator, _ = allocators
    attest(green_registry, attestation, provider, registered, green_bps=10_000)
    green_registry.fund_pool(10_000 * E18, sender=stranger)
    for _ in range(5):
        tx = wired_market.pay_bonus(provider, provider, 1_000 * E18, sender=provider)
        (log,) = tx.decode_logs(green_registry.BonusPaid)
        assert (log.bonus, log.allocator, log.allowance) == (0, ZERO, 0)
    assert green_registry.pool() == token.balanceOf(green_registry) == 10_000 * E18
    assert token.balanceOf(wired_market) == 0
    # with an allowance, the self-dealer draws at most what its allocator granted
    green_registry.grant_allowance(provider, 300 * E18, sender=allocator)
    paid = []
    for _ in range(3):
        tx = wired_market.pay_bonus(provider, provider, 1_000 * E18, sender=provider)
        paid += [log.bonus for log in tx.decode_logs(green_registry.BonusPaid)]
    assert paid == [200 * E18, 100 * E18, 0]
    assert green_registry.pool() == 9_700 * E18
    assert green_registry.allowance_of(provider) == 0


def test_pay_bonus_transfers_to_the_market_and_draws_the_allowance(
    token, green_registry, wired_market, registered, allocators, funded, provider, requester,
    stranger, attestation,
):
    allocator, _ = allocators
    attest(green_registry, attestation, provider, registered, green_bps=10_000)
    green_registry.fund_pool(300 * E18, sender=stranger)
    green_registry.grant_allowance(requester, 1_000 * E18, sender=allocator)
    tx = wired_market.pay_bonus(provider, requester, 1_000 * E18, sender=stranger)
    (log,) = tx.decode_logs(green_registry.BonusPaid)
    assert (log["provider"], log.requester, log.allocator) == (
        provider.address, requester.address, allocator.address
    )
    assert (log.payment, log.bonus, log.green_bps, log.allowance) == (
        1_000 * E18, 200 * E18, 10_000, 800 * E18
    )
    assert token.balanceOf(wired_market) == 200 * E18
    assert green_registry.pool() == 100 * E18
    assert green_registry.allowance_of(requester) == 800 * E18
    # the pool caps the next bonus, then it is empty and pays nothing
    wired_market.pay_bonus(provider, requester, 1_000 * E18, sender=stranger)
    assert token.balanceOf(wired_market) == 300 * E18
    assert green_registry.pool() == 0
    assert green_registry.allowance_of(requester) == 700 * E18
    tx = wired_market.pay_bonus(provider, requester, 1_000 * E18, sender=stranger)
    assert [log.bonus for log in tx.decode_logs(green_registry.BonusPaid)] == [0]
    assert token.balanceOf(green_registry) == green_registry.pool() == 0
    assert green_registry.allowance_of(requester) == 700 * E18


def test_a_removed_allocators_allowance_pays_nothing(
    token, green_registry, wired_market, registered, allocators, funded, provider, requester,
    owner, stranger, attestation,
):
    allocator, _ = allocators
    attest(green_registry, attestation, provider, registered, green_bps=10_000)
    green_registry.fund_pool(1_000 * E18, sender=stranger)
    green_registry.grant_allowance(requester, 1_000 * E18, sender=allocator)
    green_registry.remove_allocator(allocator, sender=owner)
    tx = wired_market.pay_bonus(provider, requester, 1_000 * E18, sender=stranger)
    assert [log.bonus for log in tx.decode_logs(green_registry.BonusPaid)] == [0]
    assert green_registry.pool() == 1_000 * E18


def test_two_step_ownership(green_registry, owner, stranger, attestor):
    green_registry.transfer_ownership(stranger, sender=owner)
    green_registry.accept_ownership(sender=stranger)
    assert green_registry.owner() == stranger.address
    with ape.reverts("ownable: caller is not the owner"):
        green_registry.add_attestor(attestor, sender=owner)
    green_registry.add_attestor(attestor, sender=stranger)
    assert green_registry.is_attestor(attestor)
