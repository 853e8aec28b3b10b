"""Shared click options: ``--network``, ``--account``, ``--deployment`` and the connect helper.

The choices are ape's (``ethereum:local:foundry``, ``ethereum:sepolia:node``,
``TEST::0``, an ape account alias), so an operator uses the same words as for
``ape run deploy``; see ``docs/accounts-and-networks.md``.

Usage::

    @click.command()
    @network_option
    @account_option
    @deployment_option
    def status(network, account, deployment):
        gw = gateway_from_options(network, account, deployment)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from greenproof.chain.accounts import AccountError
from greenproof.chain.network import DEFAULT_NETWORK, NetworkError

if TYPE_CHECKING:
    from greenproof.chain.client import Chain
    from greenproof.chain.gateway import Gateway

F = TypeVar("F", bound=Callable[..., Any])

network_option = click.option(
    "--network",
    envvar="GREENPROOF_NETWORK",
    default=DEFAULT_NETWORK,
    show_default=True,
    show_envvar=True,
    metavar="CHOICE",
    help="ape-style network (ethereum:local:foundry, ethereum:sepolia:node) or an RPC URL.",
)

account_option = click.option(
    "--account",
    envvar="GREENPROOF_ACCOUNT",
    default=None,
    show_envvar=True,
    metavar="ACCOUNT",
    help="Signer: TEST::N, an ape account alias, keystore:PATH or env:VAR (hex key).",
)

deployment_option = click.option(
    "--deployment",
    envvar="GREENPROOF_DEPLOYMENT",
    default=None,
    show_envvar=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Deployment manifest (default: deployments/<chain id>.json).",
)

confirmations_option = click.option(
    "--confirmations",
    envvar="GREENPROOF_CONFIRMATIONS",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Blocks to wait after each transaction is mined (use 1-3 on public testnets).",
)


def chain_options(fn: F) -> F:
    """``--network``, ``--account``, ``--deployment`` and ``--confirmations`` at once."""
    for option in (confirmations_option, deployment_option, account_option, network_option):
        fn = option(fn)
    return fn


def connect_from_options(
    network: str,
    account: str | None = None,
    deployment: str | Path | None = None,
    *,
    need_account: bool = True,
    need_deployment: bool = True,
    confirmations: int = 0,
) -> Chain:
    """Connect like :func:`greenproof.chain.connect`, turning every setup error into a
    ``click.ClickException`` with an actionable message (no traceback).

    The network is resolved first, so a missing ``SEPOLIA_RPC_URL`` is reported before
    any passphrase prompt.
    """
    from greenproof.chain.accounts import load_account
    from greenproof.chain.connection import connect
    from greenproof.chain.errors import ChainError
    from greenproof.chain.network import resolve_rpc

    try:
        resolve_rpc(network)
        signer = None
        if account:
            signer = load_account(account)
        elif need_account:
            raise AccountError("account: this command needs --account (or $GREENPROOF_ACCOUNT)")
        return connect(network, signer, deployment, confirmations=confirmations,
                       require_deployment=need_deployment)
    except (NetworkError, AccountError, ChainError) as exc:
        raise click.ClickException(str(exc)) from None


def gateway_from_options(
    network: str,
    account: str | None = None,
    deployment: str | Path | None = None,
    *,
    need_account: bool = True,
    confirmations: int = 0,
) -> Gateway:
    """:func:`connect_from_options` wrapped in the contracts' :class:`~greenproof.chain.gateway.Gateway`."""
    from greenproof.chain.gateway import Gateway

    return Gateway(connect_from_options(network, account, deployment, need_account=need_account,
                                        confirmations=confirmations))


def address_tx(network: str, account: str | None, deployment: Path | None, confirmations: int,
               address: str, send: Callable[[Gateway, str], Any], *, param: str = "ADDRESS") -> Any:
    """Send one transaction that takes an address argument (``send(gateway, checksummed)``),
    turning a bad address into a usage error and a revert into a clean ``Error: …`` line.

    The one path for the owner's ``add``/``remove`` of attestors and allocators and an
    allocator's ``grant``/``revoke``.
    """
    from eth_utils import is_address, to_checksum_address

    from greenproof.chain.errors import ChainError

    if not is_address(address):
        raise click.BadParameter(f"{address!r} is not an address", param_hint=param)
    gw = gateway_from_options(network, account, deployment, confirmations=confirmations)
    try:
        return send(gw, to_checksum_address(address))
    except ChainError as exc:
        raise click.ClickException(str(exc)) from None


def role_commands(role: str, add: Callable[[Gateway, str], Any], remove: Callable[[Gateway, str], Any],
                  *, add_help: str, remove_help: str) -> list[click.Command]:
    """``greenproof ROLE add ADDRESS`` and ``… remove ADDRESS``: the registry owner registers or
    deregisters an account in a role (attestors, allocators); one pair of commands for each."""

    @click.command("add", help=add_help)
    @click.argument("address")
    @chain_options
    def add_command(address: str, network: str, account: str | None, deployment: Path | None,
                    confirmations: int) -> None:
        address_tx(network, account, deployment, confirmations, address, add)
        click.echo(f"{role} {address} registered")

    @click.command("remove", help=remove_help)
    @click.argument("address")
    @chain_options
    def remove_command(address: str, network: str, account: str | None, deployment: Path | None,
                       confirmations: int) -> None:
        address_tx(network, account, deployment, confirmations, address, remove)
        click.echo(f"{role} {address} removed")

    return [add_command, remove_command]


def daemon_logging() -> None:
    """Daemons report what they do (accepts, commits, verdicts, votes) at INFO by default.

    ``greenproof -vv …`` or ``GREENPROOF_LOG=debug`` still turns on more.
    """
    import logging

    logging.getLogger("greenproof").setLevel(min(logging.getLogger().level or logging.INFO, logging.INFO))
