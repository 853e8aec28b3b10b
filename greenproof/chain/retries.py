"""One job's failure stays that job's: per-job retries for the chain loop.

Every pass the chain loop takes each job it holds one action further. An action
that fails for one job (a transaction that reverts, a journal that disagrees
with the chain, a view that reverts) is logged with its reason and retried for
that job alone, after a backoff that doubles with each failure; every other job
keeps moving in the same pass.

A failure of the node itself is nobody's job: the client has already retried
it (:class:`greenproof.chain.client.RetryPolicy`) and raises ``ChainError``
(not a ``TxError``) once the node stays away. That propagates, and the chain
loop backs off as a whole, since every job needs the node.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from greenproof.chain.errors import ChainError, TxError, is_transient

log = logging.getLogger(__name__)

#: a job id, or the name of an action that belongs to no job ("withdraw")
Key = int | str


def is_node_failure(exc: BaseException) -> bool:
    """True when the node failed (every job needs it), not one job's action."""
    if isinstance(exc, TxError):
        return False
    return isinstance(exc, ChainError) or is_transient(exc)


def describe(exc: BaseException) -> str:
    """The reason a user acts on: a revert's decoded reason with the action, else the error."""
    if isinstance(exc, TxError):
        return f"{exc.what or 'transaction'} failed: {exc.reason}"
    return f"{type(exc).__name__}: {exc}"


@dataclass
class Failure:
    """One key's failing streak."""

    count: int
    retry_at: float
    reason: str


class JobRetries:
    """Per-key failure streaks and backoff, on a monotonic clock (injectable for tests)."""

    def __init__(self, base_s: float, max_s: float, *,
                 clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger | None = None,
                 expected: tuple[type[BaseException], ...] = ()) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self.clock = clock
        #: the daemon's logger, so a job's failures read as that daemon's
        self.log = logger or log
        #: failures the daemon expects (its own error types): logged without a traceback
        self.expected = expected
        self._failing: dict[Key, Failure] = {}

    def due(self, key: Key) -> bool:
        """False while ``key`` waits out its backoff."""
        failure = self._failing.get(key)
        return failure is None or self.clock() >= failure.retry_at

    def failure(self, key: Key) -> Failure | None:
        """``key``'s current failing streak, if any."""
        return self._failing.get(key)

    def attempt(self, key: Key, action: Callable[[], object]) -> bool:
        """Run ``action`` for ``key`` unless it is backing off; True when it ran and succeeded.

        A node failure propagates (see the module docstring); any other exception
        is logged with its reason and ``key`` is retried after its backoff.
        """
        if not self.due(key):
            return False
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - one job's failure stays that job's
            if is_node_failure(exc):
                raise
            self._failed(key, exc)
            return False
        if (failure := self._failing.pop(key, None)) is not None:
            self.log.info("%s: going on after %d failed tries", _label(key), failure.count)
        return True

    def _failed(self, key: Key, exc: Exception) -> None:
        previous = self._failing.get(key)
        count = 1 if previous is None else previous.count + 1
        delay = min(self.max_s, self.base_s * 2 ** (count - 1))
        reason = describe(exc)
        self._failing[key] = Failure(count, self.clock() + delay, reason)
        # a revert is the chain's answer, its reason says it all; anything else is
        # unexpected: the traceback once, at the start of the streak
        trace = count == 1 and not isinstance(exc, (TxError, *self.expected))
        self.log.warning(
            "%s: %s; retrying it alone in %.0fs (failure %d), other jobs go on",
            _label(key), reason, delay, count, exc_info=exc if trace else None,
        )


def _label(key: Key) -> str:
    return f"job {key}" if isinstance(key, int) else key


__all__ = ["Failure", "JobRetries", "Key", "describe", "is_node_failure"]
