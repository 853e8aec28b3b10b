"""``greenproof dashboard``: serve the dashboard and JSON API over a deployment."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from greenproof.cli.options import deployment_option, gateway_from_options, network_option

log = logging.getLogger(__name__)


@click.command()
@network_option
@deployment_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (0.0.0.0 exposes it to the network).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--data-dir", "data_dirs", multiple=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="A worker's or verifier's data directory to read loss curves and audit "
                   "evidence from (repeatable).")
@click.option("--refresh", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Seconds between chain reads (requests in between share one snapshot).")
def dashboard(network: str, deployment: Path | None, host: str, port: int,
              data_dirs: tuple[Path, ...], refresh: float) -> None:
    """Serve the web dashboard (jobs, providers, verifiers, audits) and its JSON API under /api."""
    import uvicorn

    from greenproof.chain.errors import ChainError
    from greenproof.dashboard.app import IndexerSource, create_app
    from greenproof.indexer import Indexer

    gw = gateway_from_options(network, None, deployment, need_account=False)
    indexer = Indexer(gw, confirmations=gw.chain.confirmations)
    try:
        decimals, symbol = gw.token_decimals(), gw.token_symbol()
    except ChainError as exc:
        raise click.ClickException(str(exc)) from None
    app = create_app(IndexerSource(indexer, min_interval=refresh), data_dirs=list(data_dirs),
                     token_decimals=decimals, token_symbol=symbol)
    click.echo(f"dashboard on http://{host}:{port}/ (API docs at /docs) for chain {gw.chain.chain_id}")
    uvicorn.run(app, host=host, port=port, log_level="warning")
