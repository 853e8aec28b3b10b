"""The ``Chain`` client every greenproof process talks to the contracts through.

One object per (RPC endpoint, signing account, deployment). It owns what a
long-running daemon needs and ape's provider does not let us control:

- a local nonce counter that re-syncs from the node on "nonce too low", after a
  node restart, and whenever a send's fate is unknown;
- EIP-1559 fees when the node reports a base fee, legacy ``gasPrice`` otherwise;
- a pre-flight ``eth_call`` so that a revert surfaces as
  ``TxError("market: job not open (accept job, job=3)")`` before any gas is spent,
  with the reason decoded from web3's ``ContractLogicError`` or raw revert data;
- bounded exponential-backoff retries on connection errors, timeouts and
  dropped connections, logged with the caller's context (job id, segment);
- receipts (plus optional confirmations); status 0 raises ``TxError``;
- chunked ``eth_getLogs`` for providers that cap the block range.

What a call means (``accept_job``, ``JobPosted``…) is the gateway's
(:mod:`greenproof.chain.gateway`); errors are in :mod:`greenproof.chain.errors`,
connecting and loading the manifest in :mod:`greenproof.chain.connection`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError
from web3.types import TxReceipt

from greenproof.chain.errors import (
    ChainError,
    TxError,
    format_context,
    is_transient,
    revert_reason,
    rpc_message,
)
from greenproof.chain.manifest import Deployment, ManifestError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: role name used in code -> contract name in the deployment manifest
CONTRACT_NAMES: dict[str, str] = {
    "market": "JobMarket",
    "stake": "StakeManager",
    "registry": "GreenRegistry",
    "token": "Token",
    "court": "VerifierCourt",
    "rules": "AuditRules",
}


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff for transient RPC failures.

    With the defaults a call survives a node that is away for about a minute
    (0.5 + 1 + 2 + 4 + 8 + 15 × 3 s) before the error reaches the caller.
    """

    attempts: int = 9
    base_delay: float = 0.5
    max_delay: float = 15.0

    def delays(self) -> Iterable[float]:
        for i in range(self.attempts - 1):
            yield min(self.max_delay, self.base_delay * 2**i)


class Chain:
    """web3 + a signing account + the deployed greenproof contracts.

    Build one with :func:`connect`. Thread-safe for ``transact`` (one nonce lock).
    """

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount | None = None,
        deployment: Deployment | None = None,
        *,
        confirmations: int = 0,
        poll: float = 0.25,
        retry: RetryPolicy | None = None,
        tx_timeout: float = 300.0,
        gas_margin: float = 1.25,
        log_chunk: int = 5000,
        network: str = "",
    ) -> None:
        self.w3 = w3
        self.account = account
        self.confirmations = confirmations
        self.poll = poll
        self.retry = retry or RetryPolicy()
        self.tx_timeout = tx_timeout
        self.gas_margin = gas_margin
        self.log_chunk = log_chunk
        self.network = network
        self._nonce: int | None = None
        self._last_send = 0.0
        self._nonce_lock = threading.RLock()
        self._eip1559: bool | None = None
        self._contracts: dict[str, Contract] = {}
        self.chain_id: int = self._retrying(lambda: self.w3.eth.chain_id, what="read chain id")
        self.deployment = deployment

    @property
    def deployment(self) -> Deployment | None:
        """The deployment manifest the contracts come from (None: contract calls raise ``ChainError``)."""
        return self._deployment

    @deployment.setter
    def deployment(self, deployment: Deployment | None) -> None:
        if deployment is not None and deployment.chain_id != self.chain_id:
            raise ChainError(
                f"chain: deployment is for chain {deployment.chain_id} but the node at "
                f"{self.rpc_url} is chain {self.chain_id}; pass the right --deployment"
            )
        self._deployment = deployment
        self._contracts.clear()

    # -- identity ----------------------------------------------------------

    @property
    def rpc_url(self) -> str:
        return str(getattr(self.w3.provider, "endpoint_uri", "") or "")

    @property
    def address(self) -> str:
        if self.account is None:
            raise ChainError("chain: this command needs an account (--account or $GREENPROOF_ACCOUNT)")
        return self.account.address

    # -- contracts ---------------------------------------------------------

    def contract(self, role: str) -> Contract:
        """The web3 contract for ``role`` (market, stake, registry, token, court) from the manifest."""
        if role not in self._contracts:
            if self.deployment is None:
                raise ChainError(
                    f"chain: no deployment manifest for chain {self.chain_id}; run "
                    "`greenproof deploy` or pass --deployment PATH"
                )
            if role not in CONTRACT_NAMES:
                raise ChainError(f"chain: no contract role {role!r}; one of {', '.join(CONTRACT_NAMES)}")
            try:
                address, abi = self.deployment.contract(CONTRACT_NAMES[role])
            except ManifestError as exc:
                raise ChainError(str(exc)) from None
            self._contracts[role] = self.w3.eth.contract(address=to_checksum_address(address), abi=abi)
        return self._contracts[role]

    @property
    def market(self) -> Contract:
        return self.contract("market")

    @property
    def stake(self) -> Contract:
        return self.contract("stake")

    @property
    def registry(self) -> Contract:
        return self.contract("registry")

    @property
    def token(self) -> Contract:
        return self.contract("token")

    @property
    def court(self) -> Contract:
        return self.contract("court")

    # -- reads -------------------------------------------------------------

    def _retrying(self, fn: Callable[[], T], *, what: str, context: dict[str, Any] | None = None) -> T:
        delays = iter(self.retry.delays())
        attempt = 1
        while True:
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - filtered by is_transient
                if not is_transient(exc):
                    raise
                delay = next(delays, None)
                if delay is None:
                    raise ChainError(
                        f"chain: {what} failed after {attempt} attempts, node at "
                        f"{self.rpc_url} unreachable ({type(exc).__name__}: {exc})"
                        + (f" [{format_context(context)}]" if context else "")
                    ) from exc
                log.warning("%s: RPC error (%s: %s), retry %d in %.1fs %s", what,
                            type(exc).__name__, str(exc)[:200], attempt, delay,
                            format_context(context))
                time.sleep(delay)
                attempt += 1

    def call(self, fn_call: ContractFunction, *, block: int | str = "latest",
             what: str | None = None, context: dict[str, Any] | None = None) -> Any:
        """``fn_call.call()`` with retries; a revert raises ``TxError`` with its reason."""
        label = what or fn_call.fn_name
        tx = {"from": self.account.address} if self.account is not None else {}
        try:
            return self._retrying(lambda: fn_call.call(tx, block_identifier=block),
                                  what=label, context=context)
        except (ContractLogicError, Web3RPCError) as exc:
            reason = revert_reason(exc)
            if reason is None:
                raise
            raise TxError(reason, what=label, context=context) from None

    def block_number(self) -> int:
        return int(self._retrying(lambda: self.w3.eth.block_number, what="read block number"))

    def timestamp(self, block: int | str = "latest") -> int:
        """The timestamp of ``block`` (default: the latest block)."""
        return int(self._retrying(lambda: self.w3.eth.get_block(block)["timestamp"],
                                  what="read block timestamp"))

    def identity(self, deployment_block: int) -> str:
        """What a local journal is bound to: this chain's genesis hash and the hash of the
        block the contracts were deployed in. A chain that was reset (anvil restarted) and
        redeployed at the same addresses has another; a journal of the old one must not
        resume its cursor there."""
        head = self.block_number()
        if deployment_block > head:
            raise ChainError(
                f"chain: the deployment block {deployment_block} is beyond this chain's head {head}: "
                "the chain was reset since the deployment; redeploy and use a fresh data directory"
            )

        def read() -> str:
            genesis = self.w3.eth.get_block(0)["hash"]
            deployed = self.w3.eth.get_block(deployment_block)["hash"]
            return f"{self.chain_id}:{bytes(genesis).hex()}:{deployment_block}:{bytes(deployed).hex()}"

        return self._retrying(read, what="read chain identity")

    def balance(self, address: str | None = None) -> int:
        """Native (ETH) balance of ``address`` (default: this account)."""
        who = to_checksum_address(address or self.address)
        return int(self._retrying(lambda: self.w3.eth.get_balance(who), what="read balance"))

    def wait_until_block(self, n: int, *, timeout: float | None = None) -> int:
        """Block until the chain reaches block ``n``; returns the current block number."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (current := self.block_number()) < n:
            if deadline is not None and time.monotonic() > deadline:
                raise ChainError(f"chain: block {n} not reached within {timeout}s (at {current})")
            time.sleep(self.poll)
        return current

    # -- logs --------------------------------------------------------------

    def logs(self, event_name: str, from_block: int, to_block: int | None = None,
             contract: str = "market", *, args: dict[str, Any] | None = None) -> list[Any]:
        """Decoded ``event_name`` logs of ``contract`` in ``[from_block, to_block]``.

        The range is fetched in chunks (``log_chunk`` blocks, halved when the node
        refuses a range), in block/log order. ``args`` filters on indexed arguments.
        """
        event = self.contract(contract).events[event_name]
        end = self.block_number() if to_block is None else int(to_block)

        def fetch(lo: int, hi: int) -> list[Any]:
            return list(event().get_logs(from_block=lo, to_block=hi, argument_filters=args))

        return self._chunked(fetch, int(from_block), end, what=f"get {event_name} logs")

    def events(self, from_block: int, to_block: int | None = None,
               contract: str = "market") -> list[Any]:
        """Every decodable event of ``contract`` in the range, in chain order (one query per chunk)."""
        c = self.contract(contract)
        end = self.block_number() if to_block is None else int(to_block)
        by_topic = {}
        for item in c.abi:
            if item.get("type") == "event":
                ev = c.events[item["name"]]()
                sig = f"{item['name']}({','.join(_abi_type(i) for i in item['inputs'])})"
                by_topic[Web3.keccak(text=sig)] = ev

        def fetch(lo: int, hi: int) -> list[Any]:
            raw = self.w3.eth.get_logs({"address": c.address, "fromBlock": lo, "toBlock": hi})
            out = []
            for entry in raw:
                ev = by_topic.get(HexBytes(entry["topics"][0])) if entry["topics"] else None
                if ev is not None:
                    out.append(ev.process_log(entry))
            return out

        return self._chunked(fetch, int(from_block), end, what=f"get {contract} events")

    def _chunked(self, fetch: Callable[[int, int], list[Any]], start: int, end: int,
                 *, what: str) -> list[Any]:
        out: list[Any] = []
        chunk = max(1, self.log_chunk)
        lo = max(0, start)
        while lo <= end:
            hi = min(end, lo + chunk - 1)
            try:
                out.extend(self._retrying(lambda lo=lo, hi=hi: fetch(lo, hi), what=what))
            except Web3RPCError as exc:
                text = (exc.message or "").lower()
                if chunk > 1 and any(t in text for t in ("range", "too many", "limit", "exceed")):
                    chunk = max(1, chunk // 2)
                    log.info("%s: node refused %d-block range, retrying with %d", what, hi - lo + 1, chunk)
                    continue
                raise
            lo = hi + 1
        out.sort(key=lambda e: (e["blockNumber"], e["logIndex"]))
        return out

    # -- transactions ------------------------------------------------------

    def transact(
        self,
        fn_call: ContractFunction,
        *,
        what: str,
        context: dict[str, Any] | None = None,
        gas: int | None = None,
        value: int = 0,
    ) -> TxReceipt:
        """Send ``fn_call`` from this account and wait for its receipt.

        Args:
            fn_call: a bound web3 call, e.g. ``chain.market.functions.accept_job(3, cls)``.
            what: a short human label for logs and errors ("accept job").
            context: ids to log with it, e.g. ``{"job": 3, "segment": 5}``.
            gas: a fixed gas limit (skips estimation, not the pre-flight call).
            value: wei to send along.

        Raises:
            TxError: the call would revert (decoded reason) or the mined tx has status 0.
            ChainError: the node stayed unreachable beyond the retry policy.
        """
        account = self.account
        if account is None:
            raise ChainError(f"chain: {what} needs an account (--account or $GREENPROOF_ACCOUNT)")
        ctx = format_context(context)
        base = {"from": account.address, "value": int(value), "chainId": self.chain_id}
        # Pre-flight: surface reverts with their reason before spending gas.
        self._preflight(fn_call, base, what, context)
        if gas is None:
            try:
                estimate = self._retrying(lambda: fn_call.estimate_gas(base), what=f"{what}: estimate gas",
                                          context=context)
            except (ContractLogicError, Web3RPCError) as exc:
                reason = revert_reason(exc)
                if reason is None:
                    raise
                raise TxError(reason, what=what, context=context) from None
            gas = int(estimate * self.gas_margin) + 10_000
        with self._nonce_lock:
            tx_hash, signed_raw, nonce = self._send(fn_call, base, gas, what, context)
        log.info("%s: sent %s nonce=%d gas=%d %s", what, tx_hash, nonce, gas, ctx)
        receipt = self._wait_receipt(tx_hash, signed_raw, nonce, what, context)
        if receipt["status"] != 1:
            reason = self._failed_reason(fn_call, base, receipt, gas)
            raise TxError(reason, what=what, context=context, tx_hash=tx_hash)
        log.info("%s: mined in block %d (gas used %d) %s", what, receipt["blockNumber"],
                 receipt["gasUsed"], ctx)
        if self.confirmations > 0:
            self.wait_until_block(receipt["blockNumber"] + self.confirmations)
        return receipt

    def _preflight(self, fn_call: ContractFunction, base: dict[str, Any], what: str,
                         context: dict[str, Any] | None) -> None:
        try:
            self._retrying(lambda: _simulate(self.w3, fn_call, base), what=what, context=context)
        except (ContractLogicError, Web3RPCError) as exc:
            # a non-revert node error here (e.g. "CreateContractSizeLimit", "insufficient
            # funds") is just as fatal for this tx: report it the same way
            reason = revert_reason(exc) or rpc_message(exc)
            raise TxError(reason, what=what, context=context) from None

    def _fees(self) -> dict[str, int]:
        if self._eip1559 is not False:
            block = self._retrying(lambda: self.w3.eth.get_block("latest"), what="read fees")
            base_fee = block.get("baseFeePerGas")
            if base_fee is not None:
                self._eip1559 = True
                try:
                    tip = int(self._retrying(lambda: self.w3.eth.max_priority_fee, what="read tip"))
                except Web3RPCError:
                    tip = 10**9
                return {"maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * int(base_fee) + tip}
            self._eip1559 = False
        return {"gasPrice": int(self._retrying(lambda: self.w3.eth.gas_price, what="read gas price"))}

    def _node_nonce(self) -> int:
        addr = self.address
        return int(self._retrying(lambda: self.w3.eth.get_transaction_count(addr, "pending"),
                                  what="read nonce"))

    def resync_nonce(self) -> int:
        """Forget the local nonce and take the node's pending count (e.g. after a restart)."""
        with self._nonce_lock:
            self._nonce = self._node_nonce()
            return self._nonce

    def _next_nonce(self, what: str, context: dict[str, Any] | None) -> int:
        """The nonce for the next tx: the local counter checked against the node's pending count.

        The node wins when it is ahead (another process used this account) or
        behind for more than a few seconds (a restarted node lost our pending txs,
        or a test reverted a snapshot); a node briefly behind right after our own
        send is a lagging load-balanced RPC and the local counter wins.
        """
        node = self._node_nonce()
        local = self._nonce
        if local is None or node >= local:
            if local is not None and node > local:
                log.info("%s: node nonce %d ahead of local %d, following the node %s", what,
                         node, local, format_context(context))
            return node
        if time.monotonic() - self._last_send < 5.0:
            return local
        log.warning("%s: node forgot our pending txs (nonce %d < local %d), re-syncing %s",
                    what, node, local, format_context(context))
        return node

    def _send(self, fn_call: ContractFunction, base: dict[str, Any], gas: int, what: str,
              context: dict[str, Any] | None) -> tuple[str, bytes, int]:
        """Sign and broadcast; returns (tx hash, raw tx, nonce). Caller holds the nonce lock."""
        assert self.account is not None
        for _ in range(5):
            nonce = self._next_nonce(what, context)
            tx = fn_call.build_transaction({**base, "gas": gas, "nonce": nonce, **self._fees()})
            signed = self.account.sign_transaction(tx)
            raw = bytes(signed.raw_transaction)
            tx_hash = "0x" + bytes(signed.hash).hex()
            outcome = self._broadcast(raw, tx_hash, what, context)
            if outcome == "sent":
                self._nonce = nonce + 1
                self._last_send = time.monotonic()
                return tx_hash, raw, nonce
            # nonce clash: our view of the nonce is stale (restart, another process)
            node = self._node_nonce()
            log.warning("%s: nonce %d rejected (%s), re-synced to %d %s", what, nonce, outcome,
                        node, format_context(context))
            self._nonce = node
        raise ChainError(f"chain: {what}: could not find a usable nonce for {self.address}")

    def _broadcast(self, raw: bytes, tx_hash: str, what: str, context: dict[str, Any] | None) -> str:
        """Send a raw tx, retrying transient errors; returns "sent" or the nonce problem."""

        def send() -> str:
            try:
                self.w3.eth.send_raw_transaction(raw)
                return "sent"
            except Web3RPCError as exc:
                text = (exc.message or "").lower()
                if "already known" in text or "already imported" in text:
                    return "sent"  # an earlier attempt got through before the connection dropped
                if "nonce too low" in text or "nonce too high" in text or "underpriced" in text:
                    if self._tx_known(tx_hash):
                        return "sent"
                    return text[:80]
                reason = revert_reason(exc)
                if reason is not None:
                    raise TxError(reason, what=what, context=context) from None
                raise

        return self._retrying(send, what=f"{what}: send", context=context)

    def _tx_known(self, tx_hash: str) -> bool:
        try:
            self.w3.eth.get_transaction(tx_hash)
            return True
        except TransactionNotFound:
            return False

    def _wait_receipt(self, tx_hash: str, raw: bytes, nonce: int, what: str,
                      context: dict[str, Any] | None) -> TxReceipt:
        """Poll for the receipt; rebroadcast if a restarted node lost the pending tx."""
        deadline = time.monotonic() + self.tx_timeout
        polls = 0
        while True:
            try:
                return self._retrying(lambda: self.w3.eth.get_transaction_receipt(tx_hash),
                                      what=f"{what}: wait receipt", context=context)
            except TransactionNotFound:
                pass
            polls += 1
            if polls % 20 == 0 and not self._retrying(lambda: self._tx_known(tx_hash),
                                                       what=f"{what}: check pending", context=context):
                if self._node_nonce() <= nonce:
                    log.warning("%s: %s vanished from the node, rebroadcasting %s", what, tx_hash,
                                format_context(context))
                    if self._broadcast(raw, tx_hash, what, context) != "sent":
                        raise ChainError(f"chain: {what}: tx {tx_hash} was dropped and its nonce reused")
            if time.monotonic() > deadline:
                raise ChainError(
                    f"chain: {what}: tx {tx_hash} not mined within {self.tx_timeout:.0f}s "
                    "(fees too low or node stuck?)"
                    + (f" [{format_context(context)}]" if context else "")
                )
            time.sleep(self.poll)

    def _failed_reason(self, fn_call: ContractFunction, base: dict[str, Any], receipt: TxReceipt,
                       gas: int) -> str:
        """Best effort: replay a failed tx at its block to recover the revert reason."""
        try:
            _simulate(self.w3, fn_call, base, block=receipt["blockNumber"])
        except (ContractLogicError, Web3RPCError) as exc:
            return revert_reason(exc) or "reverted"
        except Exception:  # noqa: BLE001 - the replay is only a hint
            pass
        if receipt["gasUsed"] >= gas:
            return f"out of gas (limit {gas})"
        return "reverted (status 0)"

    def ensure_allowance(self, spender: str, amount: int, *, context: dict[str, Any] | None = None
                         ) -> TxReceipt | None:
        """Approve ``spender`` for ``amount`` tokens unless the allowance already covers it."""
        spender = to_checksum_address(spender)
        current = self.call(self.token.functions.allowance(self.address, spender))
        if current >= amount:
            return None
        return self.transact(self.token.functions.approve(spender, int(amount)),
                             what="approve token", context=context)


def _simulate(w3: Web3, fn_call: Any, base: dict[str, Any], block: int | str = "latest") -> Any:
    """eth_call a function call or a constructor (which has no ``.call``)."""
    tx = {"from": base["from"], "value": base["value"]}
    if hasattr(fn_call, "call"):
        return fn_call.call(tx, block_identifier=block)
    return w3.eth.call({**tx, "data": fn_call.data_in_transaction}, block_identifier=block)


def _abi_type(item: dict[str, Any]) -> str:
    """Canonical type string of an ABI input (tuples expanded)."""
    t = item["type"]
    if t.startswith("tuple"):
        return f"({','.join(_abi_type(c) for c in item['components'])}){t[5:]}"
    return t


__all__ = [
    "CONTRACT_NAMES",
    "Chain",
    "ChainError",
    "RetryPolicy",
    "TxError",
]
