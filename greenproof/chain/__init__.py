"""web3 bindings for the greenproof contracts.

``Gateway(connect(network, account, deployment))`` is the entry point: the
gateway (:mod:`greenproof.chain.gateway`) is the one way code reads, writes and
follows the contracts, typed by :mod:`greenproof.chain.models`; the client under
it (:mod:`greenproof.chain.client`) owns nonces, fees, retries and log chunking.
Network and account choices are ape's (see ``docs/accounts-and-networks.md``).
Names are loaded lazily so that ``import greenproof.chain`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "resolve_rpc": "greenproof.chain.network",
    "default_network": "greenproof.chain.network",
    "NetworkError": "greenproof.chain.network",
    "DEFAULT_NETWORK": "greenproof.chain.network",
    "load_account": "greenproof.chain.accounts",
    "dev_account": "greenproof.chain.accounts",
    "AccountError": "greenproof.chain.accounts",
    "Chain": "greenproof.chain.client",
    "RetryPolicy": "greenproof.chain.client",
    "ChainError": "greenproof.chain.errors",
    "TxError": "greenproof.chain.errors",
    "decode_revert_data": "greenproof.chain.errors",
    "is_transient": "greenproof.chain.errors",
    "connect": "greenproof.chain.connection",
    "make_web3": "greenproof.chain.connection",
    "load_deployment": "greenproof.chain.connection",
    "Gateway": "greenproof.chain.gateway",
    "Deployment": "greenproof.chain.manifest",
    "deploy_system": "greenproof.chain.deploy",
    "compile_contracts": "greenproof.chain.compile",
    "Anvil": "greenproof.chain.devnet",
    "DevnetError": "greenproof.chain.devnet",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'greenproof.chain' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
