"""``greenproof provider``: stake, unstake, withdraw, status, attest.

Amounts are whole tokens (``100``, ``2.5``) scaled by the token's ``decimals()``,
or base units with ``--wei``. Every command takes ``--network`` (ape's choices or
an RPC URL), ``--account`` (``TEST::N``, an ape alias, ``keystore:PATH``,
``env:VAR``) and ``--deployment``. The worker daemon is ``greenproof worker run``.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from greenproof.cli.options import chain_options, gateway_from_options

if TYPE_CHECKING:
    from greenproof.chain.gateway import Gateway

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- amounts


def parse_amount(text: str, decimals: int, *, wei: bool = False) -> int:
    """``"2.5"`` tokens -> base units (``wei=True``: ``text`` already is base units)."""
    try:
        value = Decimal(str(text).replace("_", ""))
    except InvalidOperation:
        raise click.BadParameter(f"{text!r} is not a number") from None
    if not value.is_finite() or value <= 0:
        raise click.BadParameter(f"{text!r} must be a positive amount")
    scaled = value if wei else value * (Decimal(10) ** decimals)
    if scaled != scaled.to_integral_value():
        raise click.BadParameter(
            f"{text!r} has more precision than the token allows "
            + ("(base units are integers)" if wei else f"({decimals} decimals)")
        )
    return int(scaled)


def format_amount(base_units: int, decimals: int) -> str:
    """Base units -> ``"1,234.5"`` tokens."""
    text = f"{Decimal(int(base_units)) / (Decimal(10) ** decimals):,.6f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _fail_on_chain_errors(fn: Any) -> Any:
    """Run ``fn`` turning chain/tx errors into clean ``Error: …`` lines."""
    from greenproof.chain.errors import ChainError

    try:
        return fn()
    except ChainError as exc:
        raise click.ClickException(str(exc)) from None


# --------------------------------------------------------------------------- commands


@click.group()
def provider() -> None:
    """Provider: bond stake, withdraw it and your earnings, submit green attestations."""


amount_argument = click.argument("amount", metavar="AMOUNT")
wei_option = click.option("--wei", is_flag=True, help="AMOUNT is in token base units.")


def bond_stake(role: str, amount: str, wei: bool, network: str, account: str | None,
               deployment: Path | None, confirmations: int) -> tuple[Gateway, int, int]:
    """Approve (if needed) and bond AMOUNT as stake; the one path for providers and verifiers.

    Returns ``(gateway, value, decimals)`` so the caller can print its own summary.
    """
    gw = gateway_from_options(network, account, deployment, confirmations=confirmations)
    decimals = _fail_on_chain_errors(gw.token_decimals)
    value = parse_amount(amount, decimals, wei=wei)

    def run() -> None:
        balance = gw.token_balance()
        if balance < value:
            raise click.ClickException(
                f"{role}: balance {format_amount(balance, decimals)} is below "
                f"{format_amount(value, decimals)} tokens"
            )
        gw.stake(value)

    _fail_on_chain_errors(run)
    return gw, value, decimals


def withdraw_claims(gw: Gateway) -> int:
    """Withdraw what the market owes this account; returns the amount (0: nothing owed, no
    transaction). The one path for requesters, providers and verifiers."""
    owed = gw.claimable()
    if owed:
        gw.withdraw()
    return owed


@provider.command()
@amount_argument
@wei_option
@chain_options
def stake(amount: str, wei: bool, network: str, account: str | None, deployment: Path | None,
          confirmations: int) -> None:
    """Bond AMOUNT tokens as stake (approves the StakeManager first if needed)."""
    gw, value, decimals = bond_stake("provider", amount, wei, network, account, deployment,
                                     confirmations)
    total = _fail_on_chain_errors(gw.staked)
    click.echo(f"staked {format_amount(value, decimals)}; total stake {format_amount(total, decimals)}")


def unbond_stake(role: str, amount: str, wei: bool, network: str, account: str | None,
                 deployment: Path | None, confirmations: int) -> str:
    """Request to unbond AMOUNT of free stake; returns the line to print. The one path for
    providers and verifiers (stake locked by jobs or court seats is not free: the
    StakeManager's revert says so)."""
    gw = gateway_from_options(network, account, deployment, confirmations=confirmations)
    decimals = _fail_on_chain_errors(gw.token_decimals)
    value = parse_amount(amount, decimals, wei=wei)

    def run() -> int:
        gw.request_unstake(value)
        return gw.unbonding()[1]

    release = _fail_on_chain_errors(run)
    return (f"unbonding {format_amount(value, decimals)}; withdrawable from {_when(release)} "
            f"(`greenproof {role} withdraw`)")


def withdraw_funds(gw: Gateway, *, claims: bool, unbonded: bool) -> list[str]:
    """Withdraw released unbonding stake and/or what the market owes; returns the lines to
    print. The one path for providers and verifiers."""
    done: list[str] = []

    def run() -> None:
        decimals = gw.token_decimals()
        if unbonded:
            pending, release = gw.unbonding()
            if pending == 0:
                done.append("no unbonding stake to withdraw")
            elif release > gw.chain.timestamp():
                done.append(f"{format_amount(pending, decimals)} unbonding, released {_when(release)}")
            else:
                gw.withdraw_stake()
                done.append(f"withdrew {format_amount(pending, decimals)} unbonded stake")
        if claims:
            owed = withdraw_claims(gw)
            done.append(f"withdrew {format_amount(owed, decimals)} market claims" if owed
                        else "nothing claimable from the market")

    _fail_on_chain_errors(run)
    return done


def unstake_command(role: str, help_text: str) -> click.Command:
    """``greenproof ROLE unstake AMOUNT``: one command for providers and verifiers."""

    @click.command("unstake", help=help_text)
    @amount_argument
    @wei_option
    @chain_options
    def unstake(amount: str, wei: bool, network: str, account: str | None, deployment: Path | None,
                confirmations: int) -> None:
        click.echo(unbond_stake(role, amount, wei, network, account, deployment, confirmations))

    return unstake


def withdraw_command(help_text: str, *, claims: bool, claims_help: str) -> click.Command:
    """``greenproof ROLE withdraw``: one command for providers and verifiers (``claims``: whether
    the market's claims are withdrawn by default)."""

    @click.command("withdraw", help=help_text)
    @click.option("--claims/--no-claims", default=claims, show_default=True, help=claims_help)
    @click.option("--stake/--no-stake", "unbonded", default=True, show_default=True,
                  help="Withdraw released unbonding stake.")
    @chain_options
    def withdraw(claims: bool, unbonded: bool, network: str, account: str | None,
                 deployment: Path | None, confirmations: int) -> None:
        gw = gateway_from_options(network, account, deployment, confirmations=confirmations)
        for line in withdraw_funds(gw, claims=claims, unbonded=unbonded):
            click.echo(line)

    return withdraw


provider.add_command(unstake_command(
    "provider", "Request to unbond AMOUNT of free stake (withdrawable after the unbonding period)."))
provider.add_command(withdraw_command(
    "Withdraw released unbonding stake and/or (with --claims) market earnings.", claims=False,
    claims_help="Also withdraw what the market owes you (payments, bonuses)."))


@provider.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@chain_options
def attest(file: Path, network: str, account: str | None, deployment: Path | None,
           confirmations: int) -> None:
    """Submit a signed energy attestation FILE (from `greenproof attestor sign`)."""
    from greenproof.attestation import AttestationError, SignedAttestation

    try:
        signed = SignedAttestation.load(file)
        signed.verify()
    except AttestationError as exc:
        raise click.ClickException(str(exc)) from None
    gw = gateway_from_options(network, account, deployment, confirmations=confirmations)
    registry = _fail_on_chain_errors(lambda: gw.registry_address)
    if signed.chain_id != gw.chain.chain_id or signed.registry != registry:
        raise click.ClickException(
            f"provider: {file} was signed for registry {signed.registry} on chain "
            f"{signed.chain_id}, but this deployment's registry is {registry} "
            f"on chain {gw.chain.chain_id}"
        )
    att = signed.attestation
    now = _fail_on_chain_errors(gw.chain.timestamp)
    if att.valid_from > now and _fail_on_chain_errors(lambda: gw.attestation_in_force(att.provider)):
        raise click.ClickException(
            f"provider: {file} starts {_when(att.valid_from)}; while an attestation is in force "
            "the registry takes only one that has started (registry: starts in future, one in "
            "force): submit it then"
        )
    _fail_on_chain_errors(lambda: gw.submit_attestation(signed))
    state = "in force" if att.valid_from <= now else f"stored (in force from {_when(att.valid_from)})"
    click.echo(f"attestation {state} for {att.provider}: {att.green_bps / 100:g}% green, "
               f"{att.carbon_g_per_kwh} g/kWh, until {_when(att.valid_until)}")


@provider.command()
@click.option("--address", default=None, help="Provider to show (default: --account's address).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@chain_options
def status(address: str | None, as_json: bool, network: str, account: str | None,
           deployment: Path | None, confirmations: int) -> None:
    """Stake, unbonding, claimable earnings, green attestation and jobs of a provider."""
    gw = gateway_from_options(network, account, deployment, need_account=address is None)
    who = address or gw.address
    report = _fail_on_chain_errors(lambda: provider_status(gw, who))
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print_status(report)


# --------------------------------------------------------------------------- status


def provider_status(gw: Gateway, who: str) -> dict[str, Any]:
    """Everything ``status`` shows, as plain JSON-able data (amounts in base units)."""
    from eth_utils import to_checksum_address

    from greenproof.attestation import region_text

    who = to_checksum_address(who)
    att = gw.attestation_of(who)
    unbonding, release = gw.unbonding(who)
    jobs = _jobs_of(gw, who)
    report: dict[str, Any] = {
        "address": who,
        "chain_id": gw.chain.chain_id,
        "block_time": gw.chain.timestamp(),
        "decimals": gw.token_decimals(),
        "balance": gw.token_balance(who),
        "staked": gw.staked(who),
        "locked": gw.locked_stake(who),
        "free": gw.free_stake(who),
        "unbonding": unbonding,
        "unbonding_release": release,
        "claimable": gw.claimable(who),
        "green": {
            "in_force": gw.attestation_in_force(who),
            "green_bps": gw.green_bps(who),
            "carbon_g_per_kwh": gw.carbon_intensity(who),
            "attested_green_bps": att.green_bps,
            "region": region_text(att.region) if att.exists else "",
            "valid_from": att.valid_from,
            "valid_until": att.valid_until,
            "nonce": att.nonce,
            "attestor": att.attestor if att.exists else None,
        },
        "jobs": jobs,
        # over every finalized job: payments, the requesters' green premiums, the pool's bonuses
        "earned": {part: sum(j[part] for j in jobs) for part in ("paid", "premium", "bonus")},
    }
    return report


def _jobs_of(gw: Gateway, who: str) -> list[dict[str, Any]]:
    from greenproof.indexer import Indexer

    snapshot = Indexer(gw).snapshot(live=False)
    return [
        {"job_id": j.job_id, "state": str(j.state), "payment": j.payment, "collateral": j.collateral,
         "deadline": j.deadline, "paid": j.paid, "bonus": j.bonus, "premium": j.premium,
         "slashed": j.slashed, "energy_mj": j.energy_mj, "carbon_mg": j.carbon_mg}
        for j in snapshot.jobs if (j.provider or "").lower() == who.lower()
    ]


def _when(ts: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(int(ts), tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _print_status(rep: dict[str, Any], console: Any = None) -> None:
    from greenproof.cli.tables import Col, print_table

    d = rep["decimals"]
    pair = [Col("what", key=True), Col("tokens", "right")]
    rows = [("wallet balance", rep["balance"]), ("staked", rep["staked"]), ("locked by jobs", rep["locked"]),
            ("free stake", rep["free"]), ("unbonding", rep["unbonding"]),
            ("claimable from market", rep["claimable"]), ("earned: payments", rep["earned"]["paid"]),
            ("earned: green premiums", rep["earned"]["premium"]),
            ("earned: green bonuses", rep["earned"]["bonus"])]
    money = [(label, format_amount(value, d)) for label, value in rows]
    if rep["unbonding"]:
        ready = rep["unbonding_release"] <= rep["block_time"]
        money.append(("unbonding released", "now" if ready else _when(rep["unbonding_release"])))
    print_table(f"provider {rep['address']} (chain {rep['chain_id']})", pair, money, show_header=False,
                console=console)

    g = rep["green"]
    green: list[tuple[str, str]] = []
    if g["nonce"] == 0:
        green.append(("attestation", "none (grid default applies)"))
    else:
        green += [("in force", "[green]yes[/]" if g["in_force"] else "[red]no[/]"),
                  ("green share", f"{g['attested_green_bps'] / 100:g} %"), ("region", g["region"]),
                  ("valid", f"{_when(g['valid_from'])} → {_when(g['valid_until'])}"),
                  ("attestor", str(g["attestor"]))]
    green.append(("carbon intensity used", f"{g['carbon_g_per_kwh']} g/kWh"))
    print_table("green attestation", [Col("what", key=True), Col("value", "right")], green,
                show_header=False, console=console)

    columns = [Col("job", "right", key=True), Col("state", key=True),
               *(Col(c, "right") for c in ("payment", "collateral", "paid", "premium", "bonus", "slashed",
                                           "Wh", "CO2 mg"))]
    jobs = [(str(j["job_id"]), j["state"], format_amount(j["payment"], d), format_amount(j["collateral"], d),
             format_amount(j["paid"], d), format_amount(j["premium"], d), format_amount(j["bonus"], d),
             format_amount(j["slashed"], d), f"{j['energy_mj'] / 3_600_000:.3f}", str(j["carbon_mg"]))
            for j in rep["jobs"]]
    print_table(f"jobs ({len(rep['jobs'])})", columns, jobs, console=console)
