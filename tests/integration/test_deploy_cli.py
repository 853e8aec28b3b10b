"""An operator's first step on a dev chain: `greenproof deploy` with short windows and minted tokens."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from greenproof.chain import Gateway, connect, dev_account
from greenproof.cli import cli

TOKEN = 10**18


def test_deploy_sets_parameters_and_mints_to_the_named_accounts(anvil, tmp_path: Path) -> None:
    manifest = tmp_path / "deployment.json"
    result = CliRunner().invoke(cli, [
        "deploy", "--network", anvil.rpc_url, "--account", "TEST::0", "--out", str(manifest),
        "--param", "open_window=60", "--param", "commit_window=30",
        "--mint", "TEST::2=1500", "--mint", f"{dev_account(3).address}=0.5", "--json",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(manifest.read_text())["parameters"]["open_window"] == 60
    gw = Gateway(connect(anvil.rpc_url, None, manifest))
    assert (gw.param("open_window"), gw.court_param("commit_window")) == (60, 30)
    assert gw.token_balance(dev_account(2).address) == 1500 * TOKEN
    assert gw.token_balance(dev_account(3).address) == TOKEN // 2


def test_bad_mint_and_param_fail_before_any_transaction(anvil, tmp_path: Path) -> None:
    runner = CliRunner()
    before = connect(anvil.rpc_url).w3.eth.get_transaction_count(dev_account(0).address)
    for extra, message in [
        (["--mint", "TEST::2"], "expected ACCOUNT=TOKENS"),
        (["--mint", "TEST::2=-4"], "expected ACCOUNT=TOKENS"),
        (["--mint", "nobody=4"], "--mint"),
        (["--param", "open_window"], "expected NAME=VALUE"),
        (["--token", "0x" + "11" * 20, "--mint", "TEST::2=1"], "needs the mock token"),
    ]:
        result = runner.invoke(cli, ["deploy", "--network", anvil.rpc_url, "--account", "TEST::0",
                                     "--out", str(tmp_path / "m.json"), *extra])
        assert result.exit_code != 0 and message in result.output, result.output
    assert connect(anvil.rpc_url).w3.eth.get_transaction_count(dev_account(0).address) == before
    assert not (tmp_path / "m.json").exists()


def test_out_of_bounds_params_and_an_existing_manifest_send_nothing(anvil, tmp_path: Path) -> None:
    """The preflight: a value the contracts would refuse, a broken cross-rule or a manifest
    that would not be written fails before the first transaction (no orphaned contracts)."""
    runner = CliRunner()
    w3 = connect(anvil.rpc_url).w3
    before = w3.eth.get_transaction_count(dev_account(0).address)
    existing = tmp_path / "existing.json"
    existing.write_text("{}")
    for extra, message in [
        (["--param", "open_window=5"], "open_window=5 is out of bounds [10, 604800]"),
        (["--param", "committee_size=32"], "committee_size=32 is out of bounds [1, 31]"),
        (["--param", "voter_slash_bps=3000"], "must exceed voter_slash_bps=3000"),
        (["--param", "committee_size=15", "--param", "max_rounds=3"], "(max 31)"),
        (["--param", "min_job_duration=7200", "--param", "max_job_duration=3600"], "must be at most"),
        (["--unbonding-period", "3600"], "must exceed max_job_lifetime"),
        (["--token", "0x" + "11" * 20], "no contract at --token"),
    ]:
        result = runner.invoke(cli, ["deploy", "--network", anvil.rpc_url, "--account", "TEST::0",
                                     "--out", str(tmp_path / "m.json"), *extra])
        assert result.exit_code != 0 and message in result.output, (extra, result.output)
        assert "nothing was sent" in result.output
    result = runner.invoke(cli, ["deploy", "--network", anvil.rpc_url, "--account", "TEST::0",
                                 "--out", str(existing)])
    assert result.exit_code != 0 and "pass --force" in result.output and "nothing was sent" in result.output
    assert w3.eth.get_transaction_count(dev_account(0).address) == before
    assert not (tmp_path / "m.json").exists()


def test_param_bounds_match_the_contracts(anvil, tmp_path: Path) -> None:
    """PARAM_BOUNDS (the preflight's table) is what the setters enforce: each bound is accepted,
    one past it is refused."""
    from greenproof.chain.errors import ChainError
    from greenproof.chain.models import MARKET_PARAMS, PARAM_BOUNDS, PARAM_DEFAULTS

    manifest = tmp_path / "d.json"
    assert runner_ok(["deploy", "--network", anvil.rpc_url, "--account", "TEST::0", "--out", str(manifest),
                      "--unbonding-period", str(365 * 86_400)])
    gw = Gateway(connect(anvil.rpc_url, "TEST::0", manifest))
    skip = {"min_class_stake", "max_rounds", "committee_size", "voter_slash_bps", "noshow_slash_bps",
            "max_job_duration", "min_job_duration"}  # cross rules decide at the edges; covered above
    for name, (lo, hi) in PARAM_BOUNDS.items():
        if name in skip:
            continue
        role = "market" if name in MARKET_PARAMS else "court"
        for bad in (lo - 1, hi + 1):
            if bad < 0:
                continue
            try:
                gw._send(role, f"set_{name}", bad, what=f"set {name}")
            except ChainError as exc:
                assert "out of bounds" in str(exc), (name, bad, exc)
            else:
                raise AssertionError(f"{name}={bad} accepted by the contract")
        for good in (lo, hi, PARAM_DEFAULTS[name]):  # back to the default: cross-rules hold for the next
            gw._send(role, f"set_{name}", good, what=f"set {name}")


def runner_ok(args: list[str]) -> bool:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return True
