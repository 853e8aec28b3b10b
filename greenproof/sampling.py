"""Python twins of JobMarket's audit draw (docs/protocol.md §2.3, ``AuditRules.draws``).

With ``s`` samples, ``r_j = uint256(keccak256(abi_encode(seed, job_id, j)))``
(``bytes32, uint256, uint256``):

* the first ``h = ceil(s / 2)`` samples are uniform over segment indices,
  ``r_j % N`` (``Gateway.audit_indices``);
* the other ``s - h`` are uniform over the committed movement,
  ``u_j = r_j % move_N`` (``Gateway.movement_draws``): the provider opens the
  segment ``k`` with ``move_k <= u_j < move_{k+1}``. When ``move_N == 0`` every
  sample is uniform over indices.

The worker uses them to know which segments to open, the verifier and the
benches to know which are audited.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from eth_abi import encode as abi_encode
from eth_utils import keccak


def _draw(seed: bytes, job_id: int, j: int) -> int:
    return int.from_bytes(keccak(abi_encode(["bytes32", "uint256", "uint256"], [seed, job_id, j])), "big")


def uniform_samples(samples: int, move_total: int) -> int:
    """How many of ``samples`` are uniform over indices: ``ceil(s / 2)``, or all
    of them when the run claims no movement."""
    return samples if move_total == 0 else (samples + 1) // 2


def audit_draws(
    seed: bytes, job_id: int, num_segments: int, samples: int, move_total: int
) -> tuple[list[int], list[int]]:
    """``(indices, targets)``: the uniform segment indices and the movement
    targets ``u_j``, in draw order (duplicates kept, as on-chain)."""
    if len(seed) != 32:
        raise ValueError(f"sampling: seed must be 32 bytes, got {len(seed)}")
    if num_segments <= 0:
        raise ValueError("sampling: num_segments must be positive")
    if move_total < 0:
        raise ValueError("sampling: move_total must be >= 0")
    h = uniform_samples(samples, move_total)
    indices = [_draw(seed, job_id, j) % num_segments for j in range(h)]
    targets = [_draw(seed, job_id, j) % move_total for j in range(h, samples)]
    return indices, targets


def audit_indices(seed: bytes, job_id: int, num_segments: int, samples: int, move_total: int = 0) -> list[int]:
    """The uniform sampled segment indices (``Gateway.audit_indices``)."""
    return audit_draws(seed, job_id, num_segments, samples, move_total)[0]


def segment_of_target(moves: Sequence[int], target: int) -> int:
    """The segment ``k`` with ``moves[k] <= target < moves[k + 1]`` (``moves`` the
    cumulative movement at boundaries ``0..N``, non-decreasing)."""
    if not moves or not 0 <= target < moves[-1]:
        raise ValueError(f"sampling: movement target {target} outside [0, {moves[-1] if moves else 0})")
    return bisect.bisect_right(moves, target) - 1


def segments_to_open(indices: Sequence[int], targets: Sequence[int], moves: Sequence[int]) -> list[int]:
    """The distinct segments, ascending, that satisfy uniform ``indices`` and movement
    ``targets`` for a run with cumulative movements ``moves`` (``N + 1`` boundaries)."""
    return sorted(set(indices) | {segment_of_target(moves, u) for u in targets})


def audited_segments(seed: bytes, job_id: int, samples: int, moves: Sequence[int]) -> list[int]:
    """Every segment a provider with cumulative movements ``moves`` (``N + 1``
    boundaries) must open, ascending and distinct."""
    indices, targets = audit_draws(seed, job_id, len(moves) - 1, samples, moves[-1])
    return segments_to_open(indices, targets, moves)
