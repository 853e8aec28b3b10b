"""Energy meters: NVML counter -> NVML power sampling -> RAPL -> TDP estimate.

docs/protocol.md §5. The worker measures the cumulative energy of a run at every
segment boundary with one :class:`EnergyMeter`; the source used is recorded in
the run's metadata (``meter.source`` and ``meter.describe()``).

Selection (:func:`make_meter`, in :mod:`greenproof.energy.selection`):

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
``nvidia-ml-py``: the next source is used and the reason is logged (once per
process, :func:`warn_once`) and recorded. :class:`FakeMeter` is the deterministic
meter tests and simulations inject instead of a real one.

Units: every meter reports integer millijoules (mJ), cumulative since
``start()``, monotone non-decreasing.

Modules: :mod:`~greenproof.energy.base` (interface, errors, units, lifecycle),
:mod:`~greenproof.energy.nvml`, :mod:`~greenproof.energy.rapl`,
:mod:`~greenproof.energy.tdp`, :mod:`~greenproof.energy.fake` (``none`` and the
fake), :mod:`~greenproof.energy.selection` (:func:`make_meter`).
"""

from greenproof.energy.base import (
    MJ_PER_KWH,
    MJ_PER_WH,
    SOURCES,
    EnergyError,
    EnergyMeter,
    NVMLNotSupported,
    NVMLUnavailable,
    carbon_milligrams,
    mj_to_wh,
    warn_once,
)
from greenproof.energy.fake import DEFAULT_FAKE_MJ_PER_READ, FakeMeter, NullMeter
from greenproof.energy.nvml import (
    DEFAULT_SAMPLE_INTERVAL_S,
    NVMLAdapter,
    NVMLEnergyMeter,
    NVMLPowerMeter,
    PynvmlAdapter,
)
from greenproof.energy.rapl import DEFAULT_RAPL_POLL_S, RaplDomain, RaplMeter, find_rapl_domains
from greenproof.energy.selection import ENV_ENERGY_SOURCE, make_meter
from greenproof.energy.tdp import (
    DEFAULT_CPU_W_PER_LOGICAL_CPU,
    DEFAULT_GPU_TDP_W,
    ENV_TDP_W,
    TDPEstimateMeter,
)

__all__ = [
    "DEFAULT_CPU_W_PER_LOGICAL_CPU",
    "DEFAULT_FAKE_MJ_PER_READ",
    "DEFAULT_GPU_TDP_W",
    "DEFAULT_RAPL_POLL_S",
    "DEFAULT_SAMPLE_INTERVAL_S",
    "ENV_ENERGY_SOURCE",
    "ENV_TDP_W",
    "MJ_PER_KWH",
    "MJ_PER_WH",
    "SOURCES",
    "EnergyError",
    "EnergyMeter",
    "FakeMeter",
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
    "carbon_milligrams",
    "find_rapl_domains",
    "make_meter",
    "mj_to_wh",
    "warn_once",
]
