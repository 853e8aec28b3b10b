"""A local anvil node for the demo, tests and benchmarks.

``Anvil`` starts ``anvil`` from PATH (``make setup`` installs the pinned 1.7.1 into
``node_modules/.bin``) in its own process group, waits until its RPC answers,
and stops it without leaving orphans. It always runs with ``--state FILE`` so
that :meth:`Anvil.restart` brings back the same chain (anvil dumps its state on
a graceful exit and loads it on start), which fault tests use to play "the node
went away for a while".
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

log = logging.getLogger(__name__)


class DevnetError(Exception):
    """anvil is missing, does not start, or does not answer."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: Where `make setup` puts the pinned anvil (package.json), found even without PATH set.
PROJECT_ANVIL = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "anvil"


def anvil_binary() -> str:
    path = shutil.which("anvil") or (str(PROJECT_ANVIL) if PROJECT_ANVIL.exists() else None)
    if path is None:
        raise DevnetError(
            "devnet: `anvil` not found on PATH; run `make setup` (it installs anvil into "
            "node_modules/.bin) and add node_modules/.bin to PATH"
        )
    # npm's `anvil` is a node wrapper around a platform binary; run the binary itself
    # (faster start, and a signal reaches the node rather than a wrapper).
    real = Path(path).resolve()
    if real.suffix == ".mjs":
        for candidate in sorted(real.parent.parent.glob("anvil-*/bin/anvil")):
            if os.access(candidate, os.X_OK):
                return str(candidate)
    return path


def rpc(url: str, method: str, params: list[Any] | None = None, *, timeout: float = 10.0) -> Any:
    """One raw JSON-RPC request (for anvil/evm_* methods web3 has no wrapper for)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    reply = requests.post(url, json=body, timeout=timeout).json()
    if "error" in reply:
        raise DevnetError(f"devnet: {method} failed: {reply['error']}")
    return reply.get("result")


class Anvil:
    """``with Anvil() as node: node.rpc_url`` — a throwaway local chain.

    Args:
        port: TCP port (default: a free one).
        block_time: seconds per block (default: automine, one block per tx).
        accounts: number of pre-funded test accounts (``TEST::0`` …).
        chain_id: the chain id (31337 like ape's local network).
        state_dir: where the state file and log live (default: a temp dir removed on stop).
        extra_args: more anvil flags.
    """

    def __init__(
        self,
        port: int | None = None,
        block_time: float | None = None,
        accounts: int = 10,
        chain_id: int = 31337,
        *,
        state_dir: str | Path | None = None,
        extra_args: list[str] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.port = port or free_port()
        self.block_time = block_time
        self.accounts = accounts
        self.chain_id = chain_id
        self.extra_args = list(extra_args or [])
        self.startup_timeout = startup_timeout
        self._own_dir = state_dir is None
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="greenproof-anvil-"))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_path = self.state_dir / "state.json"
        self.log_path = self.state_dir / "anvil.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            anvil_binary(), "--host", "127.0.0.1", "--port", str(self.port),
            "--accounts", str(self.accounts), "--chain-id", str(self.chain_id),
            "--state", str(self.state_path), "--silent",
        ]
        if self.block_time is not None:
            cmd += ["--block-time", f"{self.block_time:g}"]
        return cmd + self.extra_args

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Anvil:
        if self.running:
            return self
        logfile = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                self.command(), stdout=logfile, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            logfile.close()
        self._wait_ready()
        log.info("anvil up at %s (pid %d, chain %d)", self.rpc_url, self.proc.pid, self.chain_id)
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise DevnetError(f"devnet: anvil exited with {self.proc.returncode}: {tail}")
            try:
                if int(rpc(self.rpc_url, "eth_chainId", timeout=1.0), 16) == self.chain_id:
                    return
            except (requests.RequestException, DevnetError, ValueError):
                pass
            time.sleep(0.05)
        self.stop()
        raise DevnetError(f"devnet: anvil did not answer on {self.rpc_url} within {self.startup_timeout}s")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def halt(self, timeout: float = 10.0) -> None:
        """Stop the node but keep its state file (for :meth:`restart`)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGINT)  # graceful: anvil dumps --state on exit
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
            except ProcessLookupError:
                pass
        try:  # reap anything left in the group
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self) -> None:
        """Stop the node and remove its temp dir (if we made it)."""
        self.halt()
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def restart(self, down_for: float = 0.0) -> None:
        """Stop gracefully (state dumped), stay down ``down_for`` s, start again on the same port."""
        self.halt()
        if down_for > 0:
            time.sleep(down_for)
        self.start()

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- dev helpers -------------------------------------------------------

    def call(self, method: str, *params: Any) -> Any:
        return rpc(self.rpc_url, method, list(params))

    def mine(self, blocks: int = 1) -> None:
        """Mine ``blocks`` empty blocks."""
        self.call("anvil_mine", hex(blocks))

    def evm_increase_time(self, seconds: int) -> None:
        """Move the clock forward and mine a block so ``block.timestamp`` reflects it."""
        self.call("evm_increaseTime", int(seconds))
        self.mine()

    def snapshot(self) -> str:
        return str(self.call("evm_snapshot"))

    def revert(self, snapshot_id: str) -> bool:
        return bool(self.call("evm_revert", snapshot_id))

    def set_balance(self, address: str, wei: int) -> None:
        self.call("anvil_setBalance", address, hex(wei))
