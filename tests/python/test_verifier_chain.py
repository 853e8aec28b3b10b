"""The verifier reads the chain from the manifest's deployment block, never from genesis."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from greenproof.chain.gateway import Gateway
from greenproof.chain.manifest import Deployment
from verifier.daemon import Verifier, VerifierConfig, VerifierError, read_audit_job

DEPLOYED_AT = 4_242
HEAD = 5_000


class FakeChain:
    """A Chain that records every log query and finds nothing."""

    chain_id = 31337
    address = "0x" + "77" * 20
    account = None

    def __init__(self) -> None:
        self.deployment = Deployment(
            chain_id=self.chain_id, token="0x" + "11" * 20, stake_manager="0x" + "22" * 20,
            green_registry="0x" + "33" * 20, job_market="0x" + "44" * 20,
            verifier_court="0x" + "66" * 20, audit_rules="0x" + "77" * 20,
            deployment_block=DEPLOYED_AT, deployer="0x" + "55" * 20,
        )
        self.queries: list[tuple[str, int, dict[str, Any] | None]] = []

    def contract(self, role: str) -> Any:
        return SimpleNamespace(address=self.deployment.job_market)

    def block_number(self) -> int:
        return HEAD

    def identity(self, deployment_block: int) -> str:
        return f"{self.chain_id}:genesis:{deployment_block}:deployed"

    def logs(self, event_name: str, from_block: int, to_block: int | None = None,
             contract: str = "market", *, args: dict[str, Any] | None = None) -> list[Any]:
        self.queries.append((event_name, from_block, args))
        return []


def test_the_daemons_first_scan_starts_at_the_deployment_block(tmp_path: Path) -> None:
    chain = FakeChain()
    daemon = Verifier(Gateway(chain), VerifierConfig(data_dir=tmp_path))  # type: ignore[arg-type]
    try:
        daemon.scan()
    finally:
        daemon.journal.close()
    assert chain.queries == [("SeatsDrawn", DEPLOYED_AT, None)]


def test_a_jobs_audit_reads_its_events_from_the_deployment_block() -> None:
    chain = FakeChain()
    gw = Gateway(chain)  # type: ignore[arg-type]
    gw.job = lambda job_id: SimpleNamespace(job_id=job_id)  # type: ignore[method-assign]
    with pytest.raises(VerifierError, match="no JobPosted event for job 7"):
        read_audit_job(gw, 7)
    assert chain.queries == [("JobPosted", DEPLOYED_AT, {"job_id": 7})]
