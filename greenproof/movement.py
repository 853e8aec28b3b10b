"""Committed movement: how far a training state moves, as a fixed-point integer (docs/protocol.md §3.10).

Every leaf commits the run's cumulative movement ``move_k`` (``move_0 = 0``,
``move_k = move_{k-1} + d_k``), and JobMarket draws half of its audit samples
uniformly over ``[0, move_N)``: a provider that forges the state at one boundary
must either claim the jump as movement (the draws then find the segment that
claims it, and its replay or movement check fails) or not (the distance between
two known boundaries around the jump then exceeds the movement claimed between
them: the triangle check of :mod:`verifier.movement`).

**The metric.** For two states ``a`` and ``b`` of one job::

    dist(a, b) = sqrt( sum over moving tensors t, in sorted name order, of S_t / w_t^2 )
    S_t        = sum over the elements of t of (float64(a_t) - float64(b_t))^2
    w_t        = max(RMS of t in the job's initial state, floor_t)
    floor_t    = FLOOR ** 2 for AdamW's exp_avg_sq (squared units), FLOOR otherwise

* the **moving tensors** are every floating tensor of the initial state except
  counters: ``model.*`` parameters and buffers and the optimizer's moments
  (``exp_avg``, ``exp_avg_sq``, ``momentum_buffer``); not ``train.step`` or
  ``rng.key`` (integers) nor AdamW's float ``optim.<param>.step`` slots (counters,
  which the whole-state invariants check exactly);
* the weights ``w_t`` are fixed for the whole job by its seeded initial state
  (``init_state(spec)``, which everybody can compute), so ``dist`` is a weighted
  Euclidean distance: a true metric, and the triangle inequality
  ``dist(a, c) <= dist(a, b) + dist(b, c)`` holds exactly in real arithmetic;
* ``RMS = sqrt(sum(x^2) / n)`` in float64 (0 for an empty tensor); optimizer
  moments start at zero, so their weight is their floor;
* ``S_t`` is numpy's float64 sum (pairwise summation, one thread: the same bits
  whatever torch's thread count), the per-tensor terms are added in sorted name
  order in Python floats.

**Fixed point.** ``fixed(x) = floor(x * SCALE)`` with ``SCALE = 2**SCALE_BITS``
(``math.ldexp``: exact, no rounding before the floor); a segment's movement is
``d_k = fixed(dist(state_{k-1}, state_k))``.

**The constants** (measured with ``bench/forgery.py``; docs/protocol.md §3.10 has the numbers):

* ``FLOOR = 0.1``. An honest segment changes the weights by ~2e-3 per element,
  the first moments by ~1e-3 and the second moments by ~1e-6 (mlp, cnn, gpt
  examples); below 0.1 the first moments' noise fills more and more of an honest
  run's movement and dilutes the movement samples a forged jump draws (least
  detection rate over the single-boundary forgers, mlp, 32 samples: 0.968 at 0.03, 0.981 at 0.1,
  0.921 at 0.3).
* ``FLOOR ** 2`` for second moments: they hold squared gradients, and a frozen
  optimizer hides there (the invariants let them reach ``c^2 (1 - b2^t)``, only
  0.008 after 8 steps); with the plain floor such a forgery at boundary 1 drew
  4.8 % of the run's movement (caught in 66 % of draws when claimed), with the
  squared floor 31 % (99.8 %), at no honest cost.
* ``SCALE = 2**20`` units per unit of distance. The smallest honest segment
  measured moves 0.7 (7.3e5 units), so floor rounding (< 1 unit per segment) is
  a relative 1e-6 of an honest segment and nothing against a forgery, while
  float64 carries ``d * SCALE`` with ~1e-3 units of error up to distances of 1e6:
  the one-unit tolerance of the movement check is rounding, not slack.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import torch

#: Weight floor of a tensor whose initial RMS is smaller (optimizer moments start at 0).
FLOOR = 0.1
#: Fixed-point scale: ``d_k = floor(dist * 2**SCALE_BITS)``.
SCALE_BITS = 20
SCALE = 1 << SCALE_BITS
#: Optimizer slots that count steps: checked by the invariants, not moved.
COUNTER_SLOTS = frozenset({"step"})
#: Optimizer slots in squared units (AdamW's second moments): their floor is ``FLOOR ** 2``.
SQUARED_SLOTS = frozenset({"exp_avg_sq"})


class MovementError(ValueError):
    """Two states that cannot be compared (different tensors, shapes, non-finite values)."""


def floor_of(name: str, floor: float = FLOOR, squared: bool = True) -> float:
    """The weight floor of tensor ``name``: ``floor``, squared for a second moment (unless
    ``squared`` is off: one floor for every tensor, the sweep's comparison only)."""
    second_moment = name.startswith("optim.") and name.rsplit(".", 1)[-1] in SQUARED_SLOTS
    return floor * floor if squared and second_moment else floor


def is_moving(name: str, tensor: torch.Tensor) -> bool:
    """A floating tensor that is not a counter (see the module docstring)."""
    if not tensor.is_floating_point():
        return False
    return not (name.startswith("optim.") and name.rsplit(".", 1)[-1] in COUNTER_SLOTS)


def _f64(t: torch.Tensor, copy: bool = False) -> np.ndarray:
    """The tensor's values as a flat float64 numpy array on the CPU (exact for every float dtype);
    a private copy when ``copy`` (the caller then writes into it)."""
    return t.detach().to("cpu", torch.float64, copy=copy).contiguous().reshape(-1).numpy()


def _sum_sq(x: np.ndarray) -> float:
    """``sum(x^2)`` in float64, numpy's pairwise summation (deterministic, one thread); squares
    ``x`` in place (callers pass a private array)."""
    if not x.size:
        return 0.0
    np.multiply(x, x, out=x)
    return float(x.sum())


def _sum_sq_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """``sum((a - b)^2)`` in float64, in one private buffer."""
    x = _f64(a, copy=True)
    np.subtract(x, _f64(b), out=x)
    return _sum_sq(x)


def rms(t: torch.Tensor) -> float:
    """``sqrt(sum(x^2) / n)`` in float64; 0 for an empty tensor."""
    x = _f64(t, copy=True)
    return math.sqrt(_sum_sq(x) / x.size) if x.size else 0.0


def to_fixed(x: float) -> int:
    """``floor(x * SCALE)`` exactly (``x`` finite and >= 0)."""
    if not math.isfinite(x) or x < 0:
        raise MovementError(f"movement: distance {x!r} is not a finite non-negative number")
    return math.floor(math.ldexp(x, SCALE_BITS))


def from_fixed(units: int) -> float:
    """Fixed-point units back to a distance (for reports)."""
    return math.ldexp(float(units), -SCALE_BITS)


class Metric:
    """The job's movement metric: weights fixed by its initial state (``init_state(spec)``).

    ``floor`` is :data:`FLOOR` and ``squared`` on in the protocol; other values exist for
    the sweep in ``bench/forgery.py`` only (a worker and a verifier must agree on them).
    """

    def __init__(self, initial: Mapping[str, torch.Tensor], floor: float = FLOOR, squared: bool = True) -> None:
        if not floor > 0:
            raise MovementError(f"movement: floor must be > 0, got {floor}")
        self.floor = floor
        self.squared = squared
        #: moving tensor name -> weight ``w_t``, in sorted name order
        self.weights: dict[str, float] = {
            name: max(rms(initial[name]), floor_of(name, floor, squared))
            for name in sorted(initial) if is_moving(name, initial[name])
        }

    def squared_terms(self, a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """``S_t / w_t^2`` per moving tensor, in sorted name order."""
        out: dict[str, float] = {}
        for name, w in self.weights.items():
            ta, tb = a.get(name), b.get(name)
            if ta is None or tb is None:
                raise MovementError(f"movement: tensor {name!r} missing from a state")
            if ta.shape != tb.shape:
                raise MovementError(f"movement: {name} has shapes {list(ta.shape)} and {list(tb.shape)}")
            s = _sum_sq_diff(ta, tb)
            if not math.isfinite(s):
                raise MovementError(f"movement: {name} holds non-finite values")
            out[name] = s / (w * w)
        return out

    def distance(self, a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
        """``dist(a, b)`` in float64 (the terms added in sorted name order)."""
        total = 0.0
        for term in self.squared_terms(a, b).values():
            total += term
        return math.sqrt(total)

    def fixed(self, a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> int:
        """``fixed(dist(a, b))``: a segment's movement ``d_k`` when ``a``, ``b`` are its boundaries."""
        return to_fixed(self.distance(a, b))


def metric_for(spec: object, floor: float = FLOOR) -> Metric:
    """The metric of a job spec (weights from its seeded initial state, built on the CPU)."""
    from greenproof.engine import init_state

    return Metric(init_state(spec, "cpu"), floor)  # type: ignore[arg-type]


def cumulative(segment_moves: Iterable[int]) -> list[int]:
    """``[0, d_1, d_1 + d_2, …]``: the cumulative ``move_k`` of per-segment movements."""
    out = [0]
    for d in segment_moves:
        if d < 0:
            raise MovementError(f"movement: a segment's movement cannot be negative ({d})")
        out.append(out[-1] + int(d))
    return out


def triangle_slack(a: int, b: int) -> int:
    """Units by which ``fixed(dist(state_a, state_b))`` may exceed ``move_b - move_a`` without
    any lie: each of the ``b - a`` segments' movements was floored (less than 1 unit each),
    plus 1 for the float64 rounding of the distances."""
    return (b - a) + 1


__all__ = [
    "COUNTER_SLOTS", "FLOOR", "SCALE", "SCALE_BITS", "SQUARED_SLOTS", "Metric", "MovementError",
    "cumulative", "floor_of", "from_fixed", "is_moving", "metric_for", "rms", "to_fixed",
    "triangle_slack",
]
