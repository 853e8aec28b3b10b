"""RAPL source (``rapl``): the CPU packages' energy counters under ``/sys/class/powercap``.

docs/protocol.md §5. Only top-level ``intel-rapl:N`` zones named ``package-*``
are summed (subzones and ``psys``/``mmio`` zones overlap them); wrap-around is
handled with ``max_energy_range_uj`` and a background poll.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from greenproof.energy.base import EnergyError, _PolledMeter

log = logging.getLogger(__name__)

DEFAULT_RAPL_POLL_S = 5.0
"""RAPL background poll period: far below the counter's wrap time (minutes at full load)."""

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
