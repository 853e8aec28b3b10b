"""`greenproof doctor`: a healthy market passes; a reset chain under old journals and a
manifest whose contracts are gone are named, with what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from greenproof.chain import Anvil
from greenproof.cli import cli
from verifier.votes import VoteJournal

pytestmark = pytest.mark.anvil


def doctor(rpc: str, manifest: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["doctor", "--network", rpc, "--deployment", str(manifest), *args])
    return result.exit_code, result.output


def test_a_healthy_market_passes_and_the_account_is_summarised(anvil, deployment, deployment_path,
                                                              account_choice, tmp_path: Path) -> None:
    code, out = doctor(anvil.rpc_url, deployment_path, "--account", account_choice("provider"))
    assert code == 0, out
    assert "contracts with code" in out and "ETH for gas" in out and "all checks passed" in out


def test_a_journal_ahead_of_the_chain_and_a_manifest_without_code_fail(anvil, deployment, deployment_path,
                                                                      tmp_path: Path) -> None:
    journal = VoteJournal(tmp_path / "verifier")
    journal.set_cursor(deployment.chain_id, deployment.job_market, 10**6)  # read far past the head
    journal.close()
    code, out = doctor(anvil.rpc_url, deployment_path, "--data-dir", str(tmp_path / "verifier"))
    assert code == 1 and "has read up to block 999999" in out and "fresh --data-dir" in out, out

    with Anvil(state_dir=tmp_path / "fresh") as other:  # same chain id, nothing deployed
        code, out = doctor(other.rpc_url, deployment_path)
    assert code == 1 and "has no code on this chain" in out, out


def test_a_manifest_whose_deployment_block_hash_differs_names_the_reset(anvil, deployment, deployment_path,
                                                                       tmp_path: Path) -> None:
    """The manifest records its deployment block's hash; a chain reset and redeployed at the
    same addresses (same code, same block number) has another one."""
    assert deployment.deployment_block_hash is not None
    moved = tmp_path / "moved.json"
    moved.write_text(deployment.model_copy(update={"deployment_block_hash": "0x" + "ab" * 32}).model_dump_json())
    code, out = doctor(anvil.rpc_url, moved)
    assert code == 1 and "the node was reset" in out and "abababab" in out, out
    code, out = doctor(anvil.rpc_url, deployment_path)
    assert "the node was reset" not in out, out
