"""Audit sampling and the detection arithmetic behind docs/economics.md.

The draw's Python twins (``audit_draws``, ``audit_indices``, ``segment_of_target``,
``segments_to_open``, ``audited_segments``) live in :mod:`greenproof.sampling`,
which the worker uses too; they are re-exported here.
"""

from __future__ import annotations

import math

from greenproof.sampling import (
    audit_draws,
    audit_indices,
    audited_segments,
    segment_of_target,
    segments_to_open,
    uniform_samples,
)

__all__ = [
    "audit_draws", "audit_indices", "audited_segments", "break_even_collateral_ratio",
    "detection_probability", "segment_of_target", "segments_to_open", "uniform_samples",
    "wilson_interval", "worst_case_collateral_ratio",
]


def detection_probability(fraction: float, samples: int) -> float:
    """``1 - (1 - f)^s``: a provider faking a fraction ``f`` of the segments is
    caught by at least one of ``s`` uniform samples (drawn with replacement)."""
    return 1.0 - (1.0 - fraction) ** samples


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95 % by default)."""
    if trials <= 0:
        raise ValueError("sampling: trials must be positive")
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def break_even_collateral_ratio(fraction: float, samples: int, cost_share: float = 1.0) -> float:
    """The collateral / payment ratio above which faking ``fraction`` of a job
    loses money in expectation, counting only the collateral as the loss
    (conservative: the forfeited payment is ignored).

    Expected gain: the saved compute ``f * c * P`` kept when undetected,
    ``(1 - f)^s * f * c * P``; expected loss: ``(1 - (1 - f)^s) * K``.
    Break-even ``K / P = c * f * (1 - f)^s / (1 - (1 - f)^s)``, where ``c`` is
    the compute cost as a share of the payment.
    """
    detect = detection_probability(fraction, samples)
    if detect <= 0:
        return math.inf
    return cost_share * fraction * (1.0 - fraction) ** samples / detect


def worst_case_collateral_ratio(samples: int, cost_share: float = 1.0) -> float:
    """The supremum of ``break_even_collateral_ratio`` over ``f``: ``c / s``
    (reached as ``f -> 0``, where detection is ``≈ s * f``)."""
    return cost_share / samples
