"""web3 bindings for the greenproof contracts.

``connect(network, account, deployment) -> Chain`` is the entry point; network and
account choices are ape's (see ``docs/accounts-and-networks.md``). Names are loaded
lazily so that ``import greenproof.chain`` stays cheap.
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
    "ChainError": "greenproof.chain.client",
    "TxError": "greenproof.chain.client",
    "RetryPolicy": "greenproof.chain.client",
    "connect": "greenproof.chain.client",
    "make_web3": "greenproof.chain.client",
    "decode_revert_data": "greenproof.chain.client",
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
