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
