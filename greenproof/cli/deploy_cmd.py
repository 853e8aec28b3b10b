"""``greenproof deploy``: deploy and wire the contracts with web3, write the manifest.

For dev nets, CI and demos (no ape needed at runtime). Operators deploying to a
public network may prefer ``ape run deploy`` (hardware wallets, ape's
confirmation prompts); both write the same ``deployments/<chain id>.json``.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING

import click

from greenproof.cli.options import account_option, confirmations_option, network_option

if TYPE_CHECKING:
    from greenproof.chain.gateway import Gateway


def _parse_params(values: tuple[str, ...]) -> dict[str, int]:
    from greenproof.chain.deploy import ParamError, parse_params

    try:
        return parse_params(values)
    except ParamError as exc:
        raise click.BadParameter(str(exc), param_hint="--param") from None


def _parse_mints(values: tuple[str, ...]) -> list[tuple[str, Decimal]]:
    from eth_utils import is_address

    from greenproof.chain.accounts import AccountError, load_account

    out: list[tuple[str, Decimal]] = []
    for item in values:
        who, sep, raw = item.rpartition("=")
        try:
            amount = Decimal(raw)
        except InvalidOperation:
            amount = Decimal(-1)
        if not sep or not who or amount <= 0:
            raise click.BadParameter(f"{item!r}: expected ACCOUNT=TOKENS, e.g. TEST::2=10000",
                                     param_hint="--mint")
        try:
            address = who if is_address(who) else load_account(who).address
        except AccountError as exc:
            raise click.BadParameter(f"{item!r}: {exc}", param_hint="--mint") from None
        out.append((address, amount))
    return out


def _mint(gw: Gateway, recipients: list[tuple[str, Decimal]]) -> None:
    decimals = gw.token_decimals()
    for address, amount in recipients:
        gw.mint(address, int(amount * 10**decimals))
        click.echo(f"minted {amount} tokens to {address}")


@click.command()
@network_option
@account_option
@confirmations_option
@click.option("--token", default=None, help="Existing ERC20 to settle in (default: deploy MockToken).")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="JobMarket parameter, repeatable (open_window=600, seed_lookahead=2, …).")
@click.option("--unbonding-period", type=click.IntRange(min=1), default=None,
              help="Seconds (default: the market's longest job lifetime + 1 day).")
@click.option("--max-bonus-bps", type=click.IntRange(0, 5000), default=2000, show_default=True,
              help="Green bonus at 100 % green, basis points.")
@click.option("--default-carbon", type=click.IntRange(0, 5000), default=400, show_default=True,
              help="Grid intensity (g CO2e/kWh) for providers without an attestation.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Manifest file or folder (default: deployments/<chain id>.json).")
@click.option("--force", is_flag=True, help="Overwrite an existing manifest.")
@click.option("--mint", "mints", multiple=True, metavar="ACCOUNT=TOKENS",
              help="Dev chains: mint mock tokens to an account (TEST::N, alias or address), repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def deploy(network: str, account: str | None, confirmations: int, token: str | None,
           params: tuple[str, ...], unbonding_period: int | None, max_bonus_bps: int,
           default_carbon: int, out: Path | None, force: bool, mints: tuple[str, ...],
           as_json: bool) -> None:
    """Deploy StakeManager, GreenRegistry, JobMarket (and a mock token) and wire them."""
    from eth_utils import is_address

    from greenproof.chain.compile import CompileError
    from greenproof.chain.deploy import deploy_system
    from greenproof.chain.errors import ChainError
    from greenproof.chain.gateway import Gateway
    from greenproof.cli.options import connect_from_options

    parsed = _parse_params(params)
    if token is not None and not is_address(token):
        raise click.BadParameter(f"{token!r} is not an address", param_hint="--token")
    if token is not None and mints:
        raise click.BadParameter("minting needs the mock token; drop --token", param_hint="--mint")
    recipients = _parse_mints(mints)
    chain = connect_from_options(network, account, None, need_deployment=False,
                                 confirmations=confirmations)
    try:
        deployment = deploy_system(chain, chain.account, token=token, params=parsed,
                                   unbonding_period=unbonding_period, max_bonus_bps=max_bonus_bps,
                                   default_carbon=default_carbon, out=out, force=force)
        if recipients:
            chain.deployment = deployment
            _mint(Gateway(chain), recipients)
    except (ChainError, CompileError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(json.loads(deployment.model_dump_json()), indent=2))
        return
    click.echo(f"deployed on chain {chain.chain_id} at block {deployment.deployment_block}"
               f"{' (mock token)' if deployment.mock_token else ''}:")
    for name, address in deployment.addresses.items():
        click.echo(f"  {name:<14} {address}")
