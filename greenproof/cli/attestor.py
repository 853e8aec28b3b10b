"""``greenproof attestor``: sign EIP-712 energy attestations; owner: register attestors.

``sign`` needs the registry address and chain id the signature is bound to: from
the deployment (connects to ``--network``), or given offline with ``--registry``
and ``--chain-id`` so an auditor can sign on an air-gapped machine. Nonces are
per (provider, attestor) (docs/protocol.md §2.2): online, the default nonce is
the last one this attestor signed for the provider, + 1.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from greenproof.attestation import MAX_CARBON_G_PER_KWH
from greenproof.cli.options import chain_options, gateway_from_options, role_commands

DAY = 86_400


@click.group()
def attestor() -> None:
    """Energy attestor: sign attestations for providers; owner: add or remove attestors."""


@attestor.command()
@click.option("--provider", "provider_address", required=True, help="The attested provider's address.")
@click.option("--green-bps", type=click.IntRange(0, 10_000), required=True,
              help="Renewable share in basis points (10000 = 100 %).")
@click.option("--carbon", "carbon_g", type=click.IntRange(0, MAX_CARBON_G_PER_KWH), required=True,
              help="Grid carbon intensity, g CO2e per kWh (the registry accepts at most 5000).")
@click.option("--region", required=True, help="Region / grid-zone tag (at most 32 bytes), e.g. EU-NO.")
@click.option("--valid-days", type=click.FloatRange(min=0, min_open=True), default=30.0,
              show_default=True, help="Validity from --valid-from, in days.")
@click.option("--valid-from", type=click.IntRange(min=0), default=None,
              help="Start of validity, unix seconds (default: the chain's current time).")
@click.option("--nonce", type=click.IntRange(min=1, max=2**64 - 1), default=None,
              help="Attestation nonce (default: the last nonce this attestor signed for the "
                   "provider that the registry accepted, + 1, read from the chain).")
@click.option("--registry", default=None, help="GreenRegistry address (offline signing).")
@click.option("--chain-id", type=int, default=None, help="Chain id (offline signing, with --registry).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the signed attestation JSON.")
@chain_options
def sign(provider_address: str, green_bps: int, carbon_g: int, region: str, valid_days: float,
         valid_from: int | None, nonce: int | None, registry: str | None, chain_id: int | None,
         out: Path, network: str, account: str | None, deployment: Path | None,
         confirmations: int) -> None:
    """Sign an energy attestation for a provider (as the attestor --account)."""
    from eth_utils import is_address

    from greenproof.attestation import AttestationError, sign_attestation
    from greenproof.chain.accounts import AccountError, load_account
    from greenproof.chain.errors import ChainError

    if not is_address(provider_address):
        raise click.BadParameter(f"{provider_address!r} is not an address", param_hint="--provider")
    if (registry is None) != (chain_id is None):
        raise click.UsageError("--registry and --chain-id go together (offline signing)")
    if registry is not None and nonce is None:
        raise click.UsageError("offline signing (--registry) needs --nonce")
    if registry is None:
        gw = gateway_from_options(network, account, deployment, confirmations=confirmations)
        signer = gw.chain.account
        chain_id = gw.chain.chain_id
        try:
            registry = gw.registry_address
            if valid_from is None:
                valid_from = gw.chain.timestamp()
            if nonce is None:
                nonce = gw.attestation_nonce(provider_address, signer.address) + 1
        except ChainError as exc:
            raise click.ClickException(str(exc)) from None
    else:
        if not account:
            raise click.UsageError("attestor sign needs --account (the attestor's key)")
        try:
            signer = load_account(account)
        except AccountError as exc:
            raise click.ClickException(str(exc)) from None
        if valid_from is None:
            valid_from = int(time.time())
    assert chain_id is not None and nonce is not None
    try:
        signed = sign_attestation(
            signer, registry, chain_id, provider=provider_address, green_bps=green_bps,
            carbon_g_per_kwh=carbon_g, region=region, valid_from=valid_from,
            valid_until=valid_from + int(valid_days * DAY), nonce=nonce,
        )
    except AttestationError as exc:
        raise click.ClickException(str(exc)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    signed.save(out)
    click.echo(f"signed attestation for {signed.attestation.provider} (nonce {nonce}, "
               f"{green_bps / 100:g}% green) by {signer.address} -> {out}")


for _command in role_commands(
    "attestor", lambda gw, who: gw.add_attestor(who), lambda gw, who: gw.remove_attestor(who),
    add_help="Register ADDRESS as an attestor (registry owner only).",
    remove_help="Deregister attestor ADDRESS; what it signed stops counting, for good (registry owner only).",
):
    attestor.add_command(_command)
