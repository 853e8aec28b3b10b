"""Chain time as the worker sees it (deadlines, open and vote windows are chain time)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


def chain_time(timestamp: int) -> str:
    """A chain timestamp as logs and tables show it: ``2026-11-29 12:00:05 UTC (1795953605)``."""
    return f"{datetime.fromtimestamp(int(timestamp), tz=UTC):%Y-%m-%d %H:%M:%S} UTC ({int(timestamp)})"


class ChainClock:
    """Chain time: ``time.time()`` plus the largest (block timestamp - wall clock)
    offset observed. Chain time never runs backwards, and a dev chain's
    ``evm_increaseTime`` shows up as an offset."""

    def __init__(self) -> None:
        self._offset: float | None = None
        self._lock = threading.Lock()

    def observe(self, block_timestamp: int) -> None:
        offset = block_timestamp - time.time()
        with self._lock:
            if self._offset is None or offset > self._offset:
                self._offset = offset

    def now(self) -> int:
        with self._lock:
            offset = self._offset or 0.0
        return int(time.time() + offset)


__all__ = ["ChainClock"]
