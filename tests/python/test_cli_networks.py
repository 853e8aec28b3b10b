"""Every command that takes ``--network`` accepts ``ethereum:sepolia:node`` and, with
``SEPOLIA_RPC_URL`` unset, stops with a message that names the variable (no traceback).

The test walks the whole click tree, so a new command is covered the day it is added.
Required arguments get harmless values that pass local validation (a valid job spec
for a SPEC path, 1 for ids and amounts), so each command gets as far as it can before
the network is needed.
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from greenproof.attestation import sign_attestation
from greenproof.chain import dev_account
from greenproof.cli import COMMANDS, cli

SPEC_YAML = """\
task: mlp
dataset: {uri: "builtin://digits"}
batch_size: 16
total_steps: 4
segment_steps: 2
"""


def _walk(group: click.Group, ctx: click.Context, prefix: list[str]):
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None:
            continue
        path = [*prefix, name]
        if isinstance(cmd, click.Group):
            yield from _walk(cmd, click.Context(cmd, parent=ctx, info_name=name), path)
        elif any("--network" in getattr(p, "opts", ()) for p in cmd.params):
            yield path, cmd


def _network_commands() -> list[tuple[list[str], click.Command]]:
    root = click.Context(cli, info_name="greenproof")
    return list(_walk(cli, root, []))


def _value_for(param: click.Parameter, files: dict[str, Path]) -> str:
    """A value that passes the parameter's own validation without touching a network."""
    t = param.type
    name = (param.name or "").lower()
    if isinstance(t, click.Path):
        if "spec" in name:
            return str(files["spec"])
        if "attest" in name or "signed" in name:
            return str(files["attestation"])
        if t.exists or t.dir_okay is False:  # the only input file besides specs so far
            return str(files["attestation"])
        return str(files["dir"])
    if isinstance(t, click.Choice):
        return str(t.choices[0])
    if isinstance(t, click.types.IntParamType | click.types.FloatParamType) or name.endswith("_id"):
        return "1"
    if "address" in name or name in ("provider", "attestor", "requester", "account_address", "who"):
        return "0x" + "11" * 20
    return "1"


def _argv(path: list[str], cmd: click.Command, files: dict[str, Path]) -> list[str]:
    argv = [*path, "--network", "ethereum:sepolia:node"]
    for p in cmd.params:
        if isinstance(p, click.Argument) and p.required:
            argv += [_value_for(p, files)] * (p.nargs if p.nargs > 0 else 1)
        elif isinstance(p, click.Option) and p.required and not p.is_flag and "--network" not in p.opts:
            argv += [p.opts[0], _value_for(p, files)]
    return argv


COMMANDS_WITH_NETWORK = _network_commands()


def test_the_walk_finds_every_role() -> None:
    found = {path[0] for path, _ in COMMANDS_WITH_NETWORK}
    assert {"requester", "dashboard"} <= found
    assert {"post", "status", "watch", "cancel", "fetch", "withdraw"} <= {
        path[-1] for path, _ in COMMANDS_WITH_NETWORK if path[0] == "requester"
    }
    assert set(found) <= set(COMMANDS)


@pytest.mark.parametrize(
    "path,cmd", COMMANDS_WITH_NETWORK, ids=[" ".join(p) for p, _ in COMMANDS_WITH_NETWORK]
)
def test_sepolia_without_rpc_url_fails_clearly(path: list[str], cmd: click.Command,
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEPOLIA_RPC_URL", raising=False)
    monkeypatch.delenv("GREENPROOF_NETWORK", raising=False)
    monkeypatch.setenv("GREENPROOF_PASSPHRASE", "not-used")
    monkeypatch.setenv("APE_DATA_FOLDER", str(tmp_path / "ape"))
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "job.yaml"
    spec.write_text(SPEC_YAML)
    signed = sign_attestation(
        dev_account(6), "0x" + "22" * 20, 11155111, provider="0x" + "33" * 20, green_bps=10_000,
        carbon_g_per_kwh=20, region="test", valid_from=1, valid_until=2**40, nonce=1,
    )
    signed.save(tmp_path / "attestation.json")
    files = {"spec": spec, "dir": tmp_path / "data",
             "attestation": tmp_path / "attestation.json"}
    result = CliRunner().invoke(cli, _argv(path, cmd, files), catch_exceptions=True)
    assert result.exit_code != 0, result.output
    assert "SEPOLIA_RPC_URL" in result.output, (result.output, result.exception)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
        f"{' '.join(path)} raised {result.exception!r} instead of a clean error"
    )
