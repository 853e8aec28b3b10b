"""Meters that read no hardware: ``none`` (always 0) and a deterministic fake for tests.

:class:`NullMeter` is the ``none`` source, used only when forced.
:class:`FakeMeter` stands in for a real meter wherever a test or a simulation
asserts on energy (the verifier's replay measurement, ``simulate_run``): its
reading depends only on how many times it was read, never on a clock or on the
machine's load.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from greenproof.energy.base import _Meter

DEFAULT_FAKE_MJ_PER_READ = 1_000
"""What one :class:`FakeMeter` reading (one segment boundary) costs by default: 1 J."""


class NullMeter(_Meter):
    """Measures nothing (always 0 mJ); only when forced with ``prefer="none"``."""

    source = "none"


class FakeMeter(_Meter):
    """Deterministic energy: every ``read_mj()`` while running adds ``mj_per_read`` mJ.

    Every caller reads its meter once per segment boundary (``train_run``,
    ``simulate_run``, the verifier's replay of one segment), so a reading is a
    unit of work: a run's boundary ``k`` is at ``k * mj_per_read`` and one
    replayed segment measures exactly ``mj_per_read``, on any machine under any
    load. ``close()`` freezes the value without counting another unit. Not one
    of :data:`~greenproof.energy.SOURCES`: it is injected (``AuditConfig.meter_factory``,
    ``simulate_run(meter_factory=...)``, ``train_run(meter=...)``), never selected.
    """

    source = "fake"

    def __init__(
        self, mj_per_read: int = DEFAULT_FAKE_MJ_PER_READ, *, fallbacks: Sequence[str] = ()
    ) -> None:
        super().__init__(fallbacks=fallbacks)
        if isinstance(mj_per_read, bool) or not isinstance(mj_per_read, int):
            raise TypeError(f"energy: mj_per_read must be an int, got {type(mj_per_read).__name__}")
        if mj_per_read < 0:
            raise ValueError(f"energy: mj_per_read must be >= 0, got {mj_per_read}")
        self.mj_per_read = mj_per_read
        self.reads = 0

    def _begin(self) -> None:
        self.reads = 0

    def _measure_mj(self) -> int:
        self.reads += 1
        return self.reads * self.mj_per_read

    def _final_mj(self) -> int:
        return self.reads * self.mj_per_read

    def _details(self) -> dict[str, Any]:
        return {"mj_per_read": self.mj_per_read, "reads": self.reads}
