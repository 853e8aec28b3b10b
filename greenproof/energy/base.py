"""What every energy meter shares: the interface, the errors, units, the lifecycle.

docs/protocol.md §5. :class:`EnergyMeter` is the interface a run reads at every
segment boundary; :class:`_Meter` is the lifecycle every meter here inherits
(start / read / close, a lock, the context manager) and :class:`_PolledMeter`
adds the background thread for sources that must be sampled. Units are integer
millijoules (mJ), cumulative since ``start()``, monotone non-decreasing.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

log = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("nvml-energy", "nvml-power", "rapl", "tdp-estimate", "none", "fake")
"""Every value ``EnergyMeter.source`` can take, best first."""

MJ_PER_WH = 3_600_000
MJ_PER_KWH = 3_600_000_000


class EnergyError(RuntimeError):
    """An energy source failed or cannot be used; the message says what to do."""


class NVMLUnavailable(EnergyError):
    """NVML cannot be used at all (no nvidia-ml-py, no library, no driver, no device)."""


class NVMLNotSupported(EnergyError):
    """The device does not support this NVML call (e.g. the energy counter before Volta)."""


# --------------------------------------------------------------------------- #
# Interface                                                                   #
# --------------------------------------------------------------------------- #


@runtime_checkable
class EnergyMeter(Protocol):
    """Cumulative energy of the devices a run uses, in integer millijoules."""

    source: str

    def start(self) -> None:
        """Take the baseline; ``read_mj()`` counts from here."""
        ...

    def read_mj(self) -> int:
        """Cumulative mJ since ``start()``; monotone non-decreasing; frozen after ``close()``."""
        ...

    def close(self) -> None:
        """Take a last reading, stop background threads, release NVML. Idempotent."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-ready metadata for the run record: source, devices, counters, tdp_w, ..."""
        ...


def mj_to_wh(mj: int | float) -> float:
    """Millijoules to watt-hours (1 Wh = 3 600 000 mJ)."""
    return mj / MJ_PER_WH


def carbon_milligrams(energy_mj: int, g_per_kwh: int) -> int:
    """Milligrams of CO2e for ``energy_mj`` at a grid intensity of ``g_per_kwh``.

    The contract's integer formula, so Python and chain agree
    (``JobFinalized.carbon_mg``): ``energy_mj * carbon_intensity // 3_600_000`` (floor).
    """
    for name, value in (("energy_mj", energy_mj), ("g_per_kwh", g_per_kwh)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"energy: {name} must be an int, got {type(value).__name__}")
        if value < 0:
            raise ValueError(f"energy: {name} must be >= 0, got {value}")
    return energy_mj * g_per_kwh // (MJ_PER_KWH // 1000)


# --------------------------------------------------------------------------- #
# Warnings a process needs to read once                                       #
# --------------------------------------------------------------------------- #

_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def warn_once(logger: logging.Logger, msg: str, *args: Any) -> bool:
    """Log ``msg % args`` as a warning the first time this process sees it; repeats go to debug.

    A fallback ("no NVML, using a TDP estimate") is the same news for every
    meter a process makes (one per segment in a verifier), so it is said once.
    The reason is still kept in each meter's ``describe()["fallbacks"]``.
    Returns whether the warning was logged.
    """
    key = (logger.name, msg % args if args else msg)
    with _warned_lock:
        first = key not in _warned
        _warned.add(key)
    logger.log(logging.WARNING if first else logging.DEBUG, msg, *args)
    return first


# --------------------------------------------------------------------------- #
# Common meter machinery                                                      #
# --------------------------------------------------------------------------- #


class _Meter:
    """Lifecycle shared by every meter: lock, start/read/close states, context manager.

    Subclasses implement ``_begin()`` (take the baseline), ``_measure_mj()``
    (cumulative mJ since the baseline, called under the lock) and optionally
    ``_final_mj()`` (the reading taken at close, ``_measure_mj()`` by default),
    ``_end()`` (release resources) and ``_details()`` (extra describe() keys).
    """

    source: str = "none"

    def __init__(self, *, fallbacks: Sequence[str] = ()) -> None:
        self._lock = threading.Lock()
        self._state = "new"  # new -> running -> closed
        self._last_mj = 0
        self.fallbacks: list[str] = list(fallbacks)

    # -- subclass hooks --
    def _begin(self) -> None:
        pass

    def _measure_mj(self) -> int:
        return 0

    def _final_mj(self) -> int:
        return self._measure_mj()

    def _end(self) -> None:
        pass

    def _details(self) -> dict[str, Any]:
        return {}

    # -- public API --
    def start(self) -> None:
        with self._lock:
            if self._state != "new":
                raise EnergyError(
                    f"energy: {self.source} meter already {self._state}; make a new meter per run"
                )
            self._begin()
            self._state = "running"
            self._last_mj = 0
        self._after_start()
        log.info("energy: %s meter started", self.source)

    def _after_start(self) -> None:
        pass

    def read_mj(self) -> int:
        with self._lock:
            if self._state == "new":
                raise EnergyError("energy: read_mj() called before start()")
            if self._state == "running":
                # Monotone even if a device counter misbehaves.
                self._last_mj = max(self._last_mj, int(self._measure_mj()))
            return self._last_mj

    def close(self) -> None:
        self._before_close()
        with self._lock:
            if self._state == "closed":
                return
            if self._state == "running":
                try:
                    self._last_mj = max(self._last_mj, int(self._final_mj()))
                except EnergyError as exc:
                    log.warning("energy: last %s reading failed at close: %s", self.source, exc)
            self._state = "closed"
            self._end()
        log.info("energy: %s meter closed at %d mJ", self.source, self._last_mj)

    def _before_close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        with self._lock:
            info: dict[str, Any] = {"source": self.source, "unit": "mJ"}
            info.update(self._details())
            info["fallbacks"] = list(self.fallbacks)
            return info

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} source={self.source} state={self._state}>"


class _PolledMeter(_Meter, ABC):
    """A meter whose reading must be refreshed regularly by a background thread.

    ``_poll()`` (under the lock) updates the accumulated energy; the thread calls
    it every ``interval_s`` (waiting on an Event, no busy loop) and ``read_mj()``
    calls it once more so a boundary reading is up to date.
    """

    def __init__(self, *, interval_s: float, fallbacks: Sequence[str] = ()) -> None:
        super().__init__(fallbacks=fallbacks)
        if not interval_s > 0:
            raise ValueError(f"energy: sampling interval must be > 0 s, got {interval_s}")
        self.interval_s = float(interval_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples = 0
        self.failed_samples = 0

    @abstractmethod
    def _poll(self) -> None:
        """Take one sample and add it to the accumulated energy (under the lock)."""

    def _safe_poll(self) -> None:
        try:
            self._poll()
            self.samples += 1
        except EnergyError as exc:
            self.failed_samples += 1
            if self.failed_samples == 1 or self.failed_samples % 100 == 0:
                log.warning(
                    "energy: %s sample failed (%d so far): %s",
                    self.source,
                    self.failed_samples,
                    exc,
                )

    def _measure_mj(self) -> int:
        self._safe_poll()
        return self._accumulated_mj()

    @abstractmethod
    def _accumulated_mj(self) -> int:
        """Energy accumulated since ``start()``, in mJ."""

    def _after_start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"greenproof-energy-{self.source}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                if self._state != "running":
                    return
                self._safe_poll()

    def _before_close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    @property
    def sampler_alive(self) -> bool:
        """Whether the background sampling thread is running (False after close())."""
        return self._thread is not None and self._thread.is_alive()
