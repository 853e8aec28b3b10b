"""Source selection: the best meter for a device, and why better ones were skipped.

docs/protocol.md §5. :func:`make_meter` walks the sources best first (NVML
energy counter, NVML power sampling, RAPL, TDP estimate); each step is one small
function that returns a meter or records why it could not.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from greenproof.energy.base import SOURCES, EnergyError, EnergyMeter, NVMLUnavailable, warn_once
from greenproof.energy.fake import FakeMeter, NullMeter
from greenproof.energy.nvml import (
    _GPU,
    DEFAULT_SAMPLE_INTERVAL_S,
    NVMLAdapter,
    NVMLEnergyMeter,
    NVMLPowerMeter,
    PynvmlAdapter,
)
from greenproof.energy.rapl import DEFAULT_RAPL_POLL_S, RaplMeter, find_rapl_domains
from greenproof.energy.tdp import (
    DEFAULT_CPU_W_PER_LOGICAL_CPU,
    DEFAULT_GPU_TDP_W,
    ENV_TDP_W,
    TDPEstimateMeter,
    _usable_cpus,
)

log = logging.getLogger(__name__)

ENV_ENERGY_SOURCE = "GREENPROOF_ENERGY_SOURCE"
"""Forces a source like ``prefer=`` does, when ``prefer`` is not given."""


# --------------------------------------------------------------------------- #
# Inputs                                                                      #
# --------------------------------------------------------------------------- #


def _torch_current_cuda() -> int | None:
    """torch's current CUDA device, or None without torch or without CUDA."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.current_device()
    except ImportError:
        pass
    return None


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
        current = _torch_current_cuda()
        return ("cuda", [current]) if current is not None else ("cpu", [])
    text = str(device).strip().lower()
    kind, _, index = text.partition(":")
    if kind != "cuda":
        return "cpu", []
    if index:
        if not index.isdigit():
            raise EnergyError(f"energy: bad CUDA device {device!r} (expected cuda or cuda:N)")
        return "cuda", [int(index)]
    current = _torch_current_cuda()
    return "cuda", [current if current is not None else 0]


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


def _preferred_source(prefer: str | None) -> str | None:
    """``prefer``, else ``GREENPROOF_ENERGY_SOURCE``, checked against :data:`SOURCES`."""
    if prefer is None:
        prefer = os.environ.get(ENV_ENERGY_SOURCE) or None
    if prefer is not None and prefer not in SOURCES:
        raise EnergyError(
            f"energy: unknown energy source {prefer!r}; choose one of {', '.join(SOURCES)}"
        )
    return prefer


@dataclass
class _Selection:
    """What :func:`make_meter` knows while it walks the sources, and what it skipped."""

    kind: str  # "cuda" or "cpu"
    indices: list[int]
    prefer: str | None
    declared_w: float | None
    declared_origin: str
    gpu_limit_w: float | None = None  # the GPUs' NVML power limit, for the TDP estimate
    fallbacks: list[str] = field(default_factory=list)

    def wants(self, *sources: str | None) -> bool:
        """Whether the forced source (None: nothing forced) is one of ``sources``."""
        return self.prefer in sources

    def skipped(self, reason: str) -> None:
        """Record why a source was not used (and say it once per process)."""
        self.fallbacks.append(reason)
        warn_once(log, "%s", reason)


# --------------------------------------------------------------------------- #
# One function per source, best first                                         #
# --------------------------------------------------------------------------- #


def _open_gpus(adapter: NVMLAdapter, indices: list[int]) -> list[_GPU]:
    gpus: list[_GPU] = []
    for i in indices:
        handle = adapter.handle(i)
        gpus.append(_GPU(i, handle, adapter.device_info(handle)))
    return gpus


def _energy_counter_meter(
    sel: _Selection, adapter: NVMLAdapter, gpus: list[_GPU]
) -> EnergyMeter | None:
    """``nvml-energy`` if every GPU has the total-energy counter."""
    try:
        for g in gpus:
            adapter.total_energy_mj(g.handle)
        return NVMLEnergyMeter(adapter, gpus, fallbacks=sel.fallbacks)
    except EnergyError as exc:
        sel.skipped(str(exc))
        return None


def _power_sampling_meter(
    sel: _Selection, adapter: NVMLAdapter, gpus: list[_GPU], interval_s: float
) -> EnergyMeter | None:
    """``nvml-power`` if every GPU reports its power draw."""
    try:
        for g in gpus:
            adapter.power_mw(g.handle)
        return NVMLPowerMeter(adapter, gpus, interval_s=interval_s, fallbacks=sel.fallbacks)
    except EnergyError as exc:
        sel.skipped(str(exc))
        return None


def _gpu_power_limit_w(adapter: NVMLAdapter, gpus: list[_GPU]) -> float | None:
    """The GPUs' summed enforced power limit in W, the TDP estimate's best default."""
    try:
        return sum(adapter.power_limit_mw(g.handle) for g in gpus) / 1000
    except EnergyError as exc:
        log.info("energy: no NVML power limit for the TDP estimate: %s", exc)
        return None


def _nvml_meter(
    sel: _Selection, nvml: NVMLAdapter | None, sample_interval_s: float
) -> EnergyMeter | None:
    """An NVML meter (counter, else power sampling) or None; keeps NVML's power limit in
    ``sel.gpu_limit_w`` for the TDP estimate. NVML is shut down unless a meter owns it."""
    adapter: NVMLAdapter = nvml if nvml is not None else PynvmlAdapter()
    try:
        adapter.init()
    except NVMLUnavailable as exc:
        sel.skipped(str(exc))
        return None
    meter: EnergyMeter | None = None
    try:
        gpus = _open_gpus(adapter, sel.indices)
        if sel.wants(None, "nvml-energy"):
            meter = _energy_counter_meter(sel, adapter, gpus)
        if meter is None and sel.wants(None, "nvml-power"):
            meter = _power_sampling_meter(sel, adapter, gpus, sample_interval_s)
        if meter is None and sel.declared_w is None:
            sel.gpu_limit_w = _gpu_power_limit_w(adapter, gpus)
    except EnergyError as exc:
        sel.skipped(str(exc))
    finally:
        if meter is None:
            adapter.shutdown()
    return meter


def _rapl_meter(sel: _Selection, powercap_root: str, rapl_poll_s: float) -> EnergyMeter | None:
    """``rapl`` for a CPU run (or when forced); on a GPU run RAPL is skipped on purpose."""
    if sel.wants("rapl") or (sel.wants(None) and sel.kind == "cpu"):
        try:
            domains = find_rapl_domains(powercap_root)
            return RaplMeter(domains, interval_s=rapl_poll_s, fallbacks=sel.fallbacks)
        except EnergyError as exc:
            sel.skipped(str(exc))
    elif sel.wants(None) and sel.kind == "cuda":
        sel.fallbacks.append("energy: RAPL skipped: it measures CPUs, not the GPU this run uses")
    return None


def _tdp_meter(sel: _Selection) -> TDPEstimateMeter:
    """``tdp-estimate``: declared TDP, else NVML's power limit, else a per-device default."""
    if sel.kind == "cuda":
        if sel.declared_w is not None:
            watts, origin = sel.declared_w, sel.declared_origin
        elif sel.gpu_limit_w:
            watts, origin = sel.gpu_limit_w, "nvml-power-limit"
        else:
            watts, origin = DEFAULT_GPU_TDP_W * len(sel.indices), "default-per-gpu"
        meter = TDPEstimateMeter(
            watts,
            utilisation="wall",
            tdp_origin=origin,
            devices=[f"cuda:{i}" for i in sel.indices],
            fallbacks=sel.fallbacks,
        )
    else:
        cpus = _usable_cpus()
        if sel.declared_w is not None:
            watts, origin = sel.declared_w, sel.declared_origin
        else:
            watts, origin = DEFAULT_CPU_W_PER_LOGICAL_CPU * cpus, "default-per-cpu"
        meter = TDPEstimateMeter(
            watts,
            utilisation="process-cpu-time",
            cpus=cpus,
            tdp_origin=origin,
            fallbacks=sel.fallbacks,
        )
    warn_once(
        log,
        "energy: using a TDP estimate (%.1f W from %s, utilisation %s); "
        "declare %s for a better one",
        meter.tdp_w,
        origin,
        meter.utilisation,
        ENV_TDP_W,
    )
    return meter


# --------------------------------------------------------------------------- #
# Selection                                                                   #
# --------------------------------------------------------------------------- #


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
    is logged (once per process) and kept in ``describe()["fallbacks"]``.
    """
    prefer = _preferred_source(prefer)
    for what, value in (("sample_interval_s", sample_interval_s), ("rapl_poll_s", rapl_poll_s)):
        if not value > 0:
            raise EnergyError(f"energy: {what} must be > 0 s, got {value}")
    kind, indices = _resolve_device(device)
    declared_w, declared_origin = _declared_tdp(tdp_w)
    sel = _Selection(kind, indices, prefer, declared_w, declared_origin)

    if sel.wants("none"):
        return NullMeter()
    if sel.wants("fake"):  # tests of separate processes: energy by readings, not by time
        return FakeMeter()
    if sel.wants("nvml-energy", "nvml-power") and kind != "cuda":
        raise EnergyError(f"energy: {prefer} needs a CUDA device, got {device!r}")

    meter: EnergyMeter | None = None
    if kind == "cuda" and sel.wants(None, "nvml-energy", "nvml-power", "tdp-estimate"):
        meter = _nvml_meter(sel, nvml, sample_interval_s)
    if meter is None:
        meter = _rapl_meter(sel, powercap_root, rapl_poll_s)
    if meter is None and sel.wants(None, "tdp-estimate"):
        meter = _tdp_meter(sel)
    if meter is None:
        raise EnergyError(
            f"energy: source {prefer!r} was forced but is unavailable: "
            + ("; ".join(sel.fallbacks) or "no reason recorded")
        )
    return meter
