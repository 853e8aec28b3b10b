"""``greenproof verifier``: stake, run the daemon, check one job now.

* ``verifier stake AMOUNT`` bonds stake (votes lock ``min(free, max_vote_stake)``);
* ``verifier run`` follows the market, audits every job entering voting,
  commits and reveals its vote, finalizes, settles and withdraws;
* ``verifier judge --spec … --segment I --start … --end … --provider-class …`` judges
  one segment from local files or URIs (JSON verdict; exit 0 ok, 1 fraud, 2 abstain);
* ``verifier check JOB_ID`` audits one job on chain now, prints
  the verdict with its evidence (``--json`` for the full report) and, with
  ``--vote``, commits the vote (reveal it later with ``verifier run``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from greenproof.cli.options import chain_options, daemon_logging, gateway_from_options
from greenproof.cli.provider import (
    _fail_on_chain_errors,
    amount_argument,
    bond_stake,
    format_amount,
    wei_option,
)

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path(os.environ.get("GREENPROOF_VERIFIER_DIR", "~/.greenproof/verifier")).expanduser()

data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DATA_DIR,
    show_default=True, envvar="GREENPROOF_VERIFIER_DIR",
    help="Vote journal (salts, cursor) and evidence reports.",
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


@click.group()
def verifier() -> None:
    """Verifier: stake, audit jobs by replaying segments, vote, earn the fee."""


@verifier.command()
@amount_argument
@wei_option
@chain_options
def stake(amount: str, wei: bool, network: str, account: str | None, deployment: Path | None,
          confirmations: int) -> None:
    """Bond AMOUNT tokens of verifier stake (approves the StakeManager first)."""
    gw, value, decimals = bond_stake("verifier", amount, wei, network, account, deployment,
                                     confirmations)
    free, need = _fail_on_chain_errors(lambda: (gw.free_stake(), gw.param("min_verifier_stake")))
    click.echo(f"staked {format_amount(value, decimals)}; free stake {format_amount(free, decimals)} "
               f"(minimum to vote {format_amount(need, decimals)})")


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
    signal.signal(signal.SIGTERM, lambda *_: daemon.stop())
    try:
        daemon.run()
    except KeyboardInterrupt:
        daemon.stop()
    finally:
        daemon.journal.close()


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
    """Audit JOB_ID now and print the verdict with its evidence (exit code 1 on fraud)."""
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
            _fail_on_chain_errors(lambda: daemon.audit_and_commit(job_id, gw.job(job_id)))
            report = daemon.load_report(job_id) or report
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
