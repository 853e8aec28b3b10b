"""Connect to a node and load the deployment manifest: the way in to a :class:`Chain`.

    >>> chain = connect("ethereum:local:foundry", "TEST::2")      # deployments/31337.json
    >>> chain = connect("https://rpc.example", key, "deployments/11155111.json")

The network and account choices are ape's (``docs/accounts-and-networks.md``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.middleware import ExtraDataToPOAMiddleware
from web3.providers import HTTPProvider, LegacyWebSocketProvider

from greenproof.chain import manifest
from greenproof.chain.client import Chain, RetryPolicy
from greenproof.chain.errors import ChainError
from greenproof.chain.manifest import Deployment
from greenproof.chain.network import NetworkError, resolve_rpc


def make_web3(rpc_url: str, *, timeout: float = 30.0) -> Web3:
    """A web3 for ``rpc_url`` without web3's own retries (the Chain client retries)."""
    if rpc_url.startswith(("ws://", "wss://")):
        provider: Any = LegacyWebSocketProvider(rpc_url, websocket_timeout=int(timeout))
    else:
        provider = HTTPProvider(rpc_url, request_kwargs={"timeout": timeout},
                                exception_retry_configuration=None)
    w3 = Web3(provider)
    w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    return w3


def connect(
    network: str,
    account: LocalAccount | str | None = None,
    deployment: Deployment | str | Path | None = None,
    *,
    confirmations: int = 0,
    poll: float = 0.25,
    retry: RetryPolicy | None = None,
    require_deployment: bool = False,
) -> Chain:
    """Connect to ``network`` (an ape-style choice or an RPC URL) as ``account``.

    ``account`` may be a ``LocalAccount`` or an ``--account`` string (see
    :func:`greenproof.chain.accounts.load_account`). ``deployment`` may be a
    ``Deployment``, a manifest path, or None for ``deployments/<chain id>.json``
    when that file exists.

    Raises:
        NetworkError: bad network choice or missing RPC URL variable.
        ChainError: the node does not answer, or the deployment is for another chain.
    """
    from greenproof.chain.accounts import load_account

    rpc = resolve_rpc(network)
    if isinstance(account, str):
        account = load_account(account)
    w3 = make_web3(rpc)
    try:
        chain = Chain(w3, account, None, confirmations=confirmations, poll=poll,
                      retry=retry or RetryPolicy(attempts=3), network=network)
    except ChainError as exc:
        raise NetworkError(f"network: no node answers at {rpc} ({network}): {exc.__cause__ or exc}") from None
    chain.retry = retry or RetryPolicy()
    chain.deployment = load_deployment(deployment, chain.chain_id, required=require_deployment)
    return chain


def load_deployment(deployment: Deployment | str | Path | None, chain_id: int, *,
                    required: bool = False) -> Deployment | None:
    """The manifest for ``chain_id``: ``deployment`` itself, the file it names, or
    ``deployments/<chain id>.json`` when None (absent: None, or ``ChainError`` if ``required``).

    Raises:
        ChainError: the file is missing or invalid, or the manifest is for another chain.
    """
    if deployment is None:
        path = manifest.default_path(chain_id)
        if not path.exists():
            if required:
                raise ChainError(
                    f"chain: no deployment manifest {path} for chain {chain_id}; run "
                    "`greenproof deploy` (or `ape run deploy`) or pass --deployment PATH"
                )
            return None
        deployment = path
    if not isinstance(deployment, Deployment):
        path = Path(deployment)
        if not path.exists():
            raise ChainError(f"chain: deployment manifest {path} does not exist")
        try:
            deployment = Deployment.load(path)
        except manifest.ManifestError as exc:
            raise ChainError(str(exc)) from None
    if deployment.chain_id != chain_id:
        raise ChainError(
            f"chain: deployment manifest is for chain {deployment.chain_id} but the node is chain "
            f"{chain_id}; pass the right --deployment"
        )
    return deployment


__all__ = ["connect", "load_deployment", "make_web3"]
