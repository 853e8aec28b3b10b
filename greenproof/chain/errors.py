"""What can go wrong talking to the chain, and how a failure is read.

- :class:`ChainError`: an operation failed in a way the user can act on (the
  node stayed unreachable, no deployment manifest, wrong chain);
- :class:`TxError`: a call or transaction reverted; ``reason`` is the decoded
  revert string (``"market: job not open"``), ``context`` the ids it ran for;
- :func:`decode_revert_data` / :func:`revert_reason`: ``Error(string)`` and
  ``Panic(uint256)`` payloads out of raw data or web3's exceptions;
- :func:`is_transient`: whether an error is worth retrying (the node is away,
  slow, overloaded or restarting) — the client's retry loop asks it.
"""

from __future__ import annotations

from typing import Any

import requests
from eth_abi import decode as abi_decode
from web3.exceptions import (
    ContractLogicError,
    ProviderConnectionError,
    TimeExhausted,
    TransactionNotFound,
    Web3RPCError,
)

ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)


class ChainError(Exception):
    """A chain operation failed in a way the user can act on (not a revert)."""


class TxError(ChainError):
    """A transaction (or call) reverted or failed; ``reason`` is the decoded revert string."""

    def __init__(
        self,
        reason: str,
        *,
        what: str = "",
        context: dict[str, Any] | None = None,
        tx_hash: str | None = None,
    ) -> None:
        self.reason = reason
        self.what = what
        self.context = dict(context or {})
        self.tx_hash = tx_hash
        where = ", ".join([what] * bool(what) + [f"{k}={v}" for k, v in self.context.items()])
        super().__init__(f"{reason} ({where})" if where else reason)


def format_context(context: dict[str, Any] | None) -> str:
    """``{"job": 3, "segment": 5}`` -> ``"job=3 segment=5"`` for log lines."""
    return " ".join(f"{k}={v}" for k, v in (context or {}).items())


# ---------------------------------------------------------------------------
# revert reasons
# ---------------------------------------------------------------------------


def decode_revert_data(data: bytes | str | None) -> str:
    """Decode raw revert data: ``Error(string)``, ``Panic(uint256)`` or empty."""
    if data is None:
        return "reverted without a reason"
    if isinstance(data, str):
        text = data[2:] if data.startswith("0x") else data
        try:
            data = bytes.fromhex(text)
        except ValueError:
            return data or "reverted without a reason"
    if not data:
        return "reverted without a reason"
    if data[:4] == ERROR_SELECTOR:
        try:
            return str(abi_decode(["string"], data[4:])[0])
        except Exception:  # noqa: BLE001 - malformed payload
            return f"reverted with malformed Error(string) 0x{data.hex()}"
    if data[:4] == PANIC_SELECTOR:
        try:
            return f"panic 0x{abi_decode(['uint256'], data[4:])[0]:02x}"
        except Exception:  # noqa: BLE001
            pass
    return f"reverted with data 0x{data.hex()}"


def revert_reason(exc: BaseException) -> str | None:
    """The revert reason carried by a web3 exception, or None when it is not a revert."""
    if isinstance(exc, ContractLogicError):
        data = exc.data
        if isinstance(data, dict):
            data = data.get("data")
        if isinstance(data, str) and len(data) > 2:
            return decode_revert_data(data)
        message = str(exc.message or exc.args[0] if exc.args else "")
        return _strip_reverted(message) or "reverted without a reason"
    if isinstance(exc, Web3RPCError):
        message = exc.message or ""
        if "revert" in message.lower():
            response = exc.rpc_response or {}
            error = response.get("error", {}) if isinstance(response, dict) else {}
            data = error.get("data") if isinstance(error, dict) else None
            if isinstance(data, str) and len(data) > 2:
                return decode_revert_data(data)
            return _strip_reverted(message) or "reverted without a reason"
    return None


def rpc_message(exc: Web3RPCError | ContractLogicError) -> str:
    """The node's own error message (``EVM error CreateContractSizeLimit``), not web3's wrapper."""
    response = exc.rpc_response if isinstance(exc, Web3RPCError) else None
    if isinstance(response, dict) and isinstance(response.get("error"), dict):
        message = response["error"].get("message")
        if message:
            return str(message)
    return str(exc.message or exc)


def _strip_reverted(message: str) -> str:
    for prefix in ("execution reverted: ", "execution reverted", "revert: ", "revert"):
        if message.startswith(prefix):
            return message[len(prefix):].strip()
    return message.strip()


# ---------------------------------------------------------------------------
# transient errors
# ---------------------------------------------------------------------------

_TRANSIENT_TEXT = (
    "connection", "timed out", "timeout", "temporarily", "too many requests", "rate limit",
    "502", "503", "504", "bad gateway", "service unavailable", "eof", "reset by peer",
)


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: the node is away, slow, overloaded or restarting."""
    if isinstance(exc, (ContractLogicError, TransactionNotFound)):
        return False
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError,
                        TimeoutError, ProviderConnectionError, TimeExhausted)):
        return True
    if isinstance(exc, requests.HTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        return status in (408, 425, 429, 500, 502, 503, 504)
    if isinstance(exc, OSError):
        return True
    if isinstance(exc, Web3RPCError):
        return any(t in (exc.message or "").lower() for t in _TRANSIENT_TEXT[3:])
    return False


__all__ = [
    "ERROR_SELECTOR",
    "PANIC_SELECTOR",
    "ChainError",
    "TxError",
    "decode_revert_data",
    "format_context",
    "is_transient",
    "revert_reason",
    "rpc_message",
]
