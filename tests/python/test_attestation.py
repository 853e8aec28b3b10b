"""EIP-712 energy attestations: build, sign, recover, serialise.

The digest is checked against GreenRegistry.attestation_digest on a real chain in
tests/integration/test_chain_client.py; here we check it against an independent
re-derivation of EIP-712 with plain keccak.
"""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak

from greenproof.attestation import (
    AttestationError,
    SignedAttestation,
    digest,
    recover_signer,
    region_bytes,
    region_text,
    sign_attestation,
)
from greenproof.chain.accounts import dev_account

REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHAIN_ID = 31337


@pytest.fixture
def attestor():
    return dev_account(7)


@pytest.fixture
def provider():
    return dev_account(1)


def _sign(attestor, provider, **over):
    fields = dict(provider=provider.address, green_bps=8000, carbon_g_per_kwh=42,
                  region="EU-NO", valid_from=1_700_000_000, valid_until=1_800_000_000, nonce=3)
    fields.update(over)
    return sign_attestation(attestor, REGISTRY, CHAIN_ID, **fields)


def test_digest_matches_hand_rolled_eip712(attestor, provider):
    signed = _sign(attestor, provider)
    type_hash = keccak(text="EnergyAttestation(address provider,uint16 green_bps,uint32 carbon_g_per_kwh,"
                            "bytes32 region,uint64 valid_from,uint64 valid_until,uint64 nonce)")
    struct_hash = keccak(encode(
        ["bytes32", "address", "uint16", "uint32", "bytes32", "uint64", "uint64", "uint64"],
        [type_hash, provider.address, 8000, 42, b"EU-NO".ljust(32, b"\0"), 1_700_000_000,
         1_800_000_000, 3],
    ))
    domain_hash = keccak(encode(
        ["bytes32", "bytes32", "bytes32", "uint256", "address"],
        [keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
         keccak(text="greenproof"), keccak(text="1"), CHAIN_ID, REGISTRY],
    ))
    expected = keccak(b"\x19\x01" + domain_hash + struct_hash)
    assert digest(signed.attestation, REGISTRY, CHAIN_ID) == expected


def test_sign_and_recover(attestor, provider):
    signed = _sign(attestor, provider)
    assert signed.attestor == attestor.address
    assert recover_signer(signed.attestation, signed.signature, REGISTRY, CHAIN_ID) == attestor.address
    assert signed.verify() == attestor.address


def test_signature_is_bound_to_chain_and_registry(attestor, provider):
    signed = _sign(attestor, provider)
    other_registry = "0x" + "22" * 20
    assert recover_signer(signed.attestation, signed.signature, other_registry, CHAIN_ID) != attestor.address
    assert recover_signer(signed.attestation, signed.signature, REGISTRY, 1) != attestor.address


def test_json_roundtrip_and_tamper_detection(attestor, provider, tmp_path):
    signed = _sign(attestor, provider)
    path = tmp_path / "att.json"
    signed.save(path)
    loaded = SignedAttestation.load(path)
    assert loaded == signed
    assert loaded.submit_args()[-1] == bytes.fromhex(signed.signature[2:])
    forged = loaded.model_copy(update={"attestation": loaded.attestation.model_copy(update={"green_bps": 10_000})})
    with pytest.raises(AttestationError, match="recovers to"):
        forged.verify()


@pytest.mark.parametrize("over, message", [
    ({"green_bps": 10_001}, "green_bps"),
    ({"carbon_g_per_kwh": 5_001}, "carbon_g_per_kwh"),  # GreenRegistry.MAX_CARBON_G_PER_KWH
    ({"nonce": 2**64}, "nonce"),
    ({"valid_until": 1_600_000_000}, "valid_until"),
    ({"nonce": 0}, "nonce"),
    ({"region": "x" * 33}, "longer than 32 bytes"),
])
def test_invalid_fields_are_rejected(attestor, provider, over, message):
    with pytest.raises(AttestationError, match=message):
        _sign(attestor, provider, **over)


def test_fields_at_their_bounds_sign(attestor, provider):
    """The registry's bounds, inclusive: a rogue's nonce 2**64-1 still signs (the registry keeps
    it per (provider, attestor), so it locks out only that attestor)."""
    signed = _sign(attestor, provider, green_bps=10_000, carbon_g_per_kwh=5_000, nonce=2**64 - 1)
    assert signed.verify() == attestor.address
    assert signed.attestation.nonce == 2**64 - 1


def test_region_encoding_roundtrip():
    assert region_bytes("DE") == b"DE" + b"\0" * 30
    assert region_text(region_bytes("DE")) == "DE"
    raw = bytes(range(32))
    assert region_bytes("0x" + raw.hex()) == raw
    assert region_text(raw).startswith("0x")


def test_malformed_file_is_an_attestation_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"attestation": {}}')
    with pytest.raises(AttestationError, match="not a valid signed attestation"):
        SignedAttestation.load(path)
