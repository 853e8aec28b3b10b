"""Deploy and wire the greenproof contracts with ape, and write the manifest.

    ape run deploy --network ethereum:local:foundry --account TEST::0
    ape run deploy --network ethereum:sepolia:node --account ALIAS --token 0x…

Order (the same as the web3 deployer, ``greenproof deploy``):

    MockToken               unless --token (local chains only, or --mock-token)
    StakeManager(token, 365 days)   provisional unbonding period, so any
                                    --param below passes the
                                    "lifetime < unbonding" checks
    GreenRegistry(token, max_bonus_bps, default_carbon)
    VerifierCourt(stake_manager, --seat-stake)
    JobMarket(token, stake_manager, green_registry, court)
    VerifierCourt.set_market, StakeManager.set_market, StakeManager.set_court,
    GreenRegistry.set_market
    JobMarket.set_<name>(value), VerifierCourt.set_<name>(value)   for each --param
    StakeManager.set_unbonding_period(--unbonding-period or max_job_lifetime + 1 day)

and writes ``<out>/<chain id>.json`` (:class:`greenproof.chain.manifest.Deployment`).
An existing manifest is never overwritten without ``--force``: the script checks
before it spends any gas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from ape import chain, project
from ape.cli import ConnectedProviderCommand, account_option

from greenproof.chain.deploy import (
    COURT_PARAMS,
    DAY,
    DEFAULT_SEAT_STAKE,
    MARKET_PARAMS,
    MOCK_TOKEN,
    PARAMS,
    PROVISIONAL_UNBONDING,
    DeployError,
    ParamError,
    check_deploy_plan,
    court_param_order,
)
from greenproof.chain.deploy import parse_params as _parse_params
from greenproof.chain.manifest import Deployment, default_path

LOCAL_CHAIN_IDS = {1337, 31337}
MAINNET, SEPOLIA = 1, 11_155_111


def parse_params(values: tuple[str, ...]) -> dict[str, int]:
    """``--param`` values through the one parser ``greenproof deploy`` uses too."""
    try:
        return _parse_params(values)
    except ParamError as exc:
        raise click.BadParameter(str(exc), param_hint="--param") from None


def abi_of(contract_type: Any) -> list[dict[str, Any]]:
    """A contract's ABI as plain JSON (what web3 and the manifest expect)."""
    return [
        item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in contract_type.abi
    ]


def is_local(network: Any, chain_id: int) -> bool:
    """A dev chain where the mock token is fine. Decided by chain id first: an
    ape "local" network may point at a node (or fork) of a public chain."""
    if chain_id in (MAINNET, SEPOLIA):
        return False
    return network.name in ("local", "development") or chain_id in LOCAL_CHAIN_IDS


@click.command(cls=ConnectedProviderCommand, short_help="Deploy and wire the greenproof contracts")
@account_option()
@click.option(
    "--token",
    "token_address",
    default=None,
    help="Existing ERC20 to settle in (default: deploy MockToken on local chains).",
)
@click.option(
    "--mock-token",
    is_flag=True,
    help="Deploy the anyone-can-mint MockToken on a non-local chain (testnets only).",
)
@click.option(
    "--unbonding-period",
    type=click.IntRange(min=1),
    default=None,
    help="StakeManager unbonding period in seconds (default: max_job_lifetime + 1 day).",
)
@click.option(
    "--max-bonus-bps",
    type=click.IntRange(0, 5_000),
    default=2_000,
    show_default=True,
    help="Green bonus at 100 % green, in bps of the payment.",
)
@click.option(
    "--default-carbon",
    type=click.IntRange(1, 5_000),
    default=400,
    show_default=True,
    help="Grid intensity (g CO2e/kWh) for providers without an attestation.",
)
@click.option(
    "--seat-stake",
    type=click.IntRange(1, 2**96 - 1),
    default=DEFAULT_SEAT_STAKE,
    show_default=True,
    help="Token base units locked per VerifierCourt seat (fixed for the court's life).",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help=f"JobMarket or VerifierCourt parameter override, repeatable ({', '.join(PARAMS)}).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("deployments"),
    show_default=True,
    help="Folder for the manifest <chain id>.json.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing manifest.")
def cli(
    network,
    account,
    token_address,
    mock_token,
    unbonding_period,
    max_bonus_bps,
    default_carbon,
    seat_stake,
    params,
    out,
    force,
):
    """Deploy StakeManager, GreenRegistry, VerifierCourt and JobMarket (and a MockToken),
    wire them, and write the deployment manifest."""
    overrides = parse_params(params)
    try:  # every bound and cross-rule the contracts check, before the first transaction
        check_deploy_plan(overrides, unbonding_period=unbonding_period, max_bonus_bps=max_bonus_bps,
                          default_carbon=default_carbon, seat_stake=int(seat_stake))
    except DeployError as exc:
        raise click.ClickException(str(exc)) from None
    chain_id = chain.chain_id
    network_choice = f"{network.ecosystem.name}:{network.name}:{chain.provider.name}"
    target = default_path(chain_id, out)
    if target.exists() and not force:
        raise click.ClickException(
            f"deploy: {target} already exists (chain {chain_id}); pass --force to overwrite it "
            "or --out DIR to write elsewhere. Nothing was deployed."
        )

    # ------------------------------------------------------------ token
    if token_address is not None and mock_token:
        raise click.UsageError("deploy: pass either --token or --mock-token, not both")
    if token_address is None:
        if chain_id == MAINNET:
            raise click.ClickException(
                "deploy: refusing to deploy the anyone-can-mint MockToken on Ethereum mainnet; "
                "pass --token ADDRESS of the real settlement token"
            )
        if not is_local(network, chain_id) and not mock_token:
            raise click.ClickException(
                f"deploy: chain {chain_id} ({network_choice}) is not a local chain; pass "
                "--token ADDRESS of the settlement token, or --mock-token to deploy the "
                "anyone-can-mint MockToken (testnets only)"
            )

    if token_address is not None:
        if not chain.provider.get_code(token_address):
            raise click.ClickException(
                f"deploy: no contract at --token {token_address} on chain {chain_id}"
            )
        token_addr = token_address
        token_abi = [i for i in abi_of(project.MockToken.contract_type) if i.get("name") != "mint"]
        first_block = None
    else:
        token = account.deploy(project.MockToken, *MOCK_TOKEN)
        token_addr = token.address
        token_abi = abi_of(project.MockToken.contract_type)
        first_block = chain.get_receipt(token.txn_hash).block_number
        click.echo(f"MockToken      {token_addr}")

    # ------------------------------------------------------------ core contracts
    stake = account.deploy(project.StakeManager, token_addr, PROVISIONAL_UNBONDING)
    if first_block is None:
        first_block = chain.get_receipt(stake.txn_hash).block_number
    click.echo(f"StakeManager   {stake.address}")
    registry = account.deploy(project.GreenRegistry, token_addr, max_bonus_bps, default_carbon)
    click.echo(f"GreenRegistry  {registry.address}")
    court = account.deploy(project.VerifierCourt, stake, seat_stake)
    click.echo(f"VerifierCourt  {court.address}")
    rules = account.deploy(project.AuditRules)
    click.echo(f"AuditRules     {rules.address}")
    market = account.deploy(project.JobMarket, token_addr, stake, registry, court, rules)
    click.echo(f"JobMarket      {market.address}")

    court.set_market(market, sender=account)
    stake.set_market(market, sender=account)
    stake.set_court(court, sender=account)
    registry.set_market(market, sender=account)
    for name in MARKET_PARAMS:
        if name in overrides:
            getattr(market, f"set_{name}")(overrides[name], sender=account)
            click.echo(f"  {name} = {overrides[name]}")
    current = {name: int(getattr(court, name)()) for name in COURT_PARAMS}
    for name in court_param_order(overrides, current):
        getattr(court, f"set_{name}")(overrides[name], sender=account)
        click.echo(f"  {name} = {overrides[name]}")
    lifetime = market.max_job_lifetime()
    period = unbonding_period if unbonding_period is not None else lifetime + DAY
    if period <= lifetime:
        raise click.ClickException(
            f"deploy: --unbonding-period {period} must exceed the market's max_job_lifetime "
            f"{lifetime} s (contracts are deployed and wired; rerun with --force and a longer period)"
        )
    if period != PROVISIONAL_UNBONDING:
        stake.set_unbonding_period(period, sender=account)
    click.echo(f"  unbonding_period = {period} (max_job_lifetime {lifetime})")

    # ------------------------------------------------------------ manifest
    parameters = {name: int(getattr(market, name)()) for name in MARKET_PARAMS}
    parameters.update({name: int(getattr(court, name)()) for name in COURT_PARAMS})
    parameters.update(
        unbonding_period=int(stake.unbonding_period()),
        max_bonus_bps=int(registry.max_bonus_bps()),
        default_carbon_g_per_kwh=int(registry.default_carbon_g_per_kwh()),
        max_job_lifetime=int(lifetime),
        seat_stake=int(court.SEAT_STAKE()),
    )
    deployment = Deployment(
        chain_id=chain_id,
        network=network_choice,
        token=token_addr,
        stake_manager=stake.address,
        green_registry=registry.address,
        job_market=market.address,
        verifier_court=court.address,
        audit_rules=rules.address,
        deployment_block=first_block,
        deployment_block_hash="0x" + bytes(chain.blocks[first_block].hash).hex(),
        deployer=account.address,
        abis={
            "Token": token_abi,
            "StakeManager": abi_of(project.StakeManager.contract_type),
            "GreenRegistry": abi_of(project.GreenRegistry.contract_type),
            "JobMarket": abi_of(project.JobMarket.contract_type),
            "VerifierCourt": abi_of(project.VerifierCourt.contract_type),
            "AuditRules": abi_of(project.AuditRules.contract_type),
        },
        parameters=parameters,
        mock_token=token_address is None,
    )
    path = deployment.save(target, force=force)
    click.echo(f"manifest       {path}")
