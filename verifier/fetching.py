"""What an audit downloads, under its budget: the provider's checkpoints and the pinned dataset.

An audit has a **budget**: a deadline on the local monotonic clock, set by the
daemon to the job's commit window end less a margin (docs/verifier.md,
"Budget"). Nothing here may run past it: every transfer's
:class:`~greenproof.uri.FetchLimits` deadline is clamped to the time left.

* :class:`Prefetch` downloads every checkpoint the audit will need (the start
  and end of each audited segment, and the delivered model) as soon as the
  audit starts, a few at a time, to files under the job's work directory, each
  under the spec's state size cap (:func:`greenproof.store.state_size_cap`), the
  minimum rate and the deadline. So every checkpoint has the whole budget,
  whatever the replays cost; one that has not arrived by the deadline is the
  provider's fault. A missing or unreachable checkpoint is tried
  ``FetchPolicy.attempts`` times (backing off) while the budget allows; one that
  broke a rule (too large, refused encoding or redirect) is not tried again.
* :class:`LocalCheckpoints` is the ``fetch`` handed to
  :func:`verifier.audit.audit_job`: it loads the downloaded files (picklable,
  so replays in worker processes use it too); the audit checks every state hash.
* :func:`provide_dataset` loads the spec's dataset, trying the provider's copy
  (``{result_uri}/dataset``, sha256-checked while it streams) before the
  requester's URI; failing both is the requester's fault (abstain).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from greenproof.data import DatasetError, dataset_cache_path, dataset_limits, load_dataset
from greenproof.spec import JobSpec
from greenproof.store import ArtifactError, TrainState, load_checkpoint
from greenproof.uri import (
    FetchError,
    FetchLimits,
    FetchNotFound,
    FetchTimeout,
    FetchUnavailable,
    download,
)

log = logging.getLogger("greenproof.verifier")

#: Errors worth another try while the budget allows: the checkpoint may be served in a moment
#: (a restarting server, a full queue). A body too large, a refused encoding or redirect and
#: wrong bytes are answers, not accidents: they are final.
RETRYABLE = (FetchNotFound, FetchUnavailable, FetchTimeout)


@dataclass(frozen=True)
class Budget:
    """An audit's deadline on the monotonic clock."""

    deadline: float

    @classmethod
    def of(cls, seconds: float) -> Budget:
        """A budget ending ``seconds`` from now."""
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def share(self, fraction: float) -> Budget:
        """A budget ending after ``fraction`` of the time left."""
        return Budget(time.monotonic() + max(0.0, self.remaining()) * fraction)

    def clamp(self, limits: FetchLimits) -> FetchLimits:
        """``limits`` whose deadline never passes this budget's."""
        return limits.model_copy(update={"deadline_s": max(0.001, min(limits.deadline_s, self.remaining()))})


@dataclass(frozen=True)
class FetchPolicy:
    """How often a checkpoint is tried before it counts as withheld."""

    attempts: int = 4
    backoff_s: float = 2.0  # first retry delay; doubles per retry


def fetch_file(url: str, dest: Path, limits: FetchLimits, policy: FetchPolicy, budget: Budget,
               stop: threading.Event | None = None, sha256: str | None = None) -> Path:
    """Download ``url`` to ``dest`` within ``budget``: up to ``policy.attempts`` tries of the
    retryable errors, backing off; the last error is raised (a FetchError subclass)."""
    for attempt in range(1, policy.attempts + 1):
        if budget.expired():
            raise FetchTimeout(f"GET {url}: not received within the audit's budget")
        try:
            # one try per attempt: the attempts and their backoff are this loop's
            return download(url, dest, budget.clamp(limits).model_copy(update={"retries": 0}), sha256=sha256)
        except FetchError as exc:
            wait = policy.backoff_s * 2 ** (attempt - 1)
            last = attempt == policy.attempts or budget.remaining() <= wait
            if not isinstance(exc, RETRYABLE) or last:
                if attempt > 1:
                    why = str(exc).removesuffix(" (gave up after 1 tries)")  # the reader's own count
                    raise type(exc)(f"{why} (after {attempt} tries)") from None
                raise
            log.info("fetch %s: %s; try %d of %d in %.1f s", url, exc, attempt + 1, policy.attempts, wait)
            if stop is not None and stop.wait(wait):
                raise
            if stop is None:
                time.sleep(wait)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- checkpoints


class Status(StrEnum):
    QUEUED = "queued"
    FETCHING = "fetching"
    OK = "ok"
    FAILED = "failed"


class Prefetch:
    """The provider's checkpoints for one audit, downloading at once under the budget."""

    def __init__(self, result_uri: str, hashes: Iterable[bytes], dest: Path, limits: FetchLimits,
                 policy: FetchPolicy, budget: Budget, threads: int = 4) -> None:
        self.result_uri = result_uri.rstrip("/")
        self.dest = dest
        self.limits = limits
        self.policy = policy
        self.budget = budget
        self.stop = threading.Event()
        self._changed = threading.Condition()
        self._status: dict[bytes, Status] = {}
        self._errors: dict[bytes, str] = {}
        #: why checkpoints cannot be stored here (our disk, not the provider): the audit abstains
        self.broken: str | None = None
        self._todo: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        for h in dict.fromkeys(hashes):
            if (dest / h.hex()).is_file():  # downloaded before a restart (renamed into place whole)
                self._status[h] = Status.OK
            else:
                self._status[h] = Status.QUEUED
                self._todo.put(h)
        self._threads = [threading.Thread(target=self._work, name=f"fetch-{i}", daemon=True)
                         for i in range(min(threads, self._todo.qsize()))]

    def start(self) -> Prefetch:
        self.dest.mkdir(parents=True, exist_ok=True)
        for t in self._threads:
            t.start()
        return self

    def wait(self) -> bool:
        """Until every checkpoint is here (True), or one failed, the budget ran out or the
        prefetch was stopped (False)."""
        with self._changed:
            while True:
                if self._errors or self.broken:
                    return False
                if all(s is Status.OK for s in self._status.values()):
                    return True
                left = self.budget.remaining()
                if left <= 0 or self.stop.is_set():
                    return False
                self._changed.wait(min(left, 1.0))

    def close(self) -> None:
        """Stop fetching; a transfer under way ends by the budget's deadline at the latest."""
        self.stop.set()
        for t in self._threads:
            t.join(timeout=max(0.0, self.budget.remaining()))

    def failures(self) -> dict[bytes, str]:
        """Checkpoints that could not be had, with the reason."""
        with self._changed:
            return dict(self._errors)

    def missing(self) -> list[bytes]:
        """Checkpoints not (yet) here."""
        with self._changed:
            return [h for h, s in self._status.items() if s is not Status.OK]

    def local(self) -> LocalCheckpoints:
        return LocalCheckpoints(self.dest, {h.hex(): why for h, why in self.failures().items()})

    def _set(self, h: bytes, status: Status, error: str | None = None) -> None:
        with self._changed:
            self._status[h] = status
            if error is not None:
                self._errors[h] = error
            self._changed.notify_all()

    def _work(self) -> None:
        while not self.stop.is_set():
            try:
                h = self._todo.get_nowait()
            except queue.Empty:
                return
            self._set(h, Status.FETCHING)
            url = f"{self.result_uri}/{h.hex()}"
            try:
                fetch_file(url, self.dest / h.hex(), self.limits, self.policy, self.budget, self.stop)
            except FetchError as exc:
                self._set(h, Status.FAILED, str(exc))
            except Exception as exc:  # noqa: BLE001 - our disk or our bug: not the provider's fault
                self.broken = f"cannot fetch checkpoint {h.hex()} into {self.dest}: {type(exc).__name__}: {exc}"
                self._set(h, Status.QUEUED)
                return
            else:
                self._set(h, Status.OK)


class LocalCheckpoints:
    """``audit_job``'s fetch over the prefetched files (picklable)."""

    def __init__(self, root: Path, errors: dict[str, str]) -> None:
        self.root = root
        self.errors = errors

    def __call__(self, result_uri: str, h: bytes) -> TrainState:
        path = self.root / h.hex()
        if path.is_file():
            return load_checkpoint(path)
        raise ArtifactError(self.errors.get(h.hex(), f"{result_uri}/{h.hex()} was not fetched"))


# --------------------------------------------------------------------------- the dataset


def provide_dataset(spec: JobSpec, result_uri: str, budget: Budget) -> str | None:
    """Load ``spec``'s dataset within ``budget``; None when loaded, else why not (the requester's fault).

    A pinned, non-builtin dataset is first looked for in the local cache, then
    downloaded from the provider's copy at ``{result_uri}/dataset`` into that
    cache (its sha256 checked while it streams), in one try: a provider without
    it says so at once. On any failure the requester's URI is tried
    (:func:`greenproof.data.load_dataset`, also within the budget).
    """
    ref = spec.dataset
    limits = dataset_limits()
    if ref.sha256 is not None and not ref.uri.startswith("builtin://"):
        cached = dataset_cache_path(ref.sha256)
        if not cached.is_file():
            url = f"{result_uri.rstrip('/')}/dataset"
            try:
                fetch_file(url, cached, limits, FetchPolicy(attempts=1), budget, sha256=ref.sha256)
                log.info("dataset %s: got the provider's copy (%s)", ref.uri, url)
            except FetchError as exc:
                log.info("dataset %s: the provider's copy is not available (%s); trying the requester's",
                         ref.uri, exc)
    try:
        load_dataset(ref.uri, ref.sha256, limits=budget.clamp(limits))
    except DatasetError as exc:
        return f"the requester's dataset cannot be had: {exc}"
    return None


__all__ = ["RETRYABLE", "Budget", "FetchPolicy", "LocalCheckpoints", "Prefetch", "Status",
           "fetch_file", "provide_dataset"]
