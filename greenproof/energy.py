"""Energy meters: NVML counter -> NVML power sampling -> RAPL -> TDP estimate.

docs/protocol.md §5. The worker measures the cumulative energy of a run at every
segment boundary with one :class:`EnergyMeter`; the source used is recorded in
the run's metadata (``meter.source`` and ``meter.describe()``).

Selection (:func:`make_meter`):

1. CUDA device: NVML's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``,
   mJ, Volta or newer) summed over the GPUs used -> ``"nvml-energy"``;
2. CUDA device, counter not supported: NVML power (``nvmlDeviceGetPowerUsage``, mW)
   sampled on a background thread and integrated with the trapezoid rule ->
   ``"nvml-power"``;
3. CPU device: RAPL package domains under ``/sys/class/powercap`` (``energy_uj``,
   wrap-around via ``max_energy_range_uj``) -> ``"rapl"``;
4. anything else: a declared TDP times a utilisation times wall time ->
   ``"tdp-estimate"`` (see :class:`TDPEstimateMeter` and docs/energy.md).

``"none"`` (always 0) is only used when asked for. All NVML calls go through a
thin adapter (:class:`NVMLAdapter`); :class:`PynvmlAdapter` wraps ``pynvml`` and
tests pass a fake. Nothing here fails on a machine without a GPU, a driver or
``nvidia-ml-py``: the next source is used and the reason is logged and recorded.

Units: every meter reports integer millijoules (mJ), cumulative since
``start()``, monotone non-decreasing.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

log = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("nvml-energy", "nvml-power", "rapl", "tdp-estimate", "none")
"""Every value ``EnergyMeter.source`` can take, best first."""

ENV_TDP_W = "GREENPROOF_TDP_W"
"""Declared TDP in watts for the ``tdp-estimate`` source (whole set of devices metered)."""
ENV_ENERGY_SOURCE = "GREENPROOF_ENERGY_SOURCE"
"""Forces a source like ``prefer=`` does, when ``prefer`` is not given."""

DEFAULT_SAMPLE_INTERVAL_S = 0.1
"""NVML power sampling period."""
DEFAULT_RAPL_POLL_S = 5.0
"""RAPL background poll period: far below the counter's wrap time (minutes at full load)."""
DEFAULT_CPU_W_PER_LOGICAL_CPU = 5.0
"""Default CPU TDP per logical CPU (e.g. 16 threads -> 80 W; 128 threads -> 640 W)."""
DEFAULT_GPU_TDP_W = 300.0
"""Default per-GPU TDP when NVML cannot even tell the power limit."""

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


def carbon_grams(energy_mj: int, g_per_kwh: int) -> int:
    """Grams of CO2e for ``energy_mj`` at a grid intensity of ``g_per_kwh``.

    The contract's integer formula, so Python and chain agree:
    ``energy_mj * carbon_intensity // 3_600_000_000`` (floor).
    """
    for name, value in (("energy_mj", energy_mj), ("g_per_kwh", g_per_kwh)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"energy: {name} must be an int, got {type(value).__name__}")
        if value < 0:
            raise ValueError(f"energy: {name} must be >= 0, got {value}")
    return energy_mj * g_per_kwh // MJ_PER_KWH


# --------------------------------------------------------------------------- #
# Common meter machinery                                                      #
# --------------------------------------------------------------------------- #


class _Meter:
    """Lifecycle shared by every meter: lock, start/read/close states, context manager.

    Subclasses implement ``_begin()`` (take the baseline), ``_measure_mj()``
    (cumulative mJ since the baseline, called under the lock) and optionally
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
                    self._last_mj = max(self._last_mj, int(self._measure_mj()))
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


# --------------------------------------------------------------------------- #
# NVML seam                                                                   #
# --------------------------------------------------------------------------- #


class NVMLAdapter(Protocol):
    """The only surface through which meters talk to NVML (tests pass a fake).

    Errors: ``init`` raises :class:`NVMLUnavailable`; the readers raise
    :class:`NVMLNotSupported` for a call the device lacks and :class:`EnergyError`
    for any other failure.
    """

    def init(self) -> None: ...
    def shutdown(self) -> None: ...
    def handle(self, cuda_index: int) -> Any: ...
    def device_info(self, handle: Any) -> dict[str, Any]: ...
    def total_energy_mj(self, handle: Any) -> int: ...
    def power_mw(self, handle: Any) -> int: ...
    def power_limit_mw(self, handle: Any) -> int: ...


def _torch_pci_bus_id(cuda_index: int) -> str | None:
    """NVML-style PCI bus id ("00000000:01:00.0") of torch's CUDA device, if torch knows it.

    torch's index already respects CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER, so
    mapping through the PCI address is exact where a plain index is not.
    """
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        props = torch.cuda.get_device_properties(cuda_index)
    except Exception as exc:  # noqa: BLE001 - any torch/CUDA problem means "unknown"
        log.debug("energy: no PCI bus id from torch for cuda:%d: %s", cuda_index, exc)
        return None
    domain = getattr(props, "pci_domain_id", None)
    bus = getattr(props, "pci_bus_id", None)
    dev = getattr(props, "pci_device_id", None)
    if bus is None or dev is None:
        return None
    return f"{int(domain or 0):08X}:{int(bus):02X}:{int(dev):02X}.0"


class PynvmlAdapter:
    """:class:`NVMLAdapter` over ``pynvml`` (nvidia-ml-py).

    ``module`` and ``pci_bus_id_of`` exist for tests; by default ``pynvml`` is
    imported lazily in :meth:`init` and PCI ids come from torch.
    """

    def __init__(
        self,
        module: Any = None,
        *,
        pci_bus_id_of: Callable[[int], str | None] = _torch_pci_bus_id,
    ) -> None:
        self._nv = module
        self._pci_bus_id_of = pci_bus_id_of
        self._initialised = False

    def init(self) -> None:
        if self._nv is None:
            try:
                self._nv = importlib.import_module("pynvml")
            except ImportError as exc:
                raise NVMLUnavailable(
                    f"energy: pynvml not importable ({exc}); install nvidia-ml-py"
                ) from exc
        try:
            self._nv.nvmlInit()
        except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
            raise NVMLUnavailable(
                f"energy: NVML init failed ({type(exc).__name__}: {exc}); "
                "no NVIDIA driver on this machine?"
            ) from exc
        self._initialised = True

    def shutdown(self) -> None:
        if self._initialised:
            self._initialised = False
            try:
                self._nv.nvmlShutdown()
            except Exception as exc:  # noqa: BLE001 - shutting down, nothing to act on
                log.debug("energy: nvmlShutdown failed: %s", exc)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - translated below
            name = type(exc).__name__
            if name in ("NVMLError_NotSupported", "NVMLError_FunctionNotFound"):
                raise NVMLNotSupported(f"energy: {what} not supported ({exc})") from exc
            raise EnergyError(f"energy: {what} failed ({name}: {exc})") from exc

    def handle(self, cuda_index: int) -> Any:
        nv = self._nv
        bus_id = self._pci_bus_id_of(cuda_index)
        if bus_id:
            try:
                return nv.nvmlDeviceGetHandleByPciBusId(bus_id)
            except Exception as exc:  # noqa: BLE001 - fall back to the env / index mapping
                log.warning("energy: NVML has no device at PCI %s (%s)", bus_id, exc)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None and visible.strip():
            entries = [e.strip() for e in visible.split(",") if e.strip()]
            if cuda_index >= len(entries):
                raise EnergyError(
                    f"energy: cuda:{cuda_index} is not in CUDA_VISIBLE_DEVICES={visible!r}"
                )
            entry = entries[cuda_index]
            if entry.isdigit():
                return self._call(
                    f"nvmlDeviceGetHandleByIndex({entry})",
                    nv.nvmlDeviceGetHandleByIndex,
                    int(entry),
                )
            return self._call(
                f"nvmlDeviceGetHandleByUUID({entry})", nv.nvmlDeviceGetHandleByUUID, entry
            )
        return self._call(
            f"nvmlDeviceGetHandleByIndex({cuda_index})", nv.nvmlDeviceGetHandleByIndex, cuda_index
        )

    def device_info(self, handle: Any) -> dict[str, Any]:
        info: dict[str, Any] = {}
        for key, fn_name in (("name", "nvmlDeviceGetName"), ("uuid", "nvmlDeviceGetUUID")):
            try:
                value = getattr(self._nv, fn_name)(handle)
                info[key] = value.decode() if isinstance(value, bytes) else str(value)
            except Exception as exc:  # noqa: BLE001 - metadata only
                log.debug("energy: %s failed: %s", fn_name, exc)
        try:
            pci = self._nv.nvmlDeviceGetPciInfo(handle)
            bus_id = pci.busId
            info["pci_bus_id"] = bus_id.decode() if isinstance(bus_id, bytes) else str(bus_id)
        except Exception as exc:  # noqa: BLE001 - metadata only
            log.debug("energy: nvmlDeviceGetPciInfo failed: %s", exc)
        return info

    def total_energy_mj(self, handle: Any) -> int:
        return int(
            self._call(
                "nvmlDeviceGetTotalEnergyConsumption",
                self._nv.nvmlDeviceGetTotalEnergyConsumption,
                handle,
            )
        )

    def power_mw(self, handle: Any) -> int:
        return int(self._call("nvmlDeviceGetPowerUsage", self._nv.nvmlDeviceGetPowerUsage, handle))

    def power_limit_mw(self, handle: Any) -> int:
        return int(
            self._call(
                "nvmlDeviceGetEnforcedPowerLimit", self._nv.nvmlDeviceGetEnforcedPowerLimit, handle
            )
        )


@dataclass
class _GPU:
    cuda_index: int
    handle: Any
    info: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"cuda_index": self.cuda_index, **self.info}


class _NVMLMeter(_Meter):
    """Owns an initialised adapter and the GPUs it meters; shuts NVML down on close."""

    def __init__(self, nvml: NVMLAdapter, gpus: Sequence[_GPU], **kw: Any) -> None:
        super().__init__(**kw)
        if not gpus:
            raise ValueError("energy: an NVML meter needs at least one GPU")
        self.nvml = nvml
        self.gpus = list(gpus)

    def _end(self) -> None:
        self.nvml.shutdown()


class NVMLEnergyMeter(_NVMLMeter):
    """NVML total-energy counter (mJ since driver load), summed over the GPUs.

    A counter that goes backwards (driver reload, GPU reset) restarted from 0:
    its new value is counted and a warning logged. A failed read is logged and
    the last value returned: the counter is cumulative, so the next good read
    catches up and nothing is lost.
    """

    source = "nvml-energy"

    def __init__(self, nvml: NVMLAdapter, gpus: Sequence[_GPU], **kw: Any) -> None:
        super().__init__(nvml, gpus, **kw)
        self._prev: list[int] = []
        self._total = 0
        self.resets = 0
        self.failed_reads = 0

    def _begin(self) -> None:
        self._prev = [self.nvml.total_energy_mj(g.handle) for g in self.gpus]
        self._total = 0

    def _measure_mj(self) -> int:
        for i, gpu in enumerate(self.gpus):
            try:
                now = self.nvml.total_energy_mj(gpu.handle)
            except EnergyError as exc:
                self.failed_reads += 1
                log.warning("energy: NVML energy read of cuda:%d failed: %s", gpu.cuda_index, exc)
                continue
            if now >= self._prev[i]:
                self._total += now - self._prev[i]
            else:
                self.resets += 1
                log.warning(
                    "energy: NVML energy counter of cuda:%d went back (%d -> %d mJ); "
                    "assuming a driver reload",
                    gpu.cuda_index,
                    self._prev[i],
                    now,
                )
                self._total += now
            self._prev[i] = now
        return self._total

    def _details(self) -> dict[str, Any]:
        return {
            "devices": [g.describe() for g in self.gpus],
            "counters": ["nvmlDeviceGetTotalEnergyConsumption"],
            "counter_resets": self.resets,
            "failed_reads": self.failed_reads,
        }


class NVMLPowerMeter(_NVMLMeter, _PolledMeter):
    """NVML power draw (mW) sampled every ``interval_s`` and integrated (trapezoid).

    ``read_mj()`` takes one more sample, so a boundary reading covers the time
    up to the call. ``clock`` is injectable for tests (seconds, monotone).
    """

    source = "nvml-power"

    def __init__(
        self,
        nvml: NVMLAdapter,
        gpus: Sequence[_GPU],
        *,
        interval_s: float = DEFAULT_SAMPLE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        fallbacks: Sequence[str] = (),
    ) -> None:
        super().__init__(nvml, gpus, interval_s=interval_s, fallbacks=fallbacks)
        self._clock = clock
        self._t = 0.0
        self._p_mw = 0.0
        self._energy_mj = 0.0

    def _total_power_mw(self) -> float:
        return float(sum(self.nvml.power_mw(g.handle) for g in self.gpus))

    def _begin(self) -> None:
        self._p_mw = self._total_power_mw()
        self._t = self._clock()
        self._energy_mj = 0.0

    def _poll(self) -> None:
        p = self._total_power_mw()
        t = self._clock()
        dt = max(0.0, t - self._t)
        # mW * s = mJ
        self._energy_mj += 0.5 * (self._p_mw + p) * dt
        self._p_mw, self._t = p, t

    def _accumulated_mj(self) -> int:
        return int(self._energy_mj)

    def _details(self) -> dict[str, Any]:
        return {
            "devices": [g.describe() for g in self.gpus],
            "counters": ["nvmlDeviceGetPowerUsage"],
            "method": "trapezoid",
            "interval_s": self.interval_s,
            "samples": self.samples,
            "failed_samples": self.failed_samples,
        }


# --------------------------------------------------------------------------- #
# RAPL                                                                        #
# --------------------------------------------------------------------------- #

_RAPL_TOP = re.compile(r"^intel-rapl:(\d+)$")


def _read_int(path: Path) -> int:
    """Read one integer sysfs attribute (seam for tests)."""
    return int(path.read_text().strip())


@dataclass
class RaplDomain:
    """One RAPL package domain: ``intel-rapl:N`` named ``package-N``."""

    path: Path
    name: str
    max_range_uj: int

    @property
    def energy_file(self) -> Path:
        return self.path / "energy_uj"


def find_rapl_domains(root: str | os.PathLike[str] = "/sys/class/powercap") -> list[RaplDomain]:
    """Package domains under ``root``, each readable; raises :class:`EnergyError` otherwise.

    Only top-level ``intel-rapl:N`` zones named ``package-*`` count: their
    subzones (``intel-rapl:N:M``: core, uncore, dram) are parts of the package and
    ``psys``/``intel-rapl-mmio`` zones overlap it, so adding any of them would
    double count. AMD CPUs expose their package counters under the same names.
    """
    base = Path(root)
    if not base.is_dir():
        raise EnergyError(
            f"energy: no RAPL: {base} does not exist (not Linux, no RAPL driver, or a container without it)"
        )
    domains: list[RaplDomain] = []
    seen: set[str] = set()
    for entry in sorted(base.iterdir(), key=lambda p: p.name):
        if not _RAPL_TOP.match(entry.name):
            continue
        real = os.path.realpath(entry)
        if real in seen:
            continue
        try:
            name = (entry / "name").read_text().strip()
        except OSError as exc:
            log.debug("energy: skipping %s: %s", entry, exc)
            continue
        if not name.startswith("package"):
            continue
        try:
            _read_int(entry / "energy_uj")
            max_range = _read_int(entry / "max_energy_range_uj")
        except PermissionError as exc:
            raise EnergyError(
                f"energy: RAPL counter {entry / 'energy_uj'} not readable ({exc.strerror}); "
                "since the CVE-2020-8694 fix it is root-only: run `sudo chmod o+r "
                "/sys/class/powercap/intel-rapl:*/energy_uj` or use a TDP estimate"
            ) from exc
        except (OSError, ValueError) as exc:
            raise EnergyError(f"energy: RAPL counter under {entry} unusable ({exc})") from exc
        if max_range <= 0:
            raise EnergyError(f"energy: RAPL {entry} has max_energy_range_uj={max_range}")
        seen.add(real)
        domains.append(RaplDomain(path=entry, name=name, max_range_uj=max_range))
    if not domains:
        raise EnergyError(f"energy: no RAPL package domain under {base}")
    return domains


class RaplMeter(_PolledMeter):
    """Sum of RAPL package counters (µJ), wrap-around handled with ``max_energy_range_uj``.

    The counters wrap every few minutes at full load, so a background thread reads
    them every ``interval_s`` (default 5 s); one wrap between two reads is
    corrected (``now + max_range - prev``), more than one cannot be seen.
    """

    source = "rapl"

    def __init__(
        self,
        domains: Sequence[RaplDomain],
        *,
        interval_s: float = DEFAULT_RAPL_POLL_S,
        fallbacks: Sequence[str] = (),
    ) -> None:
        super().__init__(interval_s=interval_s, fallbacks=fallbacks)
        if not domains:
            raise ValueError("energy: a RAPL meter needs at least one domain")
        self.domains = list(domains)
        self._prev: list[int] = []
        self._total_uj = 0
        self.wraps = 0

    def _read(self, domain: RaplDomain) -> int:
        try:
            return _read_int(domain.energy_file)
        except (OSError, ValueError) as exc:
            raise EnergyError(f"energy: reading {domain.energy_file} failed ({exc})") from exc

    def _begin(self) -> None:
        self._prev = [self._read(d) for d in self.domains]
        self._total_uj = 0

    def _poll(self) -> None:
        for i, domain in enumerate(self.domains):
            now = self._read(domain)
            prev = self._prev[i]
            if now >= prev:
                self._total_uj += now - prev
            else:
                self.wraps += 1
                self._total_uj += now + domain.max_range_uj - prev
            self._prev[i] = now

    def _accumulated_mj(self) -> int:
        return self._total_uj // 1000

    def _details(self) -> dict[str, Any]:
        return {
            "devices": [d.name for d in self.domains],
            "counters": [str(d.energy_file) for d in self.domains],
            "max_energy_range_uj": {d.name: d.max_range_uj for d in self.domains},
            "interval_s": self.interval_s,
            "wraps": self.wraps,
            "samples": self.samples,
            "failed_samples": self.failed_samples,
        }


# --------------------------------------------------------------------------- #
# TDP estimate and none                                                       #
# --------------------------------------------------------------------------- #


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class TDPEstimateMeter(_Meter):
    """Energy = ``tdp_w`` x utilisation x wall time.

    ``utilisation="process-cpu-time"`` (CPU runs): utilisation is this process's
    CPU time (all threads) over ``wall time x cpus``, so the energy is
    ``tdp_w x cpu_seconds / cpus``: a run is charged for the CPU it used, not for
    a machine that idles or serves others. ``utilisation="wall"`` (GPU runs, no
    utilisation counter): the devices are taken as fully busy, ``tdp_w x wall``.
    Clocks are injectable for tests.
    """

    source = "tdp-estimate"

    def __init__(
        self,
        tdp_w: float,
        *,
        utilisation: str = "process-cpu-time",
        cpus: int | None = None,
        tdp_origin: str = "argument",
        devices: Sequence[str] = ("cpu",),
        wall_clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.process_time,
        fallbacks: Sequence[str] = (),
    ) -> None:
        super().__init__(fallbacks=fallbacks)
        if not tdp_w > 0:
            raise ValueError(f"energy: tdp_w must be > 0 W, got {tdp_w}")
        if utilisation not in ("process-cpu-time", "wall"):
            raise ValueError(f"energy: unknown utilisation mode {utilisation!r}")
        self.tdp_w = float(tdp_w)
        self.utilisation = utilisation
        self.cpus = cpus or _usable_cpus()
        self.tdp_origin = tdp_origin
        self.devices = list(devices)
        self._wall = wall_clock
        self._cpu = cpu_clock
        self._t0 = 0.0
        self._c0 = 0.0

    def _begin(self) -> None:
        self._t0 = self._wall()
        self._c0 = self._cpu()

    def _measure_mj(self) -> int:
        wall = max(0.0, self._wall() - self._t0)
        if self.utilisation == "wall":
            busy_s = wall
        else:
            # CPU seconds / cpus, never more than the wall time (utilisation <= 1).
            busy_s = min(wall, max(0.0, self._cpu() - self._c0) / self.cpus)
        return int(self.tdp_w * busy_s * 1000.0)

    def _details(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "devices": list(self.devices),
            "tdp_w": self.tdp_w,
            "tdp_origin": self.tdp_origin,
            "utilisation": self.utilisation,
        }
        if self.utilisation == "process-cpu-time":
            info["cpus"] = self.cpus
        return info


class NullMeter(_Meter):
    """Measures nothing (always 0 mJ); only when forced with ``prefer="none"``."""

    source = "none"


# --------------------------------------------------------------------------- #
# Selection                                                                   #
# --------------------------------------------------------------------------- #


def _resolve_device(device: Any) -> tuple[str, list[int]]:
    """("cuda", [indices]) or ("cpu", []) for a torch device, a string, a list or None."""
    if isinstance(device, (list, tuple)):
        kinds = [_resolve_device(d) for d in device]
        if kinds and all(k == "cuda" for k, _ in kinds):
            return "cuda", sorted({i for _, idx in kinds for i in idx})
        if any(k == "cuda" for k, _ in kinds):
            raise EnergyError("energy: cannot meter a mix of CUDA and non-CUDA devices")
        return "cpu", []
    if device is None:
        try:
            import torch

            if torch.cuda.is_available():
                return "cuda", [torch.cuda.current_device()]
        except ImportError:
            pass
        return "cpu", []
    text = str(device).strip().lower()
    kind, _, index = text.partition(":")
    if kind != "cuda":
        return "cpu", []
    if index:
        if not index.isdigit():
            raise EnergyError(f"energy: bad CUDA device {device!r} (expected cuda or cuda:N)")
        return "cuda", [int(index)]
    try:
        import torch

        if torch.cuda.is_available():
            return "cuda", [torch.cuda.current_device()]
    except ImportError:
        pass
    return "cuda", [0]


def _declared_tdp(tdp_w: float | None) -> tuple[float | None, str]:
    if tdp_w is not None:
        if not tdp_w > 0:
            raise EnergyError(f"energy: tdp_w must be > 0 W, got {tdp_w}")
        return float(tdp_w), "argument"
    raw = os.environ.get(ENV_TDP_W)
    if raw is not None and raw.strip():
        try:
            value = float(raw)
        except ValueError:
            raise EnergyError(f"energy: {ENV_TDP_W}={raw!r} is not a number of watts") from None
        if not value > 0:
            raise EnergyError(f"energy: {ENV_TDP_W}={raw!r} must be > 0 W")
        return value, f"env:{ENV_TDP_W}"
    return None, ""


def make_meter(
    device: Any = None,
    *,
    tdp_w: float | None = None,
    prefer: str | None = None,
    nvml: NVMLAdapter | None = None,
    powercap_root: str = "/sys/class/powercap",
    sample_interval_s: float = DEFAULT_SAMPLE_INTERVAL_S,
    rapl_poll_s: float = DEFAULT_RAPL_POLL_S,
) -> EnergyMeter:
    """The best energy meter for ``device`` (not started: call ``start()`` or use ``with``).

    ``device``: a torch device, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, a list of
    CUDA devices, or None (CUDA if torch sees one). ``prefer`` (or env
    ``GREENPROOF_ENERGY_SOURCE``) forces one of :data:`SOURCES` and raises
    :class:`EnergyError` if it is unavailable. ``tdp_w`` (or env
    ``GREENPROOF_TDP_W``) is the declared TDP for the estimate. ``nvml`` is the
    NVML adapter (default :class:`PynvmlAdapter`). Why better sources were skipped
    is logged and kept in ``describe()["fallbacks"]``.
    """
    if prefer is None:
        prefer = os.environ.get(ENV_ENERGY_SOURCE) or None
    if prefer is not None and prefer not in SOURCES:
        raise EnergyError(
            f"energy: unknown energy source {prefer!r}; choose one of {', '.join(SOURCES)}"
        )
    for what, value in (("sample_interval_s", sample_interval_s), ("rapl_poll_s", rapl_poll_s)):
        if not value > 0:
            raise EnergyError(f"energy: {what} must be > 0 s, got {value}")
    kind, indices = _resolve_device(device)
    declared_w, declared_origin = _declared_tdp(tdp_w)
    fallbacks: list[str] = []

    def skipped(reason: str) -> None:
        fallbacks.append(reason)
        log.warning("%s", reason)

    if prefer == "none":
        return NullMeter()

    if prefer in ("nvml-energy", "nvml-power") and kind != "cuda":
        raise EnergyError(f"energy: {prefer} needs a CUDA device, got {device!r}")

    gpu_limit_w: float | None = None
    if kind == "cuda" and prefer in (None, "nvml-energy", "nvml-power", "tdp-estimate"):
        adapter: NVMLAdapter = nvml if nvml is not None else PynvmlAdapter()
        gpus: list[_GPU] = []
        try:
            adapter.init()
        except NVMLUnavailable as exc:
            skipped(str(exc))
        else:
            keep = False
            try:
                for i in indices:
                    handle = adapter.handle(i)
                    gpus.append(_GPU(i, handle, adapter.device_info(handle)))
                if prefer in (None, "nvml-energy"):
                    try:
                        for g in gpus:
                            adapter.total_energy_mj(g.handle)
                        counter_meter = NVMLEnergyMeter(adapter, gpus, fallbacks=fallbacks)
                        keep = True
                        return counter_meter
                    except EnergyError as exc:
                        skipped(str(exc))
                if prefer in (None, "nvml-power"):
                    try:
                        for g in gpus:
                            adapter.power_mw(g.handle)
                        power_meter = NVMLPowerMeter(
                            adapter, gpus, interval_s=sample_interval_s, fallbacks=fallbacks
                        )
                        keep = True
                        return power_meter
                    except EnergyError as exc:
                        skipped(str(exc))
                if declared_w is None:
                    try:
                        gpu_limit_w = sum(adapter.power_limit_mw(g.handle) for g in gpus) / 1000
                    except EnergyError as exc:
                        log.info("energy: no NVML power limit for the TDP estimate: %s", exc)
            except EnergyError as exc:
                skipped(str(exc))
            finally:
                if not keep:
                    adapter.shutdown()

    if prefer == "rapl" or (prefer is None and kind == "cpu"):
        try:
            domains = find_rapl_domains(powercap_root)
            return RaplMeter(domains, interval_s=rapl_poll_s, fallbacks=fallbacks)
        except EnergyError as exc:
            skipped(str(exc))
    elif prefer is None and kind == "cuda":
        fallbacks.append("energy: RAPL skipped: it measures CPUs, not the GPU this run uses")

    if prefer in (None, "tdp-estimate"):
        if kind == "cuda":
            if declared_w is not None:
                watts, origin = declared_w, declared_origin
            elif gpu_limit_w:
                watts, origin = gpu_limit_w, "nvml-power-limit"
            else:
                watts, origin = DEFAULT_GPU_TDP_W * len(indices), "default-per-gpu"
            meter_tdp = TDPEstimateMeter(
                watts,
                utilisation="wall",
                tdp_origin=origin,
                devices=[f"cuda:{i}" for i in indices],
                fallbacks=fallbacks,
            )
        else:
            cpus = _usable_cpus()
            if declared_w is not None:
                watts, origin = declared_w, declared_origin
            else:
                watts, origin = DEFAULT_CPU_W_PER_LOGICAL_CPU * cpus, "default-per-cpu"
            meter_tdp = TDPEstimateMeter(
                watts,
                utilisation="process-cpu-time",
                cpus=cpus,
                tdp_origin=origin,
                fallbacks=fallbacks,
            )
        log.warning(
            "energy: using a TDP estimate (%.1f W from %s, utilisation %s); "
            "declare %s for a better one",
            meter_tdp.tdp_w,
            origin,
            meter_tdp.utilisation,
            ENV_TDP_W,
        )
        return meter_tdp

    raise EnergyError(
        f"energy: source {prefer!r} was forced but is unavailable: "
        + ("; ".join(fallbacks) or "no reason recorded")
    )


__all__ = [
    "SOURCES",
    "EnergyError",
    "EnergyMeter",
    "NVMLAdapter",
    "NVMLEnergyMeter",
    "NVMLNotSupported",
    "NVMLPowerMeter",
    "NVMLUnavailable",
    "NullMeter",
    "PynvmlAdapter",
    "RaplDomain",
    "RaplMeter",
    "TDPEstimateMeter",
    "carbon_grams",
    "find_rapl_domains",
    "make_meter",
    "mj_to_wh",
]
