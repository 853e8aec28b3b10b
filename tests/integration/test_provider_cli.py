"""A provider's day through the CLI: stake, unstake, withdraw, get attested, check status."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from greenproof.cli import cli

TOKEN = 10**18


def _status(run, role_account: str) -> dict:
    return json.loads(run("provider", "status", "--json", "--account", role_account))


def test_provider_stakes_unstakes_and_withdraws_after_unbonding(run, gateway_for, anvil, account_choice):
    me = account_choice("provider")
    balance0 = gateway_for("provider").token_balance()

    out = run("provider", "stake", "100", "--account", me)
    assert "staked 100" in out
    status = _status(run, me)
    assert status["staked"] == 100 * TOKEN and status["free"] == 100 * TOKEN
    assert status["balance"] == balance0 - 100 * TOKEN

    out = run("provider", "unstake", "40", "--account", me)
    assert "unbonding 40" in out
    status = _status(run, me)
    assert status["staked"] == 60 * TOKEN and status["unbonding"] == 40 * TOKEN
    assert status["unbonding_release"] > status["block_time"]

    out = run("provider", "withdraw", "--account", me)
    assert "unbonding, released" in out  # too early: nothing sent
    assert _status(run, me)["unbonding"] == 40 * TOKEN

    anvil.evm_increase_time(status["unbonding_release"] - status["block_time"] + 1)
    out = run("provider", "withdraw", "--claims", "--account", me)
    assert "withdrew 40 unbonded stake" in out
    assert "nothing claimable" in out
    status = _status(run, me)
    assert status["unbonding"] == 0
    assert status["balance"] == balance0 - 60 * TOKEN


def test_amounts_in_base_units_and_bad_amounts(run, account_choice):
    me = account_choice("provider")
    run("provider", "stake", "--wei", "1500", "--account", me)
    assert _status(run, me)["staked"] == 1500
    out = run("provider", "stake", "0.0000000000000000001", "--account", me, ok=False)
    assert "18 decimals" in out
    out = run("provider", "stake", "ten", "--account", me, ok=False)
    assert "not a number" in out


def test_unstaking_more_than_free_shows_the_contract_reason(run, account_choice):
    out = run("provider", "unstake", "5", "--account", account_choice("provider"), ok=False)
    assert "stake: amount exceeds free stake" in out
    assert "Traceback" not in out


def test_attestor_signs_provider_submits_status_shows_green(run, chain_for, account_choice, tmp_path,
                                                             attestor, provider):
    att_file = tmp_path / "att.json"
    run("attestor", "add", attestor.address, "--account", account_choice("owner"))
    out = run("attestor", "sign", "--provider", provider.address, "--green-bps", "9000",
              "--carbon", "25", "--region", "EU-NO", "--valid-days", "30",
              "--account", account_choice("attestor"), "--out", str(att_file))
    assert "nonce 1" in out
    run("provider", "attest", str(att_file), "--account", account_choice("provider"))

    status = _status(run, account_choice("provider"))
    green = status["green"]
    assert green["in_force"] and green["green_bps"] == 9000 and green["attested_green_bps"] == 9000
    assert green["region"] == "EU-NO" and green["attestor"] == attestor.address
    assert green["carbon_g_per_kwh"] == 25
    assert green["valid_until"] - green["valid_from"] == 30 * 86_400

    table = run("provider", "status", "--account", account_choice("provider"))
    assert "90 %" in table and "EU-NO" in table

    again = run("provider", "attest", str(att_file), "--account", account_choice("provider"), ok=False)
    assert "registry: stale nonce" in again


def _sign(run, account_choice, tmp_path, provider, signer: str, name: str, *extra: str) -> tuple[str, str]:
    """``attestor sign`` as role ``signer``; returns ``(output, path of the file)``."""
    path = tmp_path / f"{name}.json"
    out = run("attestor", "sign", "--provider", provider.address, "--green-bps", "8000",
              "--carbon", "40", "--region", "EU-NO", *extra, "--account", account_choice(signer),
              "--out", str(path))
    return out, str(path)


def test_each_attestor_numbers_its_own_attestations(run, account_choice, tmp_path, attestor,
                                                    provider, account_for):
    """Nonces are per (provider, attestor): a second attestor starts at 1 whatever the first used."""
    second = account_for("outsider")  # registered as a second attestor in this test
    for who in (attestor, second):
        run("attestor", "add", who.address, "--account", account_choice("owner"))
    out, first = _sign(run, account_choice, tmp_path, provider, "outsider", "first", "--nonce", str(2**64 - 1))
    assert f"nonce {2**64 - 1}" in out
    run("provider", "attest", first, "--account", account_choice("provider"))
    out, mine = _sign(run, account_choice, tmp_path, provider, "attestor", "mine")
    assert "nonce 1" in out  # default: this attestor's last accepted nonce for the provider + 1
    run("provider", "attest", mine, "--account", account_choice("provider"))
    assert _status(run, account_choice("provider"))["green"]["attestor"] == attestor.address
    out, _ = _sign(run, account_choice, tmp_path, provider, "attestor", "again")
    assert "nonce 2" in out


def test_a_pre_signed_attestation_waits_until_it_starts(run, anvil, account_choice, tmp_path,
                                                        attestor, provider):
    run("attestor", "add", attestor.address, "--account", account_choice("owner"))
    _, current = _sign(run, account_choice, tmp_path, provider, "attestor", "current")
    run("provider", "attest", current, "--account", account_choice("provider"))
    now = _status(run, account_choice("provider"))
    next_month = now["green"]["valid_until"]
    _, early = _sign(run, account_choice, tmp_path, provider, "attestor", "next", "--nonce", "2",
                     "--valid-from", str(next_month))
    out = run("provider", "attest", early, "--account", account_choice("outsider"), ok=False)
    assert "starts" in out and "submit it then" in out
    assert "Traceback" not in out
    assert _status(run, account_choice("provider"))["green"]["in_force"]
    anvil.evm_increase_time(next_month - now["block_time"])
    anvil.mine(1)
    out = run("provider", "attest", early, "--account", account_choice("outsider"))
    assert "attestation in force" in out
    green = _status(run, account_choice("provider"))["green"]
    assert green["in_force"] and green["nonce"] == 2 and green["valid_from"] == next_month


def test_offline_signing_for_another_registry_is_refused_on_submit(run, chain_for, account_choice,
                                                                   tmp_path, provider):
    chain = chain_for("provider")  # only its chain id
    att_file = tmp_path / "offline.json"
    run("attestor", "sign", "--provider", provider.address, "--green-bps", "5000", "--carbon", "100",
        "--region", "DE", "--nonce", "1", "--registry", "0x" + "12" * 20,
        "--chain-id", str(chain.chain_id), "--account", account_choice("attestor"), "--out", str(att_file))
    out = run("provider", "attest", str(att_file), "--account", account_choice("provider"), ok=False)
    assert "signed for registry" in out


def test_non_owner_cannot_add_attestors(run, account_choice, attestor):
    out = run("attestor", "add", attestor.address, "--account", account_choice("outsider"), ok=False)
    assert "ownable: caller is not the owner" in out


def test_status_of_another_address_needs_no_account(run, provider):
    status = json.loads(run("provider", "status", "--json", "--address", provider.address))
    assert status["address"] == provider.address
    assert status["green"]["nonce"] == 0 and status["jobs"] == []


MY_COMMANDS = [
    ["provider", "stake", "1"],
    ["provider", "unstake", "1"],
    ["provider", "withdraw"],
    ["provider", "status"],
    ["attestor", "add", "0x" + "11" * 20],
    ["attestor", "remove", "0x" + "11" * 20],
    ["attestor", "sign", "--provider", "0x" + "11" * 20, "--green-bps", "1", "--carbon", "1",
     "--region", "X", "--out", "unused.json"],
    ["deploy"],
]


@pytest.mark.parametrize("argv", MY_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_sepolia_without_rpc_url_fails_clearly(argv, monkeypatch, tmp_path):
    monkeypatch.delenv("SEPOLIA_RPC_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli, [*argv, "--network", "ethereum:sepolia:node", "--account", "TEST::0"],
        env={"SEPOLIA_RPC_URL": None, "GREENPROOF_DEPLOYMENT": None},
    )
    assert result.exit_code != 0
    assert "ethereum:sepolia:node needs SEPOLIA_RPC_URL" in result.output
    assert "Traceback" not in result.output


def test_attest_rejects_a_tampered_file_before_connecting(run, tmp_path, attestor, provider):
    from greenproof.attestation import sign_attestation

    signed = sign_attestation(attestor, "0x" + "12" * 20, 31337, provider=provider.address, green_bps=100,
                              carbon_g_per_kwh=1, region="X", valid_from=0, valid_until=10, nonce=1)
    data = json.loads(signed.model_dump_json())
    data["attestation"]["green_bps"] = 10_000
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(data))
    out = run("provider", "attest", str(path), "--network", "ethereum:sepolia:node", "--account", "TEST::2",
              ok=False)
    assert "recovers to" in out
