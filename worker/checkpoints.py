"""Sparse checkpoints: keep every m-th boundary, regenerate the others by replay.

A job of ``N`` segments has ``N + 1`` boundary states; at real model sizes a provider
cannot keep them all. With a per-job disk budget (``greenproof worker run
--disk-budget-gb``) the worker keeps only boundaries ``k`` with ``k % m == 0`` (``k >= 1``)
and the last one, ``N``: at most ``ceil(N/m)`` states, plus two of headroom (a write in
progress leaves a temporary file until its rename), so ``(ceil(N/m) + 2) * state_bytes``
bounds the job's checkpoint disk while it trains. Each audited segment opened later adds
its (at most two) regenerated boundaries. Boundary 0 is never
needed on disk: it is the spec's seeded initial state, :func:`greenproof.engine.init_state`.

``m`` is the smallest interval with ``(ceil(N/m) + 2) * state_bytes <= budget``
(:func:`keep_every`), ``state_bytes`` being :func:`greenproof.store.state_size_cap` of the
spec; no budget keeps every boundary (``m = 1``, the behaviour without the option). The
worker journals ``m`` per job when it accepts it (:meth:`worker.journal.Journal.keep_every`),
so a restarted worker keeps the same ``m`` even if its budget changed.

Every boundary's hash, energy, work digest and movement are committed exactly as
before; only the files differ. After the audit draw the worker regenerates each
audited segment's two boundaries that are not on disk (:func:`regenerate`): it
replays forward from the nearest boundary at or below that is on disk (or from
``init_state``) with the same engine (``run_segment``), which is bit-for-bit
deterministic in the job's determinism class, checks every replayed boundary's
hash against the journaled one and stores the targets in the same content-addressed
store, from which the artifact server serves them unchanged. A replay that does not
reproduce a committed hash raises :class:`RegenerationError` and nothing is opened
with a wrong state. The worst case is ``m - 1`` replays per audited segment.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import torch

from greenproof.engine import SegmentResult, TrainState, init_state, run_segment
from greenproof.statehash import state_hash

if TYPE_CHECKING:
    from greenproof.spec import JobSpec
    from greenproof.store import ArtifactStore

log = logging.getLogger("greenproof.worker")

GB = 1024**3
#: headroom in states besides the kept ones while a job trains (a write in progress)
IN_FLIGHT_STATES = 2

Segment = Callable[["JobSpec", TrainState, int], SegmentResult]


class RegenerationError(RuntimeError):
    """A replay did not reproduce a committed boundary hash (or could not run)."""


def states_on_disk(num_segments: int, m: int) -> int:
    """The most states a job keeps on disk with interval ``m``: ``ceil(N/m) + 2``."""
    return math.ceil(num_segments / m) + IN_FLIGHT_STATES


def keep_every(num_segments: int, state_bytes: int, budget_bytes: float | None) -> int | None:
    """The smallest ``m`` in ``1..N`` with ``(ceil(N/m) + 2) * state_bytes <= budget``;
    1 without a budget; None when even ``m = N`` (three states) does not fit."""
    n = max(1, num_segments)
    if budget_bytes is None:
        return 1
    if states_on_disk(n, n) * state_bytes > budget_bytes:
        return None
    # ceil(N/m) only takes O(sqrt N) values; the condition is monotone in m: bisect
    lo, hi = 1, n
    while lo < hi:
        mid = (lo + hi) // 2
        if states_on_disk(n, mid) * state_bytes <= budget_bytes:
            hi = mid
        else:
            lo = mid + 1
    return lo


def is_kept(k: int, m: int, num_segments: int) -> bool:
    """Whether boundary ``k`` stays on disk: ``k % m == 0`` for ``k >= 1``, and the last."""
    return k == num_segments or (k > 0 and k % m == 0)


def kept_boundaries(num_segments: int, m: int) -> list[int]:
    """The boundaries kept on disk, ascending (``ceil(N/m)`` of them)."""
    return [k for k in range(1, num_segments + 1) if is_kept(k, m, num_segments)]


def worst_replays(num_segments: int, m: int, samples: int) -> int:
    """Segment replays to open ``samples`` audited segments in the worst case:
    ``min(samples, ceil(N/m)) * (m - 1)`` (each replay run covers at most one gap)."""
    if m <= 1 or num_segments <= 0:
        return 0
    return min(samples, math.ceil(num_segments / m)) * (m - 1)


def needed_boundaries(segments: Iterable[int]) -> list[int]:
    """Both boundaries of every audited segment, ascending."""
    return sorted({b for i in segments for b in (i, i + 1)})


def _cpu(state: TrainState) -> TrainState:
    return {n: t.detach().cpu() for n, t in state.items()}


def regenerate(
    spec: JobSpec,
    store: ArtifactStore,
    hashes: Sequence[bytes],
    targets: Iterable[int],
    *,
    device: torch.device | str = "cpu",
    segment: Segment | None = None,
    put: bool = True,
) -> dict[int, TrainState]:
    """Bring boundaries ``targets`` back by replay and return their (CPU) states.

    ``hashes`` are the journaled state hashes of boundaries ``0..K``. Each target not
    in ``store`` is replayed from the nearest boundary at or below it that is (boundary
    0 from :func:`init_state`), or from the previous target when that is nearer; every
    replayed boundary's hash must equal the journaled one (:class:`RegenerationError`
    otherwise, loudly logged). With ``put`` the regenerated targets are written to the
    store (content addressed: the artifact server serves them as any other checkpoint)
    and nothing is returned (no state held in memory); without, the targets' states
    are returned and nothing is written.
    ``segment`` trains one segment (default ``run_segment`` on ``device``).
    """
    run = segment or (lambda s, st, k: run_segment(s, st, k, device))
    want = sorted(set(targets))
    if want and (want[0] < 0 or want[-1] >= len(hashes)):
        raise RegenerationError(f"boundaries {want} outside the journaled 0..{len(hashes) - 1}")
    out: dict[int, TrainState] = {}
    cur_k, cur = -1, None  # the last state replayed or loaded
    for t in want:
        if store.has(hashes[t]):  # on disk: a later target's replay may start from it
            if not put:
                out[t] = store.get(hashes[t])
            continue
        base = next((b for b in range(t, cur_k, -1) if b == 0 or store.has(hashes[b])), None)
        if base is None:  # nothing on disk between the last state at hand and t: go on from it
            base, state = cur_k, cur
        elif base == 0:
            state = _cpu(init_state(spec, "cpu"))
            if state_hash(state) != hashes[0]:
                _mismatch(spec, 0, hashes[0], state_hash(state))
        else:
            state = store.get(hashes[base])  # verified against its hash
        assert state is not None
        log.info("regenerating boundary %d by replaying segments %d..%d", t, base, t - 1)
        for k in range(base, t):
            state = run(spec, state, k).state
            got = state_hash(_cpu(state))
            if got != hashes[k + 1]:
                _mismatch(spec, k + 1, hashes[k + 1], got)
        state = _cpu(state)
        if put:
            store.put_state(hashes[t], state)
        else:
            out[t] = state
        cur_k, cur = t, state
    return out


def _mismatch(spec: JobSpec, k: int, want: bytes, got: bytes) -> None:
    msg = (f"REGENERATION MISMATCH at boundary {k}: replay gives state 0x{got.hex()}, the journal "
           f"committed 0x{want.hex()} (task {spec.task}); not opening with a wrong state. Is this "
           "the device and software the job was trained on (same determinism class)?")
    log.error(msg)
    raise RegenerationError(msg)


__all__ = [
    "IN_FLIGHT_STATES", "RegenerationError", "is_kept", "keep_every", "kept_boundaries",
    "needed_boundaries", "regenerate", "states_on_disk", "worst_replays",
]
