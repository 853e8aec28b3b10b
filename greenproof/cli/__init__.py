"""The one ``greenproof`` command for every role.

Sub-commands are loaded lazily so that ``greenproof --help`` stays fast and a
provider's ``stake`` never imports torch.
"""

from __future__ import annotations

import importlib
import logging
import os

import click

# name -> ("module", "attribute", "one-line help")
COMMANDS: dict[str, tuple[str, str, str]] = {
    "spec": ("greenproof.cli.engine_cmds", "spec", "Validate a job spec and print its spec hash."),
    "train": ("greenproof.cli.engine_cmds", "train", "Train a job spec locally and print its commitment."),
    "replay": ("greenproof.cli.engine_cmds", "replay", "Replay one segment from a checkpoint and check it."),
    "deploy": ("greenproof.cli.deploy_cmd", "deploy", "Deploy the contracts with web3 (dev nets; operators use `ape run deploy`)."),
    "provider": ("greenproof.cli.provider", "provider", "Provider: stake, unstake, withdraw, status, attest."),
    "attestor": ("greenproof.cli.attestor", "attestor", "Energy attestor: sign EIP-712 energy attestations."),
    "allocator": ("greenproof.cli.allocator", "allocator", "Allocator: grant and revoke requesters' bonus-pool allowances."),
    "requester": ("greenproof.cli.requester", "requester", "Requester: post, status, watch, cancel, fetch jobs."),
    "worker": ("worker.cli", "worker", "The provider's worker daemon."),
    "verifier": ("verifier.cli", "verifier", "Verifier: stake, run the daemon, check a job."),
    "dashboard": ("greenproof.dashboard.cli", "dashboard", "Serve the web dashboard and JSON API."),
    "demo": ("greenproof.demo", "demo", "Run the whole market on a local anvil and write a report."),
    "doctor": ("greenproof.cli.doctor", "doctor", "Check the node, the manifest, the journals and an account."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.version_option(package_name="greenproof")
def cli(verbose: int) -> None:
    """greenproof: a market for verifiable, green AI training."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    if os.environ.get("GREENPROOF_LOG"):
        level = getattr(logging, os.environ["GREENPROOF_LOG"].upper(), level)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main() -> None:
    cli(prog_name="greenproof")
