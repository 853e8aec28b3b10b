"""Energy meters (docs/protocol.md §5): every selection branch with a fake NVML and a fake
powercap tree, plus this machine's real fallback."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from greenproof import energy
from greenproof.energy import (
    SOURCES,
    EnergyError,
    EnergyMeter,
    FakeMeter,
    NVMLNotSupported,
    NVMLPowerMeter,
    NVMLUnavailable,
    PynvmlAdapter,
    TDPEstimateMeter,
    base,
    carbon_milligrams,
    make_meter,
    mj_to_wh,
    rapl,
    warn_once,
)
from greenproof.energy.nvml import _GPU

FAST = 0.005  # sampling interval for tests that exercise the background thread


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (energy.ENV_TDP_W, energy.ENV_ENERGY_SOURCE, "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def no_powercap(tmp_path: Path) -> str:
    return str(tmp_path / "no-powercap")


def wait_until(predicate: Any, timeout_s: float = 10.0) -> None:
    """Poll a condition (not a timing assertion: fails only if it never happens)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.002)


# --------------------------------------------------------------------------- #
# Fake NVML behind the adapter seam                                           #
# --------------------------------------------------------------------------- #


@dataclass
class FakeGPU:
    energy_mj: int | None = 1_000_000  # None: counter not supported (pre-Volta)
    power_mw: int | None = 100_000  # None: power reading not supported
    limit_mw: int | None = 250_000
    energy_fails: bool = False


class FakeNVML:
    """An NVMLAdapter with scripted devices; counts init/shutdown to catch leaks."""

    def __init__(self, *gpus: FakeGPU, init_error: str | None = None) -> None:
        self.gpus = list(gpus)
        self.init_error = init_error
        self.inits = 0
        self.shutdowns = 0

    def init(self) -> None:
        if self.init_error:
            raise NVMLUnavailable(f"energy: NVML init failed ({self.init_error})")
        self.inits += 1

    def shutdown(self) -> None:
        self.shutdowns += 1

    def handle(self, cuda_index: int) -> int:
        if cuda_index >= len(self.gpus):
            raise EnergyError(f"energy: no GPU cuda:{cuda_index}")
        return cuda_index

    def device_info(self, handle: int) -> dict[str, Any]:
        return {"name": f"Fake GPU {handle}", "pci_bus_id": f"00000000:{handle + 1:02X}:00.0"}

    def total_energy_mj(self, handle: int) -> int:
        gpu = self.gpus[handle]
        if gpu.energy_mj is None:
            raise NVMLNotSupported("energy: nvmlDeviceGetTotalEnergyConsumption not supported")
        if gpu.energy_fails:
            raise EnergyError("energy: nvmlDeviceGetTotalEnergyConsumption failed (GPU is lost)")
        return gpu.energy_mj

    def power_mw(self, handle: int) -> int:
        gpu = self.gpus[handle]
        if gpu.power_mw is None:
            raise NVMLNotSupported("energy: nvmlDeviceGetPowerUsage not supported")
        return gpu.power_mw

    def power_limit_mw(self, handle: int) -> int:
        gpu = self.gpus[handle]
        if gpu.limit_mw is None:
            raise NVMLNotSupported("energy: nvmlDeviceGetEnforcedPowerLimit not supported")
        return gpu.limit_mw


def test_gpu_with_energy_counter_uses_nvml_energy_summed_over_gpus() -> None:
    nvml = FakeNVML(FakeGPU(energy_mj=5_000_000), FakeGPU(energy_mj=7_000_000))
    meter = make_meter(["cuda:0", "cuda:1"], nvml=nvml)
    assert meter.source == "nvml-energy"
    with meter:
        assert meter.read_mj() == 0
        nvml.gpus[0].energy_mj += 1_500
        nvml.gpus[1].energy_mj += 2_250
        assert meter.read_mj() == 3_750
        nvml.gpus[0].energy_mj += 10
        assert meter.read_mj() == 3_760
    info = meter.describe()
    assert info["source"] == "nvml-energy"
    assert info["counters"] == ["nvmlDeviceGetTotalEnergyConsumption"]
    assert [d["cuda_index"] for d in info["devices"]] == [0, 1]
    assert info["devices"][1]["name"] == "Fake GPU 1"
    assert info["fallbacks"] == []
    assert (nvml.inits, nvml.shutdowns) == (1, 1)
    assert meter.read_mj() == 3_760  # frozen after close
    nvml.gpus[0].energy_mj += 99
    assert meter.read_mj() == 3_760


def test_energy_counter_reset_and_failed_read_stay_monotone_and_lose_nothing() -> None:
    gpu = FakeGPU(energy_mj=900_000)
    meter = make_meter("cuda:0", nvml=FakeNVML(gpu))
    with meter:
        gpu.energy_mj += 400
        assert meter.read_mj() == 400
        gpu.energy_fails = True
        assert meter.read_mj() == 400  # failed read: last value, no exception
        gpu.energy_fails = False
        gpu.energy_mj += 100
        assert meter.read_mj() == 500  # the cumulative counter catches up
        gpu.energy_mj = 30  # driver reload: counter restarted from 0
        assert meter.read_mj() == 530
        info = meter.describe()
    assert info["counter_resets"] == 1
    assert info["failed_reads"] == 1


def test_counter_not_supported_falls_back_to_sampled_power() -> None:
    nvml = FakeNVML(FakeGPU(energy_mj=None, power_mw=200_000))
    meter = make_meter("cuda:0", nvml=nvml, sample_interval_s=FAST)
    assert meter.source == "nvml-power"
    assert isinstance(meter, NVMLPowerMeter)
    with meter:
        first = meter.read_mj()
        wait_until(lambda: meter.describe()["samples"] >= 3)
        second = meter.read_mj()
        assert meter.sampler_alive
    assert second > first >= 0
    assert not meter.sampler_alive  # the sampler thread stopped on close
    info = meter.describe()
    assert info["counters"] == ["nvmlDeviceGetPowerUsage"]
    assert info["method"] == "trapezoid" and info["interval_s"] == FAST
    assert any("TotalEnergyConsumption not supported" in r for r in info["fallbacks"])
    assert (nvml.inits, nvml.shutdowns) == (1, 1)


def test_power_integration_is_trapezoidal() -> None:
    gpu_a, gpu_b = FakeGPU(power_mw=100_000), FakeGPU(power_mw=50_000)
    nvml = FakeNVML(gpu_a, gpu_b)
    clock = SimpleNamespace(t=10.0)
    gpus = [_GPU(0, 0), _GPU(1, 1)]
    # A long interval: the background thread never samples; only read_mj() does.
    meter = NVMLPowerMeter(nvml, gpus, interval_s=60.0, clock=lambda: clock.t)
    with meter:
        clock.t = 12.0
        gpu_a.power_mw = 200_000
        # 2 s from 150 W to 250 W total: (150 + 250) / 2 * 2 = 400 J
        assert meter.read_mj() == 400_000
        clock.t = 12.5
        # 0.5 s at a constant 250 W: +125 J
        assert meter.read_mj() == 525_000
        gpu_a.power_mw = gpu_b.power_mw = 0
        clock.t = 13.5
        # 1 s from 250 W to 0 W: +125 J
        assert meter.read_mj() == 650_000


def test_concurrent_readers_each_see_a_monotone_sequence() -> None:
    meter = make_meter(
        "cuda:0", nvml=FakeNVML(FakeGPU(energy_mj=None, power_mw=300_000)), sample_interval_s=FAST
    )
    seen: list[list[int]] = [[] for _ in range(4)]

    def reader(out: list[int]) -> None:
        for _ in range(200):
            out.append(meter.read_mj())

    with meter:
        threads = [threading.Thread(target=reader, args=(out,)) for out in seen]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for out in seen:
        assert out == sorted(out)


def test_no_energy_and_no_power_uses_tdp_from_the_nvml_power_limit() -> None:
    nvml = FakeNVML(FakeGPU(energy_mj=None, power_mw=None, limit_mw=320_000))
    meter = make_meter("cuda", nvml=nvml, powercap_root="/nonexistent")
    assert meter.source == "tdp-estimate"
    info = meter.describe()
    assert info["tdp_w"] == 320.0 and info["tdp_origin"] == "nvml-power-limit"
    assert info["utilisation"] == "wall" and info["devices"] == ["cuda:0"]
    assert any("RAPL skipped" in r for r in info["fallbacks"])
    assert (nvml.inits, nvml.shutdowns) == (1, 1)  # NVML released, not leaked


def test_no_driver_falls_back_with_a_recorded_reason() -> None:
    nvml = FakeNVML(FakeGPU(), init_error="NVMLError_DriverNotLoaded: Driver Not Loaded")
    meter = make_meter("cuda:0", nvml=nvml, tdp_w=250)
    assert meter.source == "tdp-estimate"
    info = meter.describe()
    assert info["tdp_w"] == 250.0 and info["tdp_origin"] == "argument"
    assert "Driver Not Loaded" in info["fallbacks"][0]
    with pytest.raises(EnergyError, match=r"'nvml-energy' was forced but is unavailable.*Driver"):
        make_meter("cuda:0", nvml=nvml, prefer="nvml-energy")


def test_forcing_power_sampling_skips_a_working_counter() -> None:
    meter = make_meter("cuda:0", nvml=FakeNVML(FakeGPU()), prefer="nvml-power")
    assert meter.source == "nvml-power"
    meter.close()


def test_missing_gpu_index_falls_back_and_releases_nvml() -> None:
    nvml = FakeNVML(FakeGPU())
    meter = make_meter("cuda:3", nvml=nvml)
    assert meter.source == "tdp-estimate"
    assert "no GPU cuda:3" in meter.describe()["fallbacks"][0]
    assert nvml.shutdowns == nvml.inits == 1


def test_nvml_sources_need_a_cuda_device() -> None:
    with pytest.raises(EnergyError, match="needs a CUDA device"):
        make_meter("cpu", prefer="nvml-energy", nvml=FakeNVML(FakeGPU()))


def test_real_nvml_on_this_machine_never_fails_the_program() -> None:
    # Whatever this machine has (a GPU, no driver, no library): a meter, never an exception.
    meter = make_meter("cuda:0", powercap_root="/nonexistent")
    try:
        assert meter.source in ("nvml-energy", "nvml-power", "tdp-estimate")
        if meter.source == "tdp-estimate":
            assert meter.describe()["fallbacks"]  # the reason is recorded
    finally:
        meter.close()


def test_missing_pynvml_module_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise
    meter = make_meter("cuda:0", powercap_root="/nonexistent")
    assert meter.source == "tdp-estimate"
    assert "install nvidia-ml-py" in meter.describe()["fallbacks"][0]


# --------------------------------------------------------------------------- #
# PynvmlAdapter over a fake pynvml module (real pynvml error classes)         #
# --------------------------------------------------------------------------- #


class FakePynvml:
    """The subset of the pynvml module the adapter calls."""

    def __init__(self, *, init_code: int | None = None, energy_code: int | None = None) -> None:
        self.init_code = init_code
        self.energy_code = energy_code
        self.calls: list[tuple[str, Any]] = []
        self.shut = False

    def nvmlInit(self) -> None:
        if self.init_code is not None:
            raise pynvml.NVMLError(self.init_code)

    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str) -> str:
        self.calls.append(("pci", bus_id))
        return f"pci:{bus_id}"

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        self.calls.append(("index", index))
        return f"idx:{index}"

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        self.calls.append(("uuid", uuid))
        return f"uuid:{uuid}"

    def nvmlDeviceGetName(self, handle: str) -> str:
        return "NVIDIA Fake"

    def nvmlDeviceGetUUID(self, handle: str) -> str:
        return "GPU-0000"

    def nvmlDeviceGetPciInfo(self, handle: str) -> SimpleNamespace:
        return SimpleNamespace(busId=b"00000000:3B:00.0")

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        if self.energy_code is not None:
            raise pynvml.NVMLError(self.energy_code)
        return 123_456

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        return 75_000

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: str) -> int:
        return 300_000


def test_adapter_maps_cuda_index_by_pci_bus_id() -> None:
    fake = FakePynvml()
    adapter = PynvmlAdapter(fake, pci_bus_id_of=lambda i: "00000000:3B:00.0")
    adapter.init()
    handle = adapter.handle(0)
    assert handle == "pci:00000000:3B:00.0"
    assert adapter.device_info(handle) == {
        "name": "NVIDIA Fake",
        "uuid": "GPU-0000",
        "pci_bus_id": "00000000:3B:00.0",
    }
    assert adapter.total_energy_mj(handle) == 123_456
    adapter.shutdown()
    assert fake.shut


def test_adapter_respects_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakePynvml()
    adapter = PynvmlAdapter(fake, pci_bus_id_of=lambda i: None)
    adapter.init()
    assert adapter.handle(0) == "idx:0"  # unset: torch index == NVML index
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, GPU-8f3a")
    assert adapter.handle(0) == "idx:2"
    assert adapter.handle(1) == "uuid:GPU-8f3a"
    with pytest.raises(EnergyError, match="cuda:2 is not in CUDA_VISIBLE_DEVICES"):
        adapter.handle(2)


def test_adapter_translates_nvml_errors() -> None:
    adapter = PynvmlAdapter(FakePynvml(init_code=pynvml.NVML_ERROR_DRIVER_NOT_LOADED))
    with pytest.raises(NVMLUnavailable, match="NVMLError_DriverNotLoaded"):
        adapter.init()
    adapter = PynvmlAdapter(
        FakePynvml(energy_code=pynvml.NVML_ERROR_NOT_SUPPORTED), pci_bus_id_of=lambda i: None
    )
    adapter.init()
    with pytest.raises(NVMLNotSupported):
        adapter.total_energy_mj(adapter.handle(0))
    adapter = PynvmlAdapter(
        FakePynvml(energy_code=pynvml.NVML_ERROR_GPU_IS_LOST), pci_bus_id_of=lambda i: None
    )
    adapter.init()
    with pytest.raises(EnergyError, match="GPU is lost") as err:
        adapter.total_energy_mj(adapter.handle(0))
    assert not isinstance(err.value, NVMLNotSupported)


def test_pynvml_not_supported_counter_selects_power_sampling() -> None:
    fake = FakePynvml(energy_code=pynvml.NVML_ERROR_NOT_SUPPORTED)
    adapter = PynvmlAdapter(fake, pci_bus_id_of=lambda i: None)
    meter = make_meter("cuda:0", nvml=adapter, sample_interval_s=FAST)
    assert meter.source == "nvml-power"
    with meter:
        wait_until(lambda: meter.describe()["samples"] >= 2)
        assert meter.read_mj() > 0
    assert fake.shut


# --------------------------------------------------------------------------- #
# RAPL over a fake powercap tree                                              #
# --------------------------------------------------------------------------- #


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def zone(root: Path, dirname: str, name: str, energy_uj: int, max_uj: int) -> Path:
    z = root / dirname
    z.mkdir(parents=True)
    (z / "name").write_text(name + "\n")
    (z / "energy_uj").write_text(f"{energy_uj}\n")
    (z / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return z


@pytest.fixture
def powercap(tmp_path: Path) -> Path:
    """Two packages plus the zones that must not be counted (subzones, psys, mmio)."""
    root = tmp_path / "powercap"
    (root / "intel-rapl").mkdir(parents=True)  # the control type itself
    zone(root, "intel-rapl:0", "package-0", 1_000_000, 262_143_328_850)
    zone(root, "intel-rapl:0:0", "core", 500_000, 262_143_328_850)
    zone(root, "intel-rapl:0:1", "dram", 100_000, 65_712_999_613)
    zone(root, "intel-rapl:1", "package-1", 2_000_000, 262_143_328_850)
    zone(root, "intel-rapl:2", "psys", 9_000_000, 262_143_328_850)
    zone(root, "intel-rapl-mmio:0", "package-0", 1_000_000, 262_143_328_850)
    return root


def bump(root: Path, dirname: str, delta_uj: int) -> None:
    f = root / dirname / "energy_uj"
    write_atomic(f, f"{int(f.read_text()) + delta_uj}\n")


def test_rapl_counts_package_domains_only(powercap: Path) -> None:
    meter = make_meter("cpu", powercap_root=str(powercap), rapl_poll_s=60.0)
    assert meter.source == "rapl"
    info = meter.describe()
    assert info["devices"] == ["package-0", "package-1"]
    assert info["counters"] == [
        str(powercap / "intel-rapl:0" / "energy_uj"),
        str(powercap / "intel-rapl:1" / "energy_uj"),
    ]
    with meter:
        for other in ("intel-rapl:0:0", "intel-rapl:0:1", "intel-rapl:2", "intel-rapl-mmio:0"):
            bump(powercap, other, 7_000_000)  # must not be counted
        bump(powercap, "intel-rapl:0", 3_000_000)
        bump(powercap, "intel-rapl:1", 1_500_999)
        assert meter.read_mj() == 4_500  # 4 500 999 uJ, floored to mJ
    assert meter.describe()["wraps"] == 0


def test_rapl_wraps_around_at_max_energy_range(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", 9_990_000, 10_000_000)
    meter = make_meter("cpu", powercap_root=str(root), rapl_poll_s=60.0)
    with meter:
        write_atomic(root / "intel-rapl:0" / "energy_uj", "5000\n")
        # (10 000 000 - 9 990 000) + 5 000 uJ = 15 mJ
        assert meter.read_mj() == 15
        write_atomic(root / "intel-rapl:0" / "energy_uj", "2005000\n")
        assert meter.read_mj() == 2_015
    assert meter.describe()["wraps"] == 1


def test_rapl_background_poll_sees_a_wrap_between_reads(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", 9_990_000, 10_000_000)
    with make_meter("cpu", powercap_root=str(root), rapl_poll_s=FAST) as meter:
        polls = meter.describe()["samples"]
        write_atomic(root / "intel-rapl:0" / "energy_uj", "5000\n")  # wrapped
        wait_until(lambda: meter.describe()["samples"] >= polls + 2)
        write_atomic(root / "intel-rapl:0" / "energy_uj", "9000000\n")
        # Without the poller the read would see 9 990 000 -> 9 000 000 as one wrap
        # (9 010 mJ) instead of a wrap then 8 995 000 uJ of work.
        assert meter.read_mj() == 15 + 8_995
        assert meter.sampler_alive
    assert not meter.sampler_alive


def test_unreadable_rapl_counter_falls_back_to_tdp(
    powercap: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = powercap / "intel-rapl:1" / "energy_uj"
    locked.chmod(0)
    real_read = rapl._read_int

    def read_int(path: Path) -> int:
        # root ignores file modes, so refuse like a non-root user would be refused
        if path == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(rapl, "_read_int", read_int)
    meter = make_meter("cpu", powercap_root=str(powercap))
    assert meter.source == "tdp-estimate"
    reason = meter.describe()["fallbacks"][0]
    assert "intel-rapl:1/energy_uj not readable" in reason and "chmod" in reason
    with pytest.raises(EnergyError, match="'rapl' was forced but is unavailable"):
        make_meter("cpu", powercap_root=str(powercap), prefer="rapl")


def test_no_package_domain_is_not_rapl(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "psys", 1, 10)
    meter = make_meter("cpu", powercap_root=str(root))
    assert meter.source == "tdp-estimate"
    assert "no RAPL package domain" in meter.describe()["fallbacks"][0]


# --------------------------------------------------------------------------- #
# TDP estimate, none, lifecycle                                               #
# --------------------------------------------------------------------------- #


def test_tdp_estimate_from_process_cpu_time_and_from_wall_time() -> None:
    wall, cpu = SimpleNamespace(t=100.0), SimpleNamespace(t=7.0)
    meter = TDPEstimateMeter(100.0, cpus=4, wall_clock=lambda: wall.t, cpu_clock=lambda: cpu.t)
    with meter:
        wall.t, cpu.t = 101.0, 9.0  # 2 CPU-s over 4 CPUs in 1 s: utilisation 0.5
        assert meter.read_mj() == 50_000
        wall.t, cpu.t = 102.0, 30.0  # impossible over-count is capped at utilisation 1
        assert meter.read_mj() == 200_000
    gpu = TDPEstimateMeter(300.0, utilisation="wall", wall_clock=lambda: wall.t, devices=["cuda:0"])
    with gpu:
        wall.t += 0.5
        assert gpu.read_mj() == 150_000


def test_declared_tdp_from_env(monkeypatch: pytest.MonkeyPatch, no_powercap: str) -> None:
    monkeypatch.setenv(energy.ENV_TDP_W, "65")
    info = make_meter("cpu", powercap_root=no_powercap).describe()
    assert info["source"] == "tdp-estimate"
    assert (info["tdp_w"], info["tdp_origin"]) == (65.0, "env:GREENPROOF_TDP_W")
    assert info["utilisation"] == "process-cpu-time"
    assert make_meter("cpu", tdp_w=95, powercap_root=no_powercap).describe()["tdp_w"] == 95.0
    monkeypatch.setenv(energy.ENV_TDP_W, "lots")
    with pytest.raises(EnergyError, match="GREENPROOF_TDP_W='lots' is not a number"):
        make_meter("cpu", powercap_root=no_powercap)


def test_default_tdp_is_per_logical_cpu(no_powercap: str) -> None:
    info = make_meter("cpu", powercap_root=no_powercap).describe()
    assert info["tdp_origin"] == "default-per-cpu"
    assert info["tdp_w"] == energy.DEFAULT_CPU_W_PER_LOGICAL_CPU * info["cpus"]


def test_this_machine_cpu_meter_is_monotone_and_recorded() -> None:
    meter = make_meter("cpu")  # the real /sys/class/powercap, whatever it holds
    assert meter.source in ("rapl", "tdp-estimate")
    readings = []
    with meter:
        for _ in range(5):
            sum(i * i for i in range(100_000))  # some real CPU work
            readings.append(meter.read_mj())
    assert readings == sorted(readings)
    assert readings[-1] > 0
    info = meter.describe()
    assert info["source"] == meter.source and info["unit"] == "mJ"
    assert isinstance(meter, EnergyMeter)


def test_prefer_none_measures_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(energy.ENV_ENERGY_SOURCE, "none")
    with make_meter("cpu") as meter:
        sum(range(100_000))
        assert meter.read_mj() == 0
    assert meter.describe()["source"] == "none"
    with pytest.raises(EnergyError, match="unknown energy source 'gpu'"):
        make_meter("cpu", prefer="gpu")


def test_fake_meter_counts_readings_not_time() -> None:
    meter = FakeMeter(250)
    assert isinstance(meter, EnergyMeter) and meter.source == "fake"
    with pytest.raises(EnergyError, match="before start"):
        meter.read_mj()
    with meter:
        time.sleep(0.01)  # neither wall time nor CPU time moves it
        sum(i * i for i in range(100_000))
        assert [meter.read_mj() for _ in range(3)] == [250, 500, 750]
    assert meter.read_mj() == 750  # close() freezes the value without counting a reading
    info = meter.describe()
    assert (info["source"], info["mj_per_read"], info["reads"]) == ("fake", 250, 3)
    with FakeMeter() as default:
        assert default.read_mj() == energy.DEFAULT_FAKE_MJ_PER_READ
    with pytest.raises(ValueError, match="mj_per_read must be >= 0"):
        FakeMeter(-1)
    with pytest.raises(TypeError, match="mj_per_read must be an int"):
        FakeMeter(1.5)  # type: ignore[arg-type]


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget what this process was already warned about."""
    monkeypatch.setattr(base, "_warned", set())


def test_fallback_warnings_are_logged_once_per_process(
    fresh_warnings: None, no_powercap: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="greenproof.energy")
    meters = [make_meter("cpu", powercap_root=no_powercap) for _ in range(3)]  # one per segment
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("no RAPL" in w for w in warnings) == 1
    assert sum("using a TDP estimate" in w for w in warnings) == 1
    repeats = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert sum("using a TDP estimate" in w for w in repeats) == 2  # still there at debug
    for meter in meters:  # every meter still records why it fell back
        assert "no RAPL" in meter.describe()["fallbacks"][0]


def test_warn_once_keys_on_the_formatted_message(
    fresh_warnings: None, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("greenproof.energy.test")
    assert warn_once(logger, "energy: no device at %s", "PCI 01")
    assert not warn_once(logger, "energy: no device at %s", "PCI 01")
    assert warn_once(logger, "energy: no device at %s", "PCI 02")
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "energy: no device at PCI 01",
        "energy: no device at PCI 02",
    ]


def test_lifecycle_errors_are_explicit(no_powercap: str) -> None:
    meter = make_meter("cpu", powercap_root=no_powercap)
    with pytest.raises(EnergyError, match="before start"):
        meter.read_mj()
    meter.start()
    with pytest.raises(EnergyError, match="already running"):
        meter.start()
    meter.close()
    meter.close()  # idempotent
    with pytest.raises(EnergyError, match="already closed"):
        meter.start()


def test_units_and_carbon_follow_the_contract_formula() -> None:
    assert SOURCES == ("nvml-energy", "nvml-power", "rapl", "tdp-estimate", "none", "fake")
    assert mj_to_wh(3_600_000) == 1.0
    assert carbon_milligrams(3_600_000_000, 400) == 400_000  # 1 kWh at 400 g/kWh
    assert carbon_milligrams(3_600_000, 400) == 400  # 1 Wh: 400 mg
    assert carbon_milligrams(3_599_999, 1) == 0  # integer floor, as on chain
    assert carbon_milligrams(10**30, 475) == 10**30 * 475 // 3_600_000  # no float rounding
    with pytest.raises(ValueError, match="energy_mj must be >= 0"):
        carbon_milligrams(-1, 400)
    with pytest.raises(TypeError, match="g_per_kwh must be an int"):
        carbon_milligrams(1, 400.0)  # type: ignore[arg-type]


def test_fake_source_is_forced_by_the_environment_for_daemons_under_test(monkeypatch) -> None:
    """Separate processes (the worker, the verifier) take the deterministic meter from the env."""
    monkeypatch.setenv(energy.ENV_ENERGY_SOURCE, "fake")
    meter = energy.make_meter("cpu")
    assert meter.source == "fake"
    with meter:
        assert meter.read_mj() == energy.DEFAULT_FAKE_MJ_PER_READ
