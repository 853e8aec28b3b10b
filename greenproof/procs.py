"""Child daemons in their own process groups, always stopped: SIGTERM, then SIGKILL.

The demo (and the e2e tests) start workers, verifiers and dashboards as
separate processes. :class:`Supervisor` starts each in a new session (its own
process group, so the daemon's own children — an artifact server, replay
workers — go down with it), writes its output to a log file, and on ``stop_all``
(also registered with ``atexit`` and for SIGINT/SIGTERM) sends SIGTERM to every
group, waits, then SIGKILLs what is left. Nothing is left orphaned.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Supervisor:
    """Start named children in their own process groups; stop them all exactly once."""

    def __init__(self, grace: float = 8.0) -> None:
        self.grace = grace
        self.children: list[Child] = []
        self._lock = threading.Lock()
        self._stopped = False
        self._old_handlers: dict[int, object] = {}

    def install_handlers(self) -> None:
        """Stop the children at interpreter exit and on SIGINT/SIGTERM (main thread only)."""
        atexit.register(self.stop_all)
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        log.warning("received %s: stopping %d child processes", signal.Signals(signum).name,
                    len(self.children))
        self.stop_all()
        raise SystemExit(128 + signum)

    def spawn(self, name: str, argv: Sequence[str], log_path: Path,
              env: dict[str, str] | None = None, cwd: Path | None = None) -> Child:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
            )
        child = Child(name, proc, log_path)
        with self._lock:
            self.children.append(child)
        log.info("started %s (pid %d), log %s", name, proc.pid, log_path)
        return child

    def _signal_group(self, child: Child, sig: int) -> None:
        try:
            os.killpg(child.proc.pid, sig)  # start_new_session: pgid == pid
        except ProcessLookupError:
            pass
        except PermissionError as exc:  # pragma: no cover - not ours any more
            log.warning("cannot signal %s: %s", child.name, exc)

    def stop(self, child: Child) -> None:
        """SIGTERM the child's group, wait up to ``grace`` s, then SIGKILL it."""
        self._signal_group(child, signal.SIGTERM)
        try:
            child.proc.wait(timeout=self.grace)
        except subprocess.TimeoutExpired:
            log.warning("%s ignored SIGTERM for %.0f s: SIGKILL", child.name, self.grace)
        # SIGKILL the whole group anyway: grandchildren may outlive a clean parent exit.
        self._signal_group(child, signal.SIGKILL)
        try:
            child.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - the kernel always delivers SIGKILL
            log.error("%s (pid %d) did not die", child.name, child.proc.pid)

    def stop_all(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            children = list(self.children)
        for child in children:
            if child.alive:
                self._signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for child in children:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                child.proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM: SIGKILL", child.name)
        for child in children:
            self._signal_group(child, signal.SIGKILL)
            try:
                child.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                log.error("%s (pid %d) did not die", child.name, child.proc.pid)
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._old_handlers.clear()
