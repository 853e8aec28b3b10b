"""The sparse-checkpoint arithmetic of bench/disk.py (the worker's, worker.checkpoints): every
m-th boundary and the last is ceil(N/m) states, within issue 14's N/m + 2 (boundary 0 is the
seeded initial state, never kept), and opening any segment needs at most m - 1 replays."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from disk import opening_replays  # noqa: E402

from worker.checkpoints import kept_boundaries, states_on_disk  # noqa: E402


@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 64, 1000])
@pytest.mark.parametrize("m", [1, 2, 3, 8, 10, 1000])
def test_kept_states_and_worst_regeneration(n, m):
    kept = kept_boundaries(n, m)
    assert 0 not in kept and kept[-1] == n
    assert len(kept) == math.ceil(n / m) <= n / m + 1
    assert states_on_disk(n, m) == len(kept) + 2
    openings = opening_replays(n, m)
    assert [i for i, _, _ in openings] == list(range(n))
    for i, base, last in openings:
        assert (base in kept or base == 0) and base <= i and last in (i, i + 1) and last - base <= m - 1
        assert i + 1 in kept or last == i + 1  # both boundaries of segment i are then at hand
    assert max(last - base for _, base, last in openings) == min(m, n) - 1  # the segment before a kept one
