"""``greenproof worker run``: the provider's long-running daemon."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import click

from greenproof.cli.options import chain_options, connect_from_options, daemon_logging

log = logging.getLogger("greenproof.worker")


@click.group()
def worker() -> None:
    """The provider's worker daemon (accepts, trains, commits, opens audits, gets paid)."""


@worker.command()
@chain_options
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("worker-data"),
              show_default=True, help="Journal (sqlite) and checkpoints; keep it across restarts.")
@click.option("--device", default="auto", show_default=True,
              help="Training device: auto (CUDA when present, else CPU), cpu, cuda, cuda:N.")
@click.option("--min-price-per-step", type=click.IntRange(min=0), default=0, show_default=True,
              help="Refuse jobs paying less per training step (token base units).")
@click.option("--max-steps", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="Refuse jobs with more total steps.")
@click.option("--max-memory-gb", type=click.FloatRange(min=0, min_open=True), default=8.0,
              show_default=True, help="Refuse jobs estimated to need more memory.")
@click.option("--disk-budget-gb", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Checkpoint disk per job, GiB (default: unlimited, every boundary kept). With a budget "
                   "the worker keeps every m-th boundary and the last, m the smallest with "
                   "(ceil(N/m) + 2) x state size <= budget, regenerates audited boundaries by replay "
                   "before opening them, and refuses jobs that do not fit even at m = N or whose "
                   "worst-case regeneration exceeds half the open window.")
@click.option("--steps-per-second", type=click.FloatRange(min=0, min_open=True), default=20.0,
              show_default=True,
              help="Throughput assumed for a model family before the worker has measured it.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Artifact server bind address.")
@click.option("--port", type=click.IntRange(0, 65535), default=8700, show_default=True,
              help="Artifact server port (0: any free port).")
@click.option("--public-url", default=None,
              help="URL verifiers reach the artifact server at (committed as result_uri); "
                   "default http://HOST:PORT.")
@click.option("--poll", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds between passes over the chain.")
@click.option("--energy-source", default=None, help="Force an energy source (nvml-energy, rapl, tdp-estimate, …).")
@click.option("--once", "stop", flag_value="once", help="One pass over the chain (and one training job), then exit.")
@click.option("--exit-when-idle", "stop", flag_value="idle",
              help="Exit once every job taken is closed and nothing is owed (tests, scripts).")
@click.option("--cheat", default=None, hidden=True,
              help="TEST/DEMO ONLY: misbehave with a greenproof.adversaries.cheats strategy (gets you slashed).")
@click.option("--cheat-fraction", type=click.FloatRange(0, 1), default=1.0, hidden=True,
              help="TEST/DEMO ONLY: fraction of segments the cheat fakes.")
@click.option("--cheat-seed", type=int, default=0, hidden=True, help="TEST/DEMO ONLY: cheat RNG seed.")
def run(
    network: str,
    account: str | None,
    deployment: Path | None,
    confirmations: int,
    data_dir: Path,
    device: str,
    min_price_per_step: int,
    max_steps: int,
    max_memory_gb: float,
    disk_budget_gb: float | None,
    steps_per_second: float,
    host: str,
    port: int,
    public_url: str | None,
    poll: float,
    energy_source: str | None,
    stop: str | None,
    cheat: str | None,
    cheat_fraction: float,
    cheat_seed: int,
) -> None:
    """Follow the market, take the jobs the policy allows, train them and get paid.

    Progress is journaled in DATA_DIR: after a crash, run the same command again
    and the worker resumes every job where it stopped.
    """
    from pydantic import ValidationError

    from worker.config import WorkerConfig
    from worker.journal import JournalError
    from worker.policy import PolicyConfig

    daemon_logging()
    from greenproof.engine import select_device

    try:
        config = WorkerConfig(
            data_dir=data_dir,
            device=str(select_device(device)),  # resolved once: training, energy and class agree
            policy=PolicyConfig(
                min_price_per_step=min_price_per_step,
                max_steps=max_steps,
                max_memory_gb=max_memory_gb,
                disk_budget_gb=disk_budget_gb,
                steps_per_second=steps_per_second,
            ),
            host=host,
            port=port,
            public_url=public_url,
            confirmations=confirmations,
            poll_s=poll,
            stop=stop or "never",
            energy_source=energy_source,
            cheat=cheat,
            cheat_fraction=cheat_fraction,
            cheat_seed=cheat_seed,
        )
    except ValidationError as exc:
        raise click.ClickException(f"worker: bad option: {exc.errors()[0]['msg']}") from None

    cheat_obj: Any = None
    if cheat:
        from greenproof.adversaries.cheats import CheatError, make_cheat

        try:
            cheat_obj = make_cheat(cheat, fraction=cheat_fraction, seed=cheat_seed)
        except CheatError as exc:
            raise click.ClickException(str(exc)) from None
        log.warning("worker: CHEAT %r enabled (test/demo only): this worker will be slashed", cheat)

    chain = connect_from_options(network, account, deployment, confirmations=confirmations)
    from worker.daemon import Worker
    from worker.server import ArtifactServer, JournalIndex, create_app

    try:
        daemon = Worker(chain, config, cheat=cheat_obj)
    except JournalError as exc:
        raise click.ClickException(str(exc)) from None

    server = ArtifactServer(
        create_app(
            JournalIndex(daemon.journal, daemon.store),
            cheat=cheat_obj,
            limits=config.limits,
            info={"provider": chain.address, "chain_id": chain.chain_id},
        ),
        host=config.host,
        port=config.port,
    )
    try:
        server.start()
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    if config.public_url is None:
        daemon.result_base = config.base_url(server.port)

    def _terminate(signum: int, _frame: Any) -> None:
        log.info("worker: signal %d, stopping after the current step", signum)
        daemon.stop()

    signal.signal(signal.SIGTERM, _terminate)
    try:
        daemon.run()
    finally:
        server.stop()
