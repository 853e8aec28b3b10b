"""GreenRegistry: attestors, EIP-712 energy attestations, the green bonus pool."""

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
ZERO = ape.utils.ZERO_ADDRESS


@pytest.fixture
def registered(green_registry, attestor, owner):
    green_registry.add_attestor(attestor, sender=owner)
    return attestor


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
    _, name, version, chain_id, contract, _, _ = green_registry.eip712Domain()
    assert (name, version, contract) == ("greenproof", "1", green_registry.address)


@pytest.mark.parametrize(
    "token_zero, bonus, carbon, reason",
    [
        (True, 2_000, 400, "green: token is zero address"),
        (False, 5_001, 400, "green: max bonus bps too high"),
        (False, 2_000, 0, "green: carbon intensity zero"),
        (False, 2_000, 5_001, "green: carbon intensity too high"),
    ],
)
def test_constructor_bounds(project, owner, token, token_zero, bonus, carbon, reason):
    with ape.reverts(reason):
        owner.deploy(project.GreenRegistry, ZERO if token_zero else token, bonus, carbon)


def test_set_market_once(green_registry, mock_market, owner, stranger):
    with ape.reverts("ownable: caller is not the owner"):
        green_registry.set_market(mock_market, sender=stranger)
    with ape.reverts("green: market is zero address"):
        green_registry.set_market(ZERO, sender=owner)
    tx = green_registry.set_market(mock_market, sender=owner)
    assert [log.market for log in tx.decode_logs(green_registry.MarketSet)] == [mock_market.address]
    with ape.reverts("green: market already set"):
        green_registry.set_market(mock_market, sender=owner)


def test_attestor_registry(green_registry, attestor, owner, stranger):
    with ape.reverts("ownable: caller is not the owner"):
        green_registry.add_attestor(attestor, sender=stranger)
    with ape.reverts("green: attestor is zero address"):
        green_registry.add_attestor(ZERO, sender=owner)
    with ape.reverts("green: not an attestor"):
        green_registry.remove_attestor(attestor, sender=owner)
    tx = green_registry.add_attestor(attestor, sender=owner)
    assert [log.attestor for log in tx.decode_logs(green_registry.AttestorAdded)] == [
        attestor.address
    ]
    assert green_registry.is_attestor(attestor)
    with ape.reverts("green: already an attestor"):
        green_registry.add_attestor(attestor, sender=owner)
    with ape.reverts("ownable: caller is not the owner"):
        green_registry.remove_attestor(attestor, sender=stranger)
    tx = green_registry.remove_attestor(attestor, sender=owner)
    assert [log.attestor for log in tx.decode_logs(green_registry.AttestorRemoved)] == [
        attestor.address
    ]
    assert not green_registry.is_attestor(attestor)


def test_set_max_bonus_bps(green_registry, owner, stranger):
    tx = green_registry.set_max_bonus_bps(5_000, sender=owner)
    (log,) = tx.decode_logs(green_registry.MaxBonusBpsSet)
    assert (log.old_bps, log.new_bps) == (MAX_BONUS_BPS, 5_000)
    with ape.reverts("green: max bonus bps too high"):
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
    with ape.reverts("green: carbon intensity zero"):
        green_registry.set_default_carbon_intensity(0, sender=owner)
    with ape.reverts("green: carbon intensity too high"):
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
    assert green_registry.nonce_of(provider) == 1
    a = green_registry.attestation_of(provider)
    assert (a.provider, a.attestor, a.region) == (
        provider.address,
        registered.address,
        fields["region"],
    )
    assert (a.valid_from, a.valid_until) == (fields["valid_from"], fields["valid_until"])


def test_no_attestation_means_zero_green_and_default_carbon(green_registry, provider):
    assert green_registry.green_bps_of(provider) == 0
    assert green_registry.carbon_intensity_of(provider) == DEFAULT_CARBON_G_PER_KWH
    assert not green_registry.attestation_in_force(provider)
    assert green_registry.attestation_of(provider).nonce == 0


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"green_bps": 10_001}, "green: green_bps above 10000"),
        (
            {"valid_from": 2_000_000_000, "valid_until": 2_000_000_000},
            "green: empty validity window",
        ),
        ({"valid_from": 1_000, "valid_until": 2_000}, "green: attestation expired"),
        ({"nonce": 0}, "green: stale nonce"),
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


def test_wrong_signer_is_rejected(green_registry, registered, provider, stranger, attestation):
    fields, signature = attestation(provider, stranger)  # stranger is not an attestor
    with ape.reverts("green: signer not an attestor"):
        submit(green_registry, fields, signature, sender=provider)
    # a valid signature over different fields recovers someone else
    fields, signature = attestation(provider, registered)
    with ape.reverts("green: signer not an attestor"):
        submit(green_registry, {**fields, "green_bps": 10_000}, signature, sender=provider)
    assert green_registry.green_bps_of(provider) == 0
    assert green_registry.attestation_of(provider).nonce == 0


def test_signature_for_another_contract_is_rejected(
    chain, green_registry, registered, provider, attestation, project, owner, token
):
    other = owner.deploy(project.GreenRegistry, token, MAX_BONUS_BPS, DEFAULT_CARBON_G_PER_KWH)
    fields, _ = attestation(provider, registered)
    signature = sign_attestation(other, chain.chain_id, registered.private_key, fields)
    with ape.reverts("green: signer not an attestor"):
        submit(green_registry, fields, signature, sender=provider)


def test_nonce_must_increase(green_registry, registered, provider, attestation):
    fields, signature = attestation(provider, registered, nonce=5, green_bps=6_000)
    submit(green_registry, fields, signature, sender=provider)
    for stale in (5, 4):
        fields, signature = attestation(provider, registered, nonce=stale, green_bps=10_000)
        with ape.reverts("green: stale nonce"):
            submit(green_registry, fields, signature, sender=provider)
    assert stored(green_registry, provider)[:3] == (6_000, 50, 5)
    fields, signature = attestation(provider, registered, nonce=6, green_bps=10_000)
    submit(green_registry, fields, signature, sender=provider)
    assert green_registry.green_bps_of(provider) == 10_000


def test_attestation_in_force_only_inside_its_window(
    chain, green_registry, registered, provider, attestation
):
    now = chain.pending_timestamp
    fields, signature = attestation(
        provider, registered, valid_from=now + DAY, valid_until=now + 2 * DAY
    )
    submit(green_registry, fields, signature, sender=provider)
    assert green_registry.green_bps_of(provider) == 0  # not yet
    assert green_registry.carbon_intensity_of(provider) == DEFAULT_CARBON_G_PER_KWH
    chain.mine(timestamp=now + DAY)
    assert green_registry.green_bps_of(provider) == 8_000
    assert green_registry.carbon_intensity_of(provider) == 50
    chain.mine(timestamp=now + 2 * DAY)  # valid_until is exclusive
    assert green_registry.green_bps_of(provider) == 0
    assert green_registry.carbon_intensity_of(provider) == DEFAULT_CARBON_G_PER_KWH


def test_removing_the_attestor_revokes_its_attestations(
    green_registry, registered, provider, owner, attestation
):
    fields, signature = attestation(provider, registered)
    submit(green_registry, fields, signature, sender=provider)
    assert green_registry.green_bps_of(provider) == 8_000
    green_registry.remove_attestor(registered, sender=owner)
    assert green_registry.green_bps_of(provider) == 0
    assert green_registry.carbon_intensity_of(provider) == DEFAULT_CARBON_G_PER_KWH


def test_garbage_signature_is_rejected(green_registry, registered, provider, attestation):
    fields, _ = attestation(provider, registered)
    with ape.reverts("ecdsa: invalid signature"):
        submit(green_registry, fields, b"\x01" * 64 + b"\x00", sender=provider)


# ------------------------------------------------------------------ pool and bonus


def test_fund_pool(token, green_registry, funded, stranger):
    with ape.reverts("green: zero amount"):
        green_registry.fund_pool(0, sender=stranger)
    tx = green_registry.fund_pool(500 * E18, sender=stranger)
    (log,) = tx.decode_logs(green_registry.PoolFunded)
    assert (log.funder, log.amount, log.pool) == (stranger.address, 500 * E18, 500 * E18)
    assert green_registry.pool() == 500 * E18
    assert token.balanceOf(green_registry) == 500 * E18


def test_bonus_formula_and_pool_cap(
    green_registry, registered, funded, provider, stranger, attestation
):
    fields, signature = attestation(provider, registered, green_bps=7_500)
    submit(green_registry, fields, signature, sender=provider)
    payment = 1_000 * E18
    assert green_registry.bonus_for(provider, payment) == 0  # empty pool
    green_registry.fund_pool(10_000 * E18, sender=stranger)
    expected = payment * MAX_BONUS_BPS * 7_500 // 10_000 // 10_000  # 150 tokens
    assert expected == 150 * E18
    assert green_registry.bonus_for(provider, payment) == expected
    assert green_registry.bonus_for(stranger, payment) == 0  # not attested
    assert green_registry.bonus_for(provider, 10**9 * E18) == 10_000 * E18  # capped by pool


def test_pay_bonus_is_market_only(green_registry, mock_market, owner, provider, stranger):
    with ape.reverts("green: market not set"):
        green_registry.pay_bonus(provider, E18, sender=stranger)
    green_registry.set_market(mock_market, sender=owner)
    with ape.reverts("green: caller is not the market"):
        green_registry.pay_bonus(provider, E18, sender=stranger)


def test_pay_bonus_transfers_to_the_market(
    token, green_registry, wired_market, registered, funded, provider, stranger, attestation
):
    fields, signature = attestation(provider, registered, green_bps=10_000)
    submit(green_registry, fields, signature, sender=provider)
    green_registry.fund_pool(300 * E18, sender=stranger)
    tx = wired_market.pay_bonus(provider, 1_000 * E18, sender=stranger)
    (log,) = tx.decode_logs(green_registry.BonusPaid)
    assert (log["provider"], log.market, log.payment, log.bonus, log.green_bps) == (
        provider.address,
        wired_market.address,
        1_000 * E18,
        200 * E18,
        10_000,
    )
    assert token.balanceOf(wired_market) == 200 * E18
    assert green_registry.pool() == 100 * E18
    # the pool caps the next bonus, then it is empty and pays nothing
    wired_market.pay_bonus(provider, 1_000 * E18, sender=stranger)
    assert token.balanceOf(wired_market) == 300 * E18
    assert green_registry.pool() == 0
    tx = wired_market.pay_bonus(provider, 1_000 * E18, sender=stranger)
    assert [log.bonus for log in tx.decode_logs(green_registry.BonusPaid)] == [0]
    assert token.balanceOf(green_registry) == green_registry.pool() == 0


def test_two_step_ownership(green_registry, owner, stranger, attestor):
    green_registry.transfer_ownership(stranger, sender=owner)
    green_registry.accept_ownership(sender=stranger)
    assert green_registry.owner() == stranger.address
    with ape.reverts("ownable: caller is not the owner"):
        green_registry.add_attestor(attestor, sender=owner)
    green_registry.add_attestor(attestor, sender=stranger)
    assert green_registry.is_attestor(attestor)
