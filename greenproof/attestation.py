"""EIP-712 energy attestations, exactly as ``GreenRegistry`` checks them (docs/protocol.md §2.2).

An attestor (an accredited energy auditor) signs::

    EnergyAttestation(address provider,uint16 green_bps,uint32 carbon_g_per_kwh,
                      bytes32 region,uint64 valid_from,uint64 valid_until,uint64 nonce)

under the domain ``{name: "greenproof", version: "1", chainId, verifyingContract:
registry}``. ``greenproof attestor sign`` writes the resulting
:class:`SignedAttestation` as JSON; ``greenproof provider attest`` (or anyone)
submits it with ``submit_attestation``.

The registry keeps one nonce per (provider, attestor): an attestor's next
attestation for a provider needs a nonce above the last one *it* signed for that
provider (``GreenRegistry.nonce_of(provider, attestor)``). An attestation whose
``valid_from`` is still in the future, or that starts before the one in force,
is refused while one is in force: submit a pre-signed one once it starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import is_address, to_checksum_address
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DOMAIN_NAME = "greenproof"
DOMAIN_VERSION = "1"
ATTESTATION_TYPE = [
    {"name": "provider", "type": "address"},
    {"name": "green_bps", "type": "uint16"},
    {"name": "carbon_g_per_kwh", "type": "uint32"},
    {"name": "region", "type": "bytes32"},
    {"name": "valid_from", "type": "uint64"},
    {"name": "valid_until", "type": "uint64"},
    {"name": "nonce", "type": "uint64"},
]
EIP712_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
U64 = 2**64 - 1
#: GreenRegistry's ``MAX_CARBON_G_PER_KWH``: the highest grid intensity it accepts.
MAX_CARBON_G_PER_KWH = 5_000


class AttestationError(Exception):
    """A malformed attestation, or a signature that does not verify."""


def region_bytes(region: str | bytes) -> bytes:
    """A region tag as ``bytes32``: UTF-8 text right-padded with zeros, or 0x + 64 hex digits."""
    if isinstance(region, bytes):
        raw = region
    elif region.startswith("0x") and len(region) == 66:
        raw = bytes.fromhex(region[2:])
    else:
        raw = region.encode()
    if len(raw) > 32:
        raise AttestationError(f"attestation: region {region!r} is longer than 32 bytes")
    return raw.ljust(32, b"\0")


def region_text(raw: bytes) -> str:
    """Inverse of :func:`region_bytes` for display (hex when not text)."""
    stripped = bytes(raw).rstrip(b"\0")
    try:
        text = stripped.decode()
        if text.isprintable():
            return text
    except UnicodeDecodeError:
        pass
    return "0x" + bytes(raw).hex()


class EnergyAttestation(BaseModel):
    """The signed fields, in the typed struct's order."""

    model_config = ConfigDict(frozen=True)

    provider: str
    green_bps: int = Field(ge=0, le=10_000)
    carbon_g_per_kwh: int = Field(ge=0, le=MAX_CARBON_G_PER_KWH)
    region: str = Field(description="0x + 64 hex digits (bytes32)")
    valid_from: int = Field(ge=0, le=U64)
    valid_until: int = Field(ge=0, le=U64)
    nonce: int = Field(ge=1, le=U64)

    @field_validator("provider")
    @classmethod
    def _address(cls, v: str) -> str:
        if not is_address(v):
            raise ValueError(f"not an address: {v!r}")
        return to_checksum_address(v)

    @field_validator("region", mode="before")
    @classmethod
    def _region(cls, v: Any) -> str:
        try:
            return "0x" + region_bytes(v).hex()
        except AttestationError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _window(self) -> EnergyAttestation:
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self

    def message(self) -> dict[str, Any]:
        return {**self.model_dump(), "region": bytes.fromhex(self.region[2:])}

    def call_args(self) -> tuple[Any, ...]:
        """Positional arguments for ``attestation_digest`` / ``submit_attestation`` (sans signature)."""
        m = self.message()
        return tuple(m[f["name"]] for f in ATTESTATION_TYPE)


def typed_data(att: EnergyAttestation, registry: str, chain_id: int) -> dict[str, Any]:
    """The full EIP-712 typed-data document (``eth_signTypedData_v4`` shape)."""
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN_TYPE, "EnergyAttestation": ATTESTATION_TYPE},
        "primaryType": "EnergyAttestation",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": int(chain_id),
            "verifyingContract": to_checksum_address(registry),
        },
        "message": att.message(),
    }


def digest(att: EnergyAttestation, registry: str, chain_id: int) -> bytes:
    """The 32-byte EIP-712 digest (equals ``GreenRegistry.attestation_digest``)."""
    return bytes(_hash_eip191_message(encode_typed_data(full_message=typed_data(att, registry, chain_id))))


class SignedAttestation(BaseModel):
    """An attestation with its signature and the registry/chain it is valid for (JSON file)."""

    attestation: EnergyAttestation
    signature: str = Field(description="0x + 130 hex digits (r, s, v)")
    attestor: str
    registry: str
    chain_id: int

    @field_validator("attestor", "registry")
    @classmethod
    def _address(cls, v: str) -> str:
        if not is_address(v):
            raise ValueError(f"not an address: {v!r}")
        return to_checksum_address(v)

    @field_validator("signature")
    @classmethod
    def _sig(cls, v: str) -> str:
        raw = v[2:] if v.startswith("0x") else v
        if len(raw) != 130:
            raise ValueError("signature must be 65 bytes")
        bytes.fromhex(raw)
        return "0x" + raw.lower()

    def signature_bytes(self) -> bytes:
        return bytes.fromhex(self.signature[2:])

    def submit_args(self) -> tuple[Any, ...]:
        """Arguments for ``GreenRegistry.submit_attestation``."""
        return (*self.attestation.call_args(), self.signature_bytes())

    def verify(self) -> str:
        """Check the signature recovers to ``attestor``; returns the signer."""
        signer = recover_signer(self.attestation, self.signature_bytes(), self.registry, self.chain_id)
        if signer != self.attestor:
            raise AttestationError(
                f"attestation: signature recovers to {signer}, not the stated attestor {self.attestor}"
            )
        return signer

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> SignedAttestation:
        try:
            return cls.model_validate(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise AttestationError(f"attestation: file {path} not found") from None
        except ValueError as exc:
            raise AttestationError(f"attestation: {path} is not a valid signed attestation: {exc}") from None


def sign_attestation(
    account: LocalAccount,
    registry_address: str,
    chain_id: int,
    *,
    provider: str,
    green_bps: int,
    carbon_g_per_kwh: int,
    region: str | bytes,
    valid_from: int,
    valid_until: int,
    nonce: int,
) -> SignedAttestation:
    """Sign an energy attestation as ``account`` (the attestor) for one registry and chain."""
    try:
        att = EnergyAttestation(
            provider=provider, green_bps=green_bps, carbon_g_per_kwh=carbon_g_per_kwh,
            region=region, valid_from=valid_from, valid_until=valid_until, nonce=nonce,
        )
    except ValueError as exc:
        raise AttestationError(f"attestation: {exc}") from None
    signed = account.sign_typed_data(full_message=typed_data(att, registry_address, chain_id))
    return SignedAttestation(
        attestation=att, signature="0x" + bytes(signed.signature).hex(), attestor=account.address,
        registry=registry_address, chain_id=chain_id,
    )


def recover_signer(att: EnergyAttestation, signature: bytes | str, registry: str, chain_id: int) -> str:
    """The address that signed ``att`` for this registry and chain."""
    msg = encode_typed_data(full_message=typed_data(att, registry, chain_id))
    return str(Account.recover_message(msg, signature=signature))
