"""TDP estimate (``tdp-estimate``): declared TDP x utilisation x wall time.

docs/protocol.md §5 and docs/energy.md. The last resort when no counter can be
read: a CPU run is charged ``tdp_w x cpu_seconds / cpus``, a GPU run without
NVML ``tdp_w x wall time``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from greenproof.energy.base import _Meter

ENV_TDP_W = "GREENPROOF_TDP_W"
"""Declared TDP in watts for the ``tdp-estimate`` source (whole set of devices metered)."""

DEFAULT_CPU_W_PER_LOGICAL_CPU = 5.0
"""Default CPU TDP per logical CPU (e.g. 16 threads -> 80 W; 128 threads -> 640 W)."""
DEFAULT_GPU_TDP_W = 300.0
"""Default per-GPU TDP when NVML cannot even tell the power limit."""


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
