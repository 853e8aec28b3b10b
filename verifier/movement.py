"""The verifier's movement checks (docs/protocol.md §4, :mod:`greenproof.movement`).

Two checks, both fraud when they fail, with the numbers in the evidence:

* ``movement``, per audited segment ``i``: the movement of the segment's states,
  ``fixed(dist(state_i, state_{i+1}))``, must equal the claimed ``move_{i+1} -
  move_i`` within ``SEGMENT_TOLERANCE`` (1 unit). The states are the committed
  start and end (hash-checked); in the provider's determinism class the replay's
  end is the committed end bit for bit (else the ``comparison`` check fails), so
  this is the replayed movement. The same code computes the same float64 sums in
  the same order on both sides, so an honest claim is exact; the one unit covers
  a last-bit difference of the float64 sums on another machine of the class.
  Also ``move_i <= move_{i+1}`` and ``move_0 = 0``.
* ``triangle``, per job: the **known boundaries** are boundary 0 (the spec's
  seeded initial state, movement 0), both boundaries of every opened segment
  (hashes and movements from ``SegmentOpened``) and boundary N (the committed
  ``final_state_hash`` and ``move_total``; the final checkpoint is served at
  ``result_uri`` like the others). Sorted by index, every consecutive pair
  ``a < b`` must satisfy ``move_a <= move_b`` and
  ``fixed(dist(state_a, state_b)) <= move_b - move_a + (b - a) + 1`` (each of the
  ``b - a`` claimed segment movements was floored, losing less than one unit,
  plus one unit for the float64 rounding of the distance). Because ``dist`` is a
  weighted Euclidean distance with weights fixed per job it is a metric, so the
  triangle inequality ``dist(a, c) <= dist(a, b) + dist(b, c)`` makes the
  consecutive pairs enough: every other pair's bound is implied by them. Two
  openings that disagree about one boundary are fraud too.

A provider that forged the state at one boundary and continued from there must
claim the jump as movement on the segment before it (then the movement draws
find that segment and its replay fails), on another segment (whose movement
check fails when audited, and the triangle across the forged boundary fails when
an opened boundary lies between them), or nowhere (then the triangle across the
forged boundary fails).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from greenproof.movement import Metric, MovementError, from_fixed, metric_for, triangle_slack
from greenproof.spec import JobSpec
from verifier.evidence import BoundaryPair, SegmentCheck, TriangleCheck

#: Units by which a segment's measured movement may differ from its claim.
SEGMENT_TOLERANCE = 1

State = dict[str, torch.Tensor]
#: A hash-checked state by (boundary, state hash), or why it cannot be had.
LoadState = Callable[[int, bytes], tuple[State | None, str | None]]
#: ``fixed(dist(state_a, state_b))`` of boundaries ``a < b`` (simulations pass a cached one).
Distance = Callable[[int, int, State, State], int]


@functools.lru_cache(maxsize=8)
def _metric(spec_json: bytes) -> Metric:
    from greenproof.spec import parse_spec

    return metric_for(parse_spec(json.loads(spec_json)))


def job_metric(spec: JobSpec) -> Metric:
    """The job's movement metric (weights from ``init_state(spec)``; cached per spec)."""
    return _metric(spec.canonical_json())


def check_segment_movement(check: SegmentCheck, spec: JobSpec, index: int, start_move: int | None,
                           end_move: int | None, start: State, end: State) -> None:
    """The ``movement`` check of one opened segment (no claim, as judged from files: nothing to check)."""
    if start_move is None or end_move is None:
        return
    check.claimed_move = end_move - start_move
    if index == 0 and start_move != 0:
        check.fraud("movement", f"movement at boundary 0 must be 0, the opening claims {start_move}")
    if end_move < start_move:
        check.fraud("movement", f"cumulative movement decreases over the segment ({start_move} -> {end_move})")
        return
    try:
        measured = job_metric(spec).fixed(start, end)
    except MovementError as exc:
        check.fraud("movement", f"the segment's movement cannot be measured: {exc}")
        return
    check.measured_move = measured
    if abs(measured - check.claimed_move) > SEGMENT_TOLERANCE:
        check.fraud("movement", (
            f"the segment's states are {measured} units apart ({from_fixed(measured):.6g}), the provider "
            f"claims {check.claimed_move} ({from_fixed(check.claimed_move):.6g}) = move_{index + 1} {end_move} "
            f"- move_{index} {start_move} (tolerance {SEGMENT_TOLERANCE} unit)"))
    check.passed("movement")


@dataclass(frozen=True)
class Known:
    """A boundary whose state hash and cumulative movement the chain (or the spec) fixes."""

    state_hash: bytes
    move: int
    source: str


class Opened(Protocol):
    """What the triangle needs of an opened segment (:class:`verifier.audit.OpenedSegment`)."""

    index: int
    start_hash: bytes
    end_hash: bytes
    start_move: int | None
    end_move: int | None


def known_boundaries(init_hash: bytes, opened: Sequence[Opened], num_segments: int,
                     final_state_hash: bytes | None, move_total: int | None,
                     check: TriangleCheck) -> dict[int, Known]:
    """Boundary 0, both boundaries of each opened segment and boundary N; two claims that
    disagree about one boundary are fraud (boundary 0 is the spec's: segment 0's own
    ``start`` and ``movement`` checks judge its opening)."""
    known: dict[int, Known] = {0: Known(init_hash, 0, "the spec's initial state")}

    def add(k: int, h: bytes, move: int | None, source: str) -> None:
        if move is None or k == 0 or not 0 <= k <= num_segments:
            return
        have = known.get(k)
        if have is None:
            known[k] = Known(h, move, source)
        elif (have.state_hash, have.move) != (h, move):
            check.fraud(f"boundary {k}: {have.source} says state 0x{have.state_hash.hex()} movement {have.move}, "
                        f"{source} says 0x{h.hex()} movement {move}")

    if final_state_hash is not None and move_total is not None:
        add(num_segments, final_state_hash, move_total, "the committed result")
    for seg in sorted(opened, key=lambda s: s.index):
        add(seg.index, seg.start_hash, seg.start_move, f"segment {seg.index}'s opening")
        add(seg.index + 1, seg.end_hash, seg.end_move, f"segment {seg.index}'s opening")
    check.known = {k: v.move for k, v in sorted(known.items())}
    return known


def bridged_segments(known: Iterable[int], audited: Iterable[int], num_segments: int) -> list[int]:
    """The segments no draw audited whose two boundaries are both known (boundary 0, an opened
    boundary, boundary N): a verifier replays them too (docs/protocol.md §4, "bridged segments").

    A forger at boundary ``k*`` is wrong only on segment ``k* - 1``; besides its own draw, that
    segment is now checked whenever the draw opens both its neighbours (or, for ``k* = 1``, just
    segment 1, since boundary 0 is the spec's)."""
    have, drawn = set(known), set(audited)
    return [k for k in range(num_segments) if k not in drawn and k in have and k + 1 in have]


def check_triangle(spec: JobSpec, known: dict[int, Known], load: LoadState, check: TriangleCheck,
                   distance: Distance | None = None) -> TriangleCheck:
    """Every consecutive pair of known boundaries (see the module docstring); loads each
    state once and holds two at a time. ``distance`` defaults to the job's metric."""
    if distance is None:
        metric = job_metric(spec)

        def distance(a: int, b: int, sa: State, sb: State) -> int:
            return metric.fixed(sa, sb)

    order = sorted(known)
    prev_k: int | None = None
    prev_state: State | None = None
    for k in order:
        state, why = load(k, known[k].state_hash)
        if why is not None:
            check.fraud(f"boundary {k} ({known[k].source}): {why}")
        if prev_k is not None:
            _pair(check, distance, prev_k, known[prev_k].move, prev_state, k, known[k].move, state)
        prev_k, prev_state = k, state
    return check


def _pair(check: TriangleCheck, distance: Distance, a: int, move_a: int, sa: State | None, b: int, move_b: int,
          sb: State | None) -> None:
    claimed, slack = move_b - move_a, triangle_slack(a, b)
    if claimed < 0:
        check.pairs.append(BoundaryPair(a=a, b=b, distance=None, claimed=claimed, slack=slack, ok=False))
        check.fraud(f"cumulative movement decreases from boundary {a} ({move_a}) to boundary {b} ({move_b})")
        return
    if sa is None or sb is None:
        return
    try:
        apart = distance(a, b, sa, sb)
    except MovementError as exc:
        check.pairs.append(BoundaryPair(a=a, b=b, distance=None, claimed=claimed, slack=slack, ok=False))
        check.fraud(f"boundaries {a} and {b} cannot be compared: {exc}")
        return
    ok = apart <= claimed + slack
    check.pairs.append(BoundaryPair(a=a, b=b, distance=apart, claimed=claimed, slack=slack, ok=ok))
    if not ok:
        check.fraud(
            f"boundaries {a} and {b} are {apart} units apart ({from_fixed(apart):.6g}), more than the "
            f"movement claimed between them, move_{b} - move_{a} = {move_b} - {move_a} = {claimed} "
            f"({from_fixed(claimed):.6g}) + slack {slack}: the state jumped somewhere between them without "
            "claiming it")


__all__ = ["SEGMENT_TOLERANCE", "Distance", "Known", "bridged_segments", "check_segment_movement", "check_triangle",
           "job_metric",
           "known_boundaries"]
