"""Network choice -> RPC URL.

The ``--network`` strings are ape's (``ecosystem:network:provider``) so that an
operator uses the same words for ``ape run deploy`` and for the greenproof
daemons; the daemons then talk to that RPC endpoint with web3 directly (see
``docs/accounts-and-networks.md`` for why).
"""

from __future__ import annotations

import os

DEFAULT_NETWORK = "ethereum:local:foundry"
DEFAULT_LOCAL_RPC = "http://127.0.0.1:8545"
_URL_SCHEMES = ("http://", "https://", "ws://", "wss://")


class NetworkError(Exception):
    """A ``--network`` choice that cannot be turned into a reachable RPC endpoint."""


def default_network() -> str:
    """The network used when none is given: ``$GREENPROOF_NETWORK`` or local anvil."""
    return os.environ.get("GREENPROOF_NETWORK") or DEFAULT_NETWORK


def resolve_rpc(network: str) -> str:
    """Turn an ape-style network choice (or a raw URL) into an RPC URL.

    - ``ethereum:local:foundry`` -> ``$GREENPROOF_RPC_URL`` or ``http://127.0.0.1:8545``;
    - ``<ecosystem>:<net>:node`` -> ``$<NET>_RPC_URL`` (``ethereum:sepolia:node`` reads
      ``$SEPOLIA_RPC_URL``);
    - ``http(s)://…`` / ``ws(s)://…`` -> used as is.

    Raises:
        NetworkError: with a message saying what to set or use instead.
    """
    choice = (network or "").strip()
    if not choice:
        raise NetworkError("network: empty network choice (use e.g. ethereum:local:foundry)")
    if choice.lower().startswith(_URL_SCHEMES):
        return choice
    parts = choice.split(":")
    if len(parts) == 2:  # "ethereum:sepolia" -> the node provider, as ape does for remote nets
        parts.append("foundry" if parts[1] == "local" else "node")
    if len(parts) != 3 or not all(parts):
        raise NetworkError(
            f"network: cannot parse {choice!r}; use ecosystem:network:provider "
            "(ethereum:local:foundry, ethereum:sepolia:node) or an http(s):// RPC URL"
        )
    ecosystem, net, provider = (p.lower() for p in parts)
    if net == "local":
        if provider == "foundry":
            return os.environ.get("GREENPROOF_RPC_URL") or DEFAULT_LOCAL_RPC
        if provider == "test":
            raise NetworkError(
                f"network: {choice} is ape's in-process test chain, which other processes "
                "cannot reach; start anvil and use ethereum:local:foundry (or an http:// URL)"
            )
        if provider == "node":
            return os.environ.get("GREENPROOF_RPC_URL") or DEFAULT_LOCAL_RPC
        raise NetworkError(f"network: unknown local provider {provider!r} in {choice!r}")
    if provider in ("node", "foundry", "alchemy", "infura"):
        var = f"{net.upper().replace('-', '_')}_RPC_URL"
        url = os.environ.get(var, "").strip()
        if not url:
            raise NetworkError(
                f"network: {choice} needs {var} (an https RPC endpoint, e.g. "
                f"export {var}=https://…); or pass --network https://…"
            )
        if not url.lower().startswith(_URL_SCHEMES):
            raise NetworkError(f"network: {var}={url!r} is not an http(s):// or ws(s):// URL")
        return url
    raise NetworkError(f"network: unknown provider {provider!r} in {choice!r} ({ecosystem})")
