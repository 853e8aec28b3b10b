"""``ape run deploy`` end to end: on its own anvil, through a subprocess, as an operator runs it.

ape's foundry provider connects to an already running anvil when
``APE_FOUNDRY_HOST`` points at it, so the test can read the chain after the
script has exited.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from web3 import Web3

from greenproof.chain.devnet import Anvil
from greenproof.chain.manifest import Deployment

ROOT = Path(__file__).resolve().parents[2]
TEST0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # TEST::0 of the shared test mnemonic
APE = str(Path(sys.executable).with_name("ape"))


def ape_deploy(anvil: Anvil, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "APE_FOUNDRY_HOST": anvil.rpc_url,
        "APE_DATA_FOLDER": os.environ.get("APE_DATA_FOLDER", str(ROOT / ".cache" / "ape")),
    }
    return subprocess.run(
        [
            APE,
            "run",
            "deploy",
            "--network",
            "ethereum:local:foundry",
            "--account",
            "TEST::0",
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def node():
    with Anvil() as anvil:
        yield anvil


def test_deploy_script_writes_a_wired_manifest_and_refuses_to_overwrite(node, tmp_path):
    out = tmp_path / "deployments"
    run = ape_deploy(
        node, "--out", str(out), "--param", "open_window=1800", "--param", "max_audit_samples=16",
        "--param", "committee_size=5", "--param", "max_rounds=2", "--param", "commit_window=900"
    )
    assert run.returncode == 0, run.stdout + run.stderr

    path = out / "31337.json"
    d = Deployment.load(path)
    assert (d.chain_id, d.network, d.mock_token, d.deployer) == (
        31337,
        "ethereum:local:foundry",
        True,
        TEST0,
    )
    w3 = Web3(Web3.HTTPProvider(node.rpc_url))
    for name, address in d.addresses.items():
        assert len(w3.eth.get_code(address)) > 0, f"{name} has no code at {address}"
    assert d.deployment_block >= 1
    assert d.deployment_block_hash is not None and len(d.deployment_block_hash) == 66
    contract = {
        name: w3.eth.contract(address=a, abi=d.abis[name]) for name, a in d.addresses.items()
    }
    stake, registry, market, court = (
        contract["StakeManager"].functions,
        contract["GreenRegistry"].functions,
        contract["JobMarket"].functions,
        contract["VerifierCourt"].functions,
    )
    # wiring
    assert stake.market().call() == d.job_market
    assert registry.market().call() == d.job_market
    assert stake.court().call() == market.court().call() == d.verifier_court
    assert court.market().call() == d.job_market
    assert court.stake_manager().call() == d.stake_manager
    assert stake.token().call() == registry.token().call() == d.token
    assert stake.owner().call() == registry.owner().call() == market.owner().call() == TEST0
    # parameters: the overrides applied, the manifest agrees with the chain
    assert market.open_window().call() == 1800 == d.parameters["open_window"]
    assert market.max_audit_samples().call() == 16 == d.parameters["max_audit_samples"]
    assert court.committee_size().call() == 5 == d.parameters["committee_size"]
    assert court.max_rounds().call() == 2 == d.parameters["max_rounds"]
    assert court.commit_window().call() == 900 == d.parameters["commit_window"]
    assert court.SEAT_STAKE().call() == d.parameters["seat_stake"] == 100 * 10**18
    lifetime = market.max_job_lifetime().call()
    assert stake.unbonding_period().call() == d.parameters["unbonding_period"] > lifetime
    assert d.parameters["max_job_lifetime"] == lifetime
    assert registry.max_bonus_bps().call() == d.parameters["max_bonus_bps"]

    # a second run without --force refuses before it sends a transaction
    before = path.read_bytes()
    nonce = w3.eth.get_transaction_count(TEST0)
    again = ape_deploy(node, "--out", str(out))
    assert again.returncode != 0
    assert "already exists" in again.stdout + again.stderr
    assert "--force" in again.stdout + again.stderr
    assert path.read_bytes() == before
    assert w3.eth.get_transaction_count(TEST0) == nonce

    # with --force it redeploys and replaces the manifest
    forced = ape_deploy(node, "--out", str(out), "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert Deployment.load(path).job_market != d.job_market


def test_deploy_script_refuses_mock_token_on_a_testnet(tmp_path):
    with Anvil(chain_id=11_155_111) as sepolia_like:
        run = ape_deploy(sepolia_like, "--out", str(tmp_path))
        assert run.returncode != 0
        assert "--mock-token" in run.stdout + run.stderr
        w3 = Web3(Web3.HTTPProvider(sepolia_like.rpc_url))
        assert w3.eth.get_transaction_count(TEST0) == 0
    assert not any(tmp_path.iterdir())


def test_bad_param_is_rejected_before_deploying(node, tmp_path):
    run = ape_deploy(node, "--out", str(tmp_path), "--param", "no_such_param=1")
    assert run.returncode != 0
    assert "unknown JobMarket parameter 'no_such_param'" in run.stdout + run.stderr
    assert not any(tmp_path.iterdir())
