"""``greenproof verifier``: stake, join the court's pools, run the daemon, check one job now.

* ``verifier stake AMOUNT`` bonds stake; ``verifier unstake AMOUNT`` unbonds free
  stake, ``verifier withdraw`` takes released stake and the market's claims;
* ``verifier join [--seats N]`` detects the determinism classes this machine
  replays and joins each class's pool with N seats (each locks ``SEAT_STAKE``);
  ``verifier leave`` takes free seats out; ``verifier status`` shows stake,
  seats per pool, claims and recent seats;
* ``verifier run`` follows the court, audits every job it is seated on,
  commits and reveals its vote with the replayed work digests, finalizes,
  settles every seat and withdraws;
* ``verifier judge --spec … --segment I --start … --end … --provider-class …`` judges
  one segment from local files or URIs (JSON verdict; exit 0 ok, 1 fraud, 2 abstain);
* ``verifier check JOB_ID`` audits one job on chain now, prints
  the verdict with its evidence (``--json`` for the full report) and, with
  ``--vote``, commits the vote (reveal it later with ``verifier run``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from greenproof.cli.options import chain_options, daemon_logging, gateway_from_options
from greenproof.cli.provider import (
    _fail_on_chain_errors,
    _when,
    amount_argument,
    bond_stake,
    format_amount,
    unstake_command,
    wei_option,
    withdraw_command,
)

if TYPE_CHECKING:
    from greenproof.chain.gateway import Gateway

log = logging.getLogger(__name__)

#: The verifier's data directory, by the worker's convention (``./worker-data``): a folder in
#: the working directory, ignored by git; ``GREENPROOF_VERIFIER_DIR`` or ``--data-dir`` move it.
DEFAULT_DATA_DIR = Path("verifier-data")

data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DATA_DIR,
    show_default=True, envvar="GREENPROOF_VERIFIER_DIR",
    help="Vote journal (salts, cursor) and evidence reports; keep it across restarts.",
)
parallel_option = click.option(
    "--max-parallel", type=click.IntRange(min=1), default=1, show_default=True,
    help="Segment replays at once (one process each).",
)
threads_option = click.option(
    "--threads", "threads_per_replay", type=click.IntRange(min=1), default=None,
    help="torch threads per replay (default: torch's choice).",
)
device_option = click.option("--device", default=None, help="Replay device: cpu, cuda, cuda:N (default: auto).")


class_option = click.option(
    "--class", "dclass_hex", default=None, metavar="0x…",
    help="One pool by its determinism class (0x + 64 hex); default: every class this machine replays.",
)


@click.group()
def verifier() -> None:
    """Verifier: stake, join the court's pools, audit jobs by replaying segments, vote, earn the fee."""


@verifier.command()
@amount_argument
@wei_option
@chain_options
def stake(amount: str, wei: bool, network: str, account: str | None, deployment: Path | None,
          confirmations: int) -> None:
    """Bond AMOUNT tokens of verifier stake (approves the StakeManager first)."""
    gw, value, decimals = bond_stake("verifier", amount, wei, network, account, deployment,
                                     confirmations)
    free, seat = _fail_on_chain_errors(lambda: (gw.free_stake(), gw.seat_stake()))
    click.echo(f"staked {format_amount(value, decimals)}; free stake {format_amount(free, decimals)} "
               f"(a court seat locks {format_amount(seat, decimals)}: `greenproof verifier join --seats N`)")


verifier.add_command(unstake_command(
    "verifier", "Request to unbond AMOUNT of free stake (seats lock theirs: `verifier leave` frees free seats)."))
verifier.add_command(withdraw_command(
    "Withdraw released unbonding stake and the market's claims (seat rewards).", claims=True,
    claims_help="Also withdraw what the market owes you (seat rewards)."))


def _classes(device: str | None, threads: int | None, dclass_hex: str | None = None) -> dict[str, bytes]:
    """``{label: class}``: the one given, or every class this machine replays (printed)."""
    if dclass_hex is not None:
        text = dclass_hex.removeprefix("0x")
        if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
            raise click.BadParameter(f"{dclass_hex!r} is not 0x + 64 hex digits", param_hint="--class")
        return {"given": bytes.fromhex(text)}
    from verifier.classes import replayable_classes

    classes = replayable_classes(device, threads)
    for precision, dclass in classes.items():
        click.echo(f"this machine replays {precision} jobs in class 0x{dclass.hex()}")
    return classes


@verifier.command()
@click.option("--seats", type=click.IntRange(min=1), default=1, show_default=True,
              help="Seats to add to each pool (each locks SEAT_STAKE of free stake).")
@device_option
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads of the replays (on CPU the class includes the thread count).")
@chain_options
def join(seats: int, device: str | None, threads: int | None, network: str, account: str | None,
         deployment: Path | None, confirmations: int) -> None:
    """Join the court's pool of every determinism class this machine replays, with SEATS seats each.

    Stake first (`greenproof verifier stake`). Seats are drawn in proportion to the pool's
    free seats; a drawn seat that does not vote (or votes ok without the work digests)
    loses `noshow_slash_bps` of its stake."""
    classes = _classes(device, threads)
    gw = gateway_from_options(network, account, deployment, confirmations=confirmations)

    def run() -> list[str]:
        decimals, seat = gw.token_decimals(), gw.seat_stake()
        need, free = seats * seat * len(classes), gw.free_stake()
        if free < need:
            raise click.ClickException(
                f"verifier: {seats} seat(s) in {len(classes)} pool(s) lock {format_amount(need, decimals)} "
                f"tokens but the free stake is {format_amount(free, decimals)} (`greenproof verifier stake` first)")
        lines = []
        for precision, dclass in classes.items():
            gw.join_pool(dclass, seats)
            member, pool = gw.member_of(dclass), gw.pool_of(dclass)
            lines.append(f"{precision}: joined with {seats} seat(s); you hold {member.seats}, the pool "
                         f"{pool.free_seats + pool.busy_seats} of {pool.members} member(s) "
                         f"(stake {format_amount(pool.stake, decimals)}, jobs need "
                         f"{format_amount(gw.court_param('min_class_stake'), decimals)})")
        return lines

    for line in _fail_on_chain_errors(run):
        click.echo(line)


@verifier.command()
@click.option("--seats", type=click.IntRange(min=1), default=None,
              help="Free seats to take out of each pool (default: all free seats).")
@class_option
@device_option
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads of the replays (on CPU the class includes the thread count).")
@chain_options
def leave(seats: int | None, dclass_hex: str | None, device: str | None, threads: int | None,
          network: str, account: str | None, deployment: Path | None, confirmations: int) -> None:
    """Take free seats out of the pools (their stake is unlocked; busy seats leave once settled)."""
    classes = _classes(device, threads, dclass_hex)
    gw = gateway_from_options(network, account, deployment, confirmations=confirmations)

    def run() -> list[str]:
        lines = []
        for label, dclass in classes.items():
            member = gw.member_of(dclass)
            n = member.free_seats if seats is None else min(seats, member.free_seats)
            if n > 0:
                gw.leave_pool(dclass, n)
            busy = f"; {member.busy_seats} busy seat(s) stay until their cases are settled" if member.busy_seats else ""
            lines.append(f"{label}: left with {n} seat(s){busy}" if n else f"{label}: no free seat to leave{busy}")
        return lines

    for line in _fail_on_chain_errors(run):
        click.echo(line)


@verifier.command()
@click.option("--address", default=None, help="Verifier to show (default: --account's address).")
@click.option("--recent", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many of the latest seats to list.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@chain_options
def status(address: str | None, recent: int, as_json: bool, network: str, account: str | None,
           deployment: Path | None, confirmations: int) -> None:
    """Stake (free, locked, unbonding), seats per pool, claimable rewards and recent seats."""
    gw = gateway_from_options(network, account, deployment, need_account=address is None)
    report = _fail_on_chain_errors(lambda: verifier_status(gw, address or gw.address, recent))
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print_status(report)


def verifier_status(gw: Gateway, who: str, recent: int = 10) -> dict[str, Any]:
    """Everything ``status`` shows, as plain JSON-able data (amounts in base units): the pools
    are those ``who`` ever joined (``PoolJoined``), the seats the latest ``SeatsDrawn`` holding it."""
    from eth_utils import to_checksum_address

    from greenproof.chain.models import PoolJoined, SeatsDrawn

    who = to_checksum_address(who)
    start = gw.deployment.deployment_block
    unbonding, release = gw.unbonding(who)
    pools = []
    for dclass in dict.fromkeys(ev.dclass for ev in gw.events(PoolJoined, start, member=who)):
        member, pool = gw.member_of(dclass, who), gw.pool_of(dclass)
        pools.append({"class": "0x" + dclass.hex(), "free_seats": member.free_seats,
                      "busy_seats": member.busy_seats, "pool_members": pool.members,
                      "pool_seats": pool.free_seats + pool.busy_seats, "pool_stake": pool.stake})
    held = [(ev.job_id, ev.round, sum(v.lower() == who.lower() for v in ev.voters))
            for ev in gw.events(SeatsDrawn, start)]
    seats = []
    for job_id, rnd, n in [h for h in held if h[2]][-recent:] if recent else []:
        seat, case = gw.seat_of(job_id, rnd, who), gw.case_of(job_id)
        seats.append({"job_id": job_id, "round": rnd, "seats": n, "vote": seat.status.value,
                      "settled": seat.settled, "case_round": case.round, "outcome": case.outcome.value})
    return {
        "address": who, "chain_id": gw.chain.chain_id, "block_time": gw.chain.timestamp(),
        "decimals": gw.token_decimals(), "staked": gw.staked(who), "locked": gw.locked_stake(who),
        "free": gw.free_stake(who), "unbonding": unbonding, "unbonding_release": release,
        "claimable": gw.claimable(who), "seat_stake": gw.seat_stake(),
        "min_class_stake": gw.court_param("min_class_stake"), "pools": pools, "seats": seats,
    }


def _print_status(rep: dict[str, Any], console: Any = None) -> None:
    from greenproof.cli.tables import Col, print_table

    d = rep["decimals"]
    money = [(label, format_amount(rep[key], d))
             for label, key in [("staked", "staked"), ("locked (seats, jobs)", "locked"), ("free stake", "free"),
                                ("unbonding", "unbonding"), ("claimable from market", "claimable"),
                                ("stake per seat", "seat_stake")]]
    if rep["unbonding"]:
        ready = rep["unbonding_release"] <= rep["block_time"]
        money.append(("unbonding released", "now" if ready else _when(rep["unbonding_release"])))
    print_table(f"verifier {rep['address']} (chain {rep['chain_id']})",
                [Col("what", key=True), Col("tokens", "right")], money, show_header=False, console=console)
    pools = [(p["class"][:18] + "…", str(p["free_seats"]), str(p["busy_seats"]), str(p["pool_members"]),
              str(p["pool_seats"]), format_amount(p["pool_stake"], d)) for p in rep["pools"]]
    print_table(f"pools (a class takes jobs from {format_amount(rep['min_class_stake'], d)} of pool stake)",
                [Col("class", key=True), *(Col(c, "right") for c in ("free", "busy", "members", "seats", "stake"))],
                pools, caption="free, busy: your seats; members, seats, stake: the whole pool's",
                console=console)
    seats = [(str(s["job_id"]), str(s["round"]), str(s["seats"]), s["vote"], "yes" if s["settled"] else "no",
              f"{s['outcome']} (round {s['case_round']})") for s in rep["seats"]]
    print_table(f"recent seats ({len(rep['seats'])})",
                [Col("job", "right", key=True), Col("round", "right"), Col("seats", "right"), Col("vote"),
                 Col("settled"), Col("case")], seats, console=console)


@verifier.command()
@chain_options
@data_dir_option
@parallel_option
@threads_option
@device_option
@click.option("--poll", "poll_s", type=click.FloatRange(min=0.05), default=2.0, show_default=True,
              help="Seconds between passes over the chain.")
@click.option("--exit-when-idle", is_flag=True,
              help="Exit once every job is closed, our votes settled and nothing is claimable.")
@click.option("--energy-warn-ratio", type=click.FloatRange(min=1, min_open=True), default=3.0,
              show_default=True, help="Warn when claimed energy exceeds this multiple of the replay's.")
@click.option("--fetch-attempts", type=click.IntRange(min=1), default=4, show_default=True,
              help="Tries per checkpoint before it counts as withheld.")
@click.option("--fetch-backoff", "fetch_backoff_s", type=click.FloatRange(min=0), default=2.0,
              show_default=True, help="First retry delay in seconds (doubles each retry).")
@click.option("--commit-margin", "commit_margin_s", type=click.FloatRange(min=0), default=120.0,
              show_default=True,
              help="Each audit must end this many seconds before the job's commit window closes "
                   "(at most a quarter of the window), to get the commit mined.")
def run(network: str, account: str | None, deployment: Path | None, confirmations: int, data_dir: Path,
        max_parallel: int, threads_per_replay: int | None, device: str | None, poll_s: float,
        exit_when_idle: bool, energy_warn_ratio: float, fetch_attempts: int, fetch_backoff_s: float,
        commit_margin_s: float) -> None:
    """Run the verifier daemon (Ctrl-C to stop; safe to restart)."""
    import signal

    from verifier.daemon import Verifier, VerifierConfig

    daemon_logging()
    gw = gateway_from_options(network, account, deployment, confirmations=confirmations)
    config = VerifierConfig(
        data_dir=data_dir, max_parallel=max_parallel, threads_per_replay=threads_per_replay,
        device=device, poll_s=poll_s, exit_when_idle=exit_when_idle,
        energy_warn_ratio=energy_warn_ratio, fetch_attempts=fetch_attempts, fetch_backoff_s=fetch_backoff_s,
        commit_margin_s=commit_margin_s,
    )
    daemon = _fail_on_chain_errors(lambda: Verifier(gw, config))
    _fail_on_chain_errors(lambda: _warn_unseated(gw, device, threads_per_replay))
    signal.signal(signal.SIGTERM, lambda *_: daemon.stop())
    try:
        daemon.run()
    except KeyboardInterrupt:
        daemon.stop()
    finally:
        daemon.journal.close()


def _warn_unseated(gw: Gateway, device: str | None, threads: int | None) -> None:
    """Only seated verifiers vote: say so when this account holds no seat in any pool it can replay."""
    from verifier.classes import replayable_classes

    classes = replayable_classes(device, threads)
    if not any(gw.member_of(dclass).seats for dclass in classes.values()):
        log.warning("verifier %s holds no seat in the court's pool of any class it replays (%s): it will not be "
                    "drawn to vote; run `greenproof verifier join`", gw.address,
                    ", ".join(f"{p} 0x{c.hex()[:12]}…" for p, c in classes.items()))


@verifier.command()
@click.argument("job_id", type=click.IntRange(min=1))
@chain_options
@data_dir_option
@parallel_option
@threads_option
@device_option
@click.option("--vote", is_flag=True, help="Commit the vote now (the daemon reveals it later).")
@click.option("--json", "as_json", is_flag=True, help="Print the full JSON report.")
@click.option("--fetch-attempts", type=click.IntRange(min=1), default=4, show_default=True)
def check(job_id: int, network: str, account: str | None, deployment: Path | None, confirmations: int,
          data_dir: Path, max_parallel: int, threads_per_replay: int | None, device: str | None,
          vote: bool, as_json: bool, fetch_attempts: int) -> None:
    """Audit JOB_ID now and print the verdict with its evidence (exit code 1 on fraud).

    With --vote, commit the vote of this account's seats in the case's current round
    (only seated verifiers vote)."""
    from verifier.daemon import Verifier, VerifierConfig, VerifierError, audit_onchain_job

    gw = gateway_from_options(network, account, deployment, confirmations=confirmations,
                              need_account=vote)
    config = VerifierConfig(data_dir=data_dir, max_parallel=max_parallel,
                            threads_per_replay=threads_per_replay, device=device,
                            fetch_attempts=fetch_attempts, progress=not as_json)
    try:
        report = _fail_on_chain_errors(lambda: audit_onchain_job(gw, job_id, config))
    except VerifierError as exc:
        raise click.ClickException(str(exc)) from None
    path = report.save(data_dir)
    if vote:
        daemon = _fail_on_chain_errors(lambda: Verifier(gw, config))
        try:
            _fail_on_chain_errors(lambda: daemon.audit_and_commit(job_id))
            report = daemon.load_report(job_id) or report
        except VerifierError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            daemon.journal.close()
    click.echo(report.model_dump_json(indent=2) if as_json else report.summary())
    if not as_json:
        click.echo(f"report: {path}")
    raise SystemExit(1 if report.fraud else 0)


class _JudgeCommand(click.Command):
    """Usage errors exit 3 (as every unusable input does), so 2 always means "abstain"."""

    def make_context(self, info_name, args, parent=None, **extra):  # type: ignore[no-untyped-def]
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            exc.exit_code = 3
            raise


@verifier.command(cls=_JudgeCommand)
@click.option("--spec", "spec_ref", required=True, help="The job spec: a YAML/JSON file, an http(s) URI or a data: URI.")
@click.option("--segment", type=click.IntRange(min=0), required=True, help="The segment i (boundary i -> i + 1).")
@click.option("--start", default=None,
              help="Start state: a local .safetensors file, {result_uri}/{hash} or a hash (with --result-uri). "
                   "Default for segment 0: the spec's seeded initial state.")
@click.option("--end", required=True, help="Claimed end state, in the same forms as --start.")
@click.option("--provider-class", required=True,
              help="The provider's determinism class (0x + 64 hex, from JobAccepted), 'same' (this machine's: "
                   "bit equality) or 'other' (the cross-class tolerance).")
@click.option("--result-uri", default=None, help="Where bare hashes are served ({result_uri}/{hash hex}).")
@click.option("--start-energy-mj", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--end-energy-mj", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--measure-energy", is_flag=True, help="Measure the replay's energy and compare the claim.")
@device_option
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads for the replay.")
def judge(spec_ref: str, segment: int, start: str | None, end: str, provider_class: str,
          result_uri: str | None, start_energy_mj: int, end_energy_mj: int, measure_energy: bool,
          device: str | None, threads: int | None) -> None:
    """Judge one segment from local files or URIs; print a JSON verdict with every check.

    Exit 0 ok, 1 fraud, 2 abstain (not the provider's fault: the requester's
    dataset cannot be had), 3 unusable input (no verdict). The JSON has
    `verdict`, `checks` (each check: ok / fraud: reason / abstain: reason),
    `reasons`, `abstentions`, `warnings` and the numbers (hashes, distance,
    worst tensor, tolerance, energy).
    """
    import json

    from greenproof.spec import JobSpecError, load_spec
    from verifier.judge import EXIT_BAD_INPUT, EXIT_CODES, JudgeInputError, verdict_json
    from verifier.judge import judge as run_judge

    try:
        spec = load_spec(spec_ref)
        check = run_judge(spec, segment, start, end, provider_class, result_uri=result_uri,
                          start_energy_mj=start_energy_mj, end_energy_mj=end_energy_mj,
                          measure_energy=measure_energy, device=device, threads=threads)
    except (JudgeInputError, JobSpecError) as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(EXIT_BAD_INPUT) from None
    click.echo(json.dumps(verdict_json(spec, check), indent=2))
    raise SystemExit(EXIT_CODES[check.verdict])
