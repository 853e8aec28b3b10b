"""NVML sources: the board's energy counter (``nvml-energy``) and sampled power (``nvml-power``).

docs/protocol.md §5. Every NVML call goes through a thin adapter
(:class:`NVMLAdapter`); :class:`PynvmlAdapter` wraps ``pynvml`` (nvidia-ml-py,
imported lazily) and tests pass a fake. torch's CUDA index is mapped to the NVML
device through its PCI bus id, else ``CUDA_VISIBLE_DEVICES``, else the index.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from greenproof.energy.base import (
    EnergyError,
    NVMLNotSupported,
    NVMLUnavailable,
    _Meter,
    _PolledMeter,
    warn_once,
)

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_INTERVAL_S = 0.1
"""NVML power sampling period."""


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
                warn_once(log, "energy: NVML has no device at PCI %s (%s)", bus_id, exc)
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
