"""Cross-class comparison of a replayed state with a claimed one (docs/protocol.md §4).

Across determinism classes the bits differ, so a replay is compared with the
provider's claimed end state tensor by tensor, over **every** tensor of the
state (parameters, buffers, optimizer slots, counters, RNG key):

* integer and boolean tensors must be equal;
* each floating tensor's relative L2 distance
  ``||replayed - claimed|| / max(||claimed||, ||replayed||)`` (in float64) must
  not exceed the spec's ``tolerance.rel_l2``, calibrated by
  ``bench/tolerance.py`` from measured honest cross-class noise.

Comparing the optimizer slots too closes the forgeries that leave the weights
alone: moments that no longer follow the gradients pass a weights-only rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from greenproof.engine import TrainState


@dataclass(frozen=True)
class TensorDistance:
    name: str
    distance: float  # relative L2 for floating tensors; 0 (equal) or inf (different) otherwise


def tensor_distances(replayed: TrainState, claimed: TrainState) -> list[TensorDistance]:
    """Per-tensor distances over the union of names (a tensor only one side has is ``inf``)."""
    out = []
    for name in sorted(replayed.keys() | claimed.keys()):
        a, b = replayed.get(name), claimed.get(name)
        if a is None or b is None or a.shape != b.shape or a.dtype != b.dtype:
            out.append(TensorDistance(name, float("inf")))
        elif not a.is_floating_point():
            out.append(TensorDistance(name, 0.0 if torch.equal(a.cpu(), b.cpu()) else float("inf")))
        else:
            out.append(TensorDistance(name, rel_l2(a, b)))
    return out


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b|| / max(||a||, ||b||)`` in float64; 0 when both are zero."""
    a64, b64 = a.detach().cpu().double(), b.detach().cpu().double()
    scale = max(float(a64.norm()), float(b64.norm()))
    if scale == 0.0:
        return 0.0
    return float((a64 - b64).norm()) / scale


def worst(distances: list[TensorDistance]) -> TensorDistance:
    """The largest distance (the one a verdict names)."""
    return max(distances, key=lambda d: d.distance)


def over_tolerance(distances: list[TensorDistance], tolerance: float) -> list[TensorDistance]:
    """The tensors whose distance exceeds ``tolerance``, worst first."""
    return sorted((d for d in distances if d.distance > tolerance), key=lambda d: -d.distance)
