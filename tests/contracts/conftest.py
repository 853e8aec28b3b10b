"""Fixtures for the contract unit tests (ape's pytest plugin, local test network).

Actors are named by role. ``deploy_system`` is the one place that deploys and
wires the whole protocol (token, StakeManager, GreenRegistry, VerifierCourt,
JobMarket); the
per-contract fixtures below deploy StakeManager and GreenRegistry against a
``MockMarket`` so their market-only functions can be tested on their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

ROOT = Path(__file__).resolve().parents[2]

DAY = 86_400
UNBONDING_PERIOD = 14 * DAY
MOCK_MAX_JOB_LIFETIME = 10 * DAY
MAX_BONUS_BPS = 2_000
DEFAULT_CARBON_G_PER_KWH = 400
INITIAL_BALANCE = 1_000_000 * 10**18
SEAT_STAKE = 100 * 10**18

ATTESTATION_TYPES = {
    "EnergyAttestation": [
        {"name": "provider", "type": "address"},
        {"name": "green_bps", "type": "uint16"},
        {"name": "carbon_g_per_kwh", "type": "uint32"},
        {"name": "region", "type": "bytes32"},
        {"name": "valid_from", "type": "uint64"},
        {"name": "valid_until", "type": "uint64"},
        {"name": "nonce", "type": "uint64"},
    ]
}


# ------------------------------------------------------------------ roles


@pytest.fixture(scope="session")
def owner(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def requester(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def provider(accounts):
    return accounts[2]


@pytest.fixture(scope="session")
def provider2(accounts):
    return accounts[3]


@pytest.fixture(scope="session")
def verifier(accounts):
    return accounts[4]


@pytest.fixture(scope="session")
def verifier2(accounts):
    return accounts[5]


@pytest.fixture(scope="session")
def verifier3(accounts):
    return accounts[8]


@pytest.fixture(scope="session")
def attestor(accounts):
    return accounts[6]


@pytest.fixture(scope="session")
def stranger(accounts):
    return accounts[7]


@pytest.fixture(scope="session")
def users(requester, provider, provider2, verifier, verifier2, verifier3, stranger):
    """Everyone who holds tokens in the tests (not the owner, not the attestor)."""
    return [requester, provider, provider2, verifier, verifier2, verifier3, stranger]


# ------------------------------------------------------------------ contracts


@pytest.fixture(scope="module")
def token(project, owner):
    return owner.deploy(project.MockToken, "Greenproof Test", "GPT", 18)


@pytest.fixture(scope="module")
def stake_manager(project, owner, token):
    return owner.deploy(project.StakeManager, token, UNBONDING_PERIOD)


@pytest.fixture(scope="module")
def green_registry(project, owner, token):
    return owner.deploy(project.GreenRegistry, token, MAX_BONUS_BPS, DEFAULT_CARBON_G_PER_KWH)


@pytest.fixture(scope="module")
def mock_market(project, owner, stake_manager, green_registry):
    """A stand-in JobMarket, NOT wired yet (see ``wired_market``)."""
    return owner.deploy(project.MockMarket, stake_manager, green_registry, MOCK_MAX_JOB_LIFETIME)


@pytest.fixture
def wired_market(owner, stake_manager, green_registry, mock_market):
    """The mock market, set as the market of both StakeManager and GreenRegistry."""
    stake_manager.set_market(mock_market, sender=owner)
    green_registry.set_market(mock_market, sender=owner)
    return mock_market


@pytest.fixture(scope="module")
def funded(token, stake_manager, green_registry, users, owner):
    """Every user (and the owner) holds INITIAL_BALANCE and approved both contracts.

    Module-scoped for speed: once requested, it stays for the rest of the module.
    """
    for user in [*users, owner]:
        token.mint(user, INITIAL_BALANCE, sender=user)
        token.approve(stake_manager, 2**256 - 1, sender=user)
        token.approve(green_registry, 2**256 - 1, sender=user)
    return users


# ------------------------------------------------------------------ full system


@dataclass
class System:
    token: Any
    stake_manager: Any
    green_registry: Any
    court: Any
    market: Any
    rules: Any


# ==================================================================
# deploy_system: the ONE place that deploys and wires the protocol.
# The constructor calls follow contracts/VerifierCourt.vy and JobMarket.vy.
# ==================================================================
def deploy_system(
    project,
    owner,
    *,
    unbonding_period: int = UNBONDING_PERIOD,
    max_bonus_bps: int = MAX_BONUS_BPS,
    default_carbon_g_per_kwh: int = DEFAULT_CARBON_G_PER_KWH,
    seat_stake: int = SEAT_STAKE,
) -> System:
    token = owner.deploy(project.MockToken, "Greenproof Test", "GPT", 18)
    stake_manager = owner.deploy(project.StakeManager, token, unbonding_period)
    green_registry = owner.deploy(
        project.GreenRegistry, token, max_bonus_bps, default_carbon_g_per_kwh
    )
    court = owner.deploy(project.VerifierCourt, stake_manager, seat_stake)
    rules = owner.deploy(project.AuditRules)
    market = owner.deploy(project.JobMarket, token, stake_manager, green_registry, court, rules)
    stake_manager.set_market(market, sender=owner)
    stake_manager.set_court(court, sender=owner)
    green_registry.set_market(market, sender=owner)
    court.set_market(market, sender=owner)
    return System(token, stake_manager, green_registry, court, market, rules)


@pytest.fixture(scope="module")
def system(project, owner) -> System:
    if not (ROOT / "contracts" / "JobMarket.vy").exists():
        pytest.fail("contracts/JobMarket.vy is missing: the full system cannot be deployed")
    return deploy_system(project, owner)


@pytest.fixture(scope="module")
def market(system):
    return system.market


@pytest.fixture(scope="module")
def court(system):
    return system.court


# ------------------------------------------------------------------ attestations


def sign_attestation(registry, chain_id: int, private_key, fields: dict) -> bytes:
    """EIP-712 signature of an ``EnergyAttestation`` with eth-account (as the CLI signs)."""
    domain = {
        "name": "greenproof",
        "version": "1",
        "chainId": chain_id,
        "verifyingContract": str(registry.address),
    }
    signed = Account.sign_typed_data(private_key, domain, ATTESTATION_TYPES, fields)
    return bytes(signed.signature)


@pytest.fixture
def attestation(chain, green_registry):
    """Build ``(fields, signature)`` for a valid attestation; override any field.

    ``signer`` is the signing account (needs ``.private_key``); times default to
    a window around the pending block's timestamp.
    """

    def build(provider, signer, **overrides) -> tuple[dict, bytes]:
        now = chain.pending_timestamp
        fields = {
            "provider": str(provider.address),
            "green_bps": 8_000,
            "carbon_g_per_kwh": 50,
            "region": b"EU-DE".ljust(32, b"\0"),
            "valid_from": now - 60,
            "valid_until": now + 30 * DAY,
            "nonce": 1,
        }
        fields.update(overrides)
        return fields, sign_attestation(green_registry, chain.chain_id, signer.private_key, fields)

    return build
