"""``greenproof allocator``: grant and revoke requesters' bonus-pool allowances; owner: register allocators.

The green bonus pool pays only against an allowance that an allocator granted to
the job's requester (the Filecoin Plus DataCap model, docs/protocol.md §2.2 and
§7). An allowance is accountable to its allocator: only that allocator (or the
registry owner) may revoke it, no other allocator may replace it while it holds
anything, and removing the allocator voids every allowance it granted.

Amounts are whole tokens (``100``, ``2.5``) scaled by the token's ``decimals()``,
or base units with ``--wei``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from greenproof.cli.options import address_tx, chain_options, gateway_from_options, role_commands
from greenproof.cli.provider import format_amount, parse_amount

if TYPE_CHECKING:
    from greenproof.chain.gateway import Gateway


@click.group()
def allocator() -> None:
    """Allocator: grant and revoke requesters' bonus-pool allowances; owner: add or remove allocators."""


@allocator.command()
@click.argument("requester")
@click.argument("amount", metavar="AMOUNT")
@click.option("--wei", is_flag=True, help="AMOUNT is in token base units.")
@chain_options
def grant(requester: str, amount: str, wei: bool, network: str, account: str | None,
          deployment: Path | None, confirmations: int) -> None:
    """Set REQUESTER's allowance to AMOUNT tokens of bonus (replaces what is left; allocators only)."""

    def send(gw: Gateway, who: str) -> str:
        decimals = gw.token_decimals()
        value = parse_amount(amount, decimals, wei=wei)
        gw.grant_allowance(who, value)
        return f"allowance of {who}: {format_amount(value, decimals)} tokens of bonus, granted by {gw.address}"

    click.echo(address_tx(network, account, deployment, confirmations, requester, send,
                          param="REQUESTER"))


@allocator.command()
@click.argument("requester")
@chain_options
def revoke(requester: str, network: str, account: str | None, deployment: Path | None,
           confirmations: int) -> None:
    """Zero REQUESTER's allowance (the allocator that granted it, or the registry owner)."""
    address_tx(network, account, deployment, confirmations, requester,
               lambda gw, who: gw.revoke_allowance(who), param="REQUESTER")
    click.echo(f"allowance of {requester} revoked")


@allocator.command()
@click.argument("requester")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (amounts in base units).")
@chain_options
def show(requester: str, as_json: bool, network: str, account: str | None,
         deployment: Path | None, confirmations: int) -> None:
    """Show REQUESTER's allowance, the allocator that granted it and the bonus pool (no account needed)."""
    from eth_utils import is_address, to_checksum_address

    from greenproof.chain.errors import ChainError

    if not is_address(requester):
        raise click.BadParameter(f"{requester!r} is not an address", param_hint="REQUESTER")
    gw = gateway_from_options(network, account, deployment, need_account=False)
    try:
        report = allowance_report(gw, to_checksum_address(requester))
    except ChainError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    d = report["decimals"]
    granted_by = report["allocator"] or "nobody"
    if report["allocator"] and not report["allocator_registered"]:
        granted_by += " (removed: the allowance is void)"
    click.echo(f"requester   {report['requester']}\n"
               f"allowance   {format_amount(report['allowance'], d)} tokens of bonus\n"
               f"granted by  {granted_by}\n"
               f"bonus pool  {format_amount(report['pool'], d)} tokens")


def allowance_report(gw: Gateway, requester: str) -> dict[str, Any]:
    """What ``show`` prints, as plain JSON-able data (amounts in base units)."""
    granted_by = gw.allocator_of(requester)
    return {
        "requester": requester,
        "allowance": gw.allowance_of(requester),
        "allocator": granted_by,
        "allocator_registered": bool(granted_by) and gw.is_allocator(granted_by),
        "pool": gw.bonus_pool(),
        "decimals": gw.token_decimals(),
    }


for _command in role_commands(
    "allocator", lambda gw, who: gw.add_allocator(who), lambda gw, who: gw.remove_allocator(who),
    add_help="Register ADDRESS as an allocator (registry owner only).",
    remove_help="Deregister allocator ADDRESS; every allowance it granted stops counting, for good "
                "(registry owner only).",
):
    allocator.add_command(_command)
