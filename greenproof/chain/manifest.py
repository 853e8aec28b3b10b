"""The deployment manifest ``deployments/<chain id>.json``.

Written by both deployers (``ape run deploy`` in ``scripts/deploy.py`` and the
web3 ``greenproof deploy``) and read by every daemon: addresses, ABIs, the
block to index events from, and the parameters the contracts were deployed with.

    >>> d = Deployment.load("deployments/31337.json")
    >>> d.job_market, d.verifier_court, d.abis["VerifierCourt"]
    >>> address, abi = d.contract("JobMarket")
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eth_utils import is_address, to_checksum_address
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_ROOT = "deployments"

# Contract names used as keys of ``abis`` and ``contracts`` (the client's role names map here).
TOKEN = "Token"
STAKE_MANAGER = "StakeManager"
GREEN_REGISTRY = "GreenRegistry"
JOB_MARKET = "JobMarket"
VERIFIER_COURT = "VerifierCourt"
AUDIT_RULES = "AuditRules"
CONTRACT_NAMES = (TOKEN, STAKE_MANAGER, GREEN_REGISTRY, JOB_MARKET, VERIFIER_COURT, AUDIT_RULES)


class ManifestError(Exception):
    """A manifest that cannot be read or written; the message says what to do."""


class ManifestExistsError(ManifestError, FileExistsError):
    """Refused to overwrite an existing manifest without ``force``."""


def default_path(chain_id: int, root: str | Path = DEFAULT_ROOT) -> Path:
    """``<root>/<chain id>.json``."""
    return Path(root) / f"{int(chain_id)}.json"


def manifest_target(chain_id: int, path: str | Path | None = None) -> Path:
    """Where :meth:`Deployment.save` writes: ``path`` if it names a ``.json`` file, else
    ``<path>/<chain id>.json`` (``deployments/<chain id>.json`` when None)."""
    if path is None:
        return default_path(chain_id)
    target = Path(path)
    if target.is_dir() or target.suffix != ".json":
        return default_path(chain_id, target)
    return target


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Deployment(BaseModel):
    """One deployment of the greenproof contracts on one chain."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chain_id: int = Field(gt=0)
    network: str = Field(default="", description="ape-style choice, e.g. ethereum:local:foundry")
    token: str
    stake_manager: str
    green_registry: str
    job_market: str
    verifier_court: str
    audit_rules: str
    deployment_block: int = Field(ge=0, description="first block to index events from")
    deployment_block_hash: str | None = Field(
        None, description="hash of deployment_block (0x…): a chain reset and redeployed at the same "
        "addresses has another (older manifests have none)")
    deployer: str
    abis: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    parameters: dict[str, int] = Field(default_factory=dict)
    mock_token: bool = False
    created_at: datetime = Field(default_factory=_now)

    @field_validator(
        "token", "stake_manager", "green_registry", "job_market", "verifier_court", "audit_rules",
        "deployer",
        mode="before",
    )
    @classmethod
    def _checksum(cls, value: Any) -> str:
        text = str(getattr(value, "address", value))
        if not is_address(text):
            raise ValueError(f"not an address: {text!r}")
        return to_checksum_address(text)

    # ------------------------------------------------------------------ lookups

    @property
    def addresses(self) -> dict[str, str]:
        """Contract name -> checksummed address."""
        return {
            TOKEN: self.token,
            STAKE_MANAGER: self.stake_manager,
            GREEN_REGISTRY: self.green_registry,
            JOB_MARKET: self.job_market,
            VERIFIER_COURT: self.verifier_court,
            AUDIT_RULES: self.audit_rules,
        }

    @property
    def contracts(self) -> dict[str, dict[str, Any]]:
        """Contract name -> ``{"address": …, "abi": […]}`` (ABI empty when not recorded)."""
        return {
            name: {"address": address, "abi": self.abis.get(name, [])}
            for name, address in self.addresses.items()
        }

    def contract(self, name: str) -> tuple[str, list[dict[str, Any]]]:
        """``(address, abi)`` of ``Token``, ``StakeManager``, ``GreenRegistry``, ``JobMarket``,
        ``VerifierCourt`` or ``AuditRules``."""
        if name not in self.addresses:
            raise ManifestError(
                f"manifest: unknown contract {name!r}; known: {', '.join(CONTRACT_NAMES)}"
            )
        if name not in self.abis:
            raise ManifestError(f"manifest: no ABI recorded for {name} (chain {self.chain_id})")
        return self.addresses[name], self.abis[name]

    # ------------------------------------------------------------------ files

    default_path = staticmethod(default_path)

    @classmethod
    def load(cls, path: str | Path) -> Deployment:
        """Read and validate a manifest file."""
        path = Path(path)
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ManifestError(
                f"manifest: {path} does not exist; deploy first (`ape run deploy` or `greenproof deploy`)"
            ) from None
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise ManifestError(
                f"manifest: {path} is not a valid deployment manifest: {exc}"
            ) from None

    def save(self, path: str | Path | None = None, *, force: bool = False) -> Path:
        """Write the manifest (atomically) and return its path.

        ``path`` may be a file, a folder (``<folder>/<chain id>.json``) or None
        (``deployments/<chain id>.json``). An existing file is never overwritten
        unless ``force``.
        """
        target = manifest_target(self.chain_id, path)
        if target.exists() and not force:
            raise ManifestExistsError(
                f"manifest: {target} already exists (chain {self.chain_id}); "
                "pass --force to overwrite it, or --out to write elsewhere"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.model_dump(mode="json"), indent=2) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, 0o644)  # mkstemp makes it 0600; daemons of other users read it
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target


__all__ = [
    "CONTRACT_NAMES",
    "DEFAULT_ROOT",
    "Deployment",
    "ManifestError",
    "ManifestExistsError",
    "default_path",
]
