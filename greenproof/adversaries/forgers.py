"""Single-boundary forgers, for tests and benches only (issue 12, docs/economics.md).

A forger trains honestly up to one boundary ``k*``, replaces the state there by a
forged one from which training is cheap, and trains every later segment honestly
from the forged state. Every later segment then replays exactly; only segment
``k* - 1`` (the one that ends at the forged boundary) is wrong, so uniform
sampling alone finds it with probability about ``s / N``. The forgeries keep
every whole-state invariant (counters, RNG key, tensor set, moment bounds), so
they pass :mod:`verifier.invariants`:

* ``moments``: AdamW's second moments scaled by 1e8 and held to the bound that
  gradient clipping allows (``exp_avg_sq <= c^2 (1 - b2^t)``): every later update
  is divided by ~``c`` instead of the gradients' scale, so the optimizer barely
  moves (a frozen optimizer);
* ``collapse``: every floating model tensor multiplied by ``factor`` (1e-3);
* ``other_run``: the model and optimizer moments of another run of the same spec
  with another seed, at the same boundary (counters and RNG key kept).

How the forger claims the jump's movement (:mod:`greenproof.movement`), with ``J``
the jump's movement ``fixed(dist(state_{k*-1}, forged))`` and ``h`` the movement
the honest segment would have had:

* ``truthful``: segment ``k* - 1`` claims ``J`` (every claim is the true distance);
* ``elsewhere``: segment ``k* - 1`` claims ``h`` and segment ``k*`` claims its own
  movement plus ``J - h`` (the cumulative movement from boundary ``k* + 1`` on is the true one);
* ``nowhere``: segment ``k* - 1`` claims ``h`` (as if honest), nothing claims the jump.

``k*`` is ``at`` when given, else ``N - round(fraction * N)`` clamped to ``1 … N - 1``:
``fraction`` is the share of the run trained from the forged state (the saving).
The worker takes them by name (``--cheat forge_collapse_nowhere``); only with
``--cheat`` does it import this module.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import ClassVar, Literal

import torch

from greenproof.adversaries.cheats import Cheat, CheatError
from greenproof.engine import SegmentResult, TrainState, init_state
from greenproof.movement import is_moving, metric_for
from greenproof.run import RunSegment
from greenproof.spec import JobSpec

log = logging.getLogger(__name__)

ClaimMode = Literal["truthful", "elsewhere", "nowhere"]
CLAIMS: tuple[ClaimMode, ...] = ("truthful", "elsewhere", "nowhere")
#: A state of the other run at a boundary (the bench passes its precomputed run).
OtherRun = Callable[[JobSpec, int, RunSegment], TrainState]


def forged_boundary(num_segments: int, fraction: float) -> int:
    """``k* = N - round(fraction * N)``, clamped to ``1 … N - 1`` (a run needs ``N >= 2``)."""
    if num_segments < 2:
        raise CheatError("forger: a single-boundary forgery needs at least 2 segments")
    return min(num_segments - 1, max(1, num_segments - round(fraction * num_segments)))


def forge_moments(spec: JobSpec, state: TrainState, boundary: int, scale: float = 1e8) -> TrainState:
    """``exp_avg_sq * scale``, held to ``c^2 (1 - b2^t)`` (``t`` the boundary's step) so that the
    whole-state invariants still hold; AdamW only."""
    o = spec.optimizer
    if o.name != "adamw":
        raise CheatError(f"forger: forging the optimizer's moments needs an AdamW spec, not {o.name}")
    steps = boundary * spec.segment_steps
    limit = float("inf") if o.grad_clip is None else float(o.grad_clip) ** 2 * (1 - o.betas[1] ** steps)
    out = dict(state)
    for name, t in state.items():
        if name.startswith("optim.") and name.endswith(".exp_avg_sq"):
            out[name] = torch.clamp(t * scale, max=limit).to(t.dtype)
    return out


def collapse_weights(state: TrainState, factor: float) -> TrainState:
    """Every floating ``model.*`` tensor times ``factor``."""
    return {name: (t * factor).to(t.dtype) if name.startswith("model.") and t.is_floating_point() else t
            for name, t in state.items()}


def transplant(state: TrainState, other: TrainState) -> TrainState:
    """``other``'s moving tensors (model and optimizer moments) with ``state``'s counters and RNG key."""
    return {name: other[name].to(t.device).clone() if is_moving(name, t) else t for name, t in state.items()}


def other_run_spec(spec: JobSpec) -> JobSpec:
    """The same spec with another seed (another initialisation, data order and RNG key)."""
    return spec.model_copy(update={"seed": (spec.seed + 1) % 2**63})


def train_other_run(spec: JobSpec, boundary: int, run_segment: RunSegment) -> TrainState:
    """The other run's state at ``boundary``, trained from its own initial state."""
    other = other_run_spec(spec)
    state = init_state(other, "cpu")
    for k in range(boundary):
        state = run_segment(other, state, k).state
    return state


class ForgeBoundary(Cheat):
    """Forge the state at one boundary, then train honestly (see the module docstring)."""

    kind: ClassVar[str] = "forge"

    def __init__(self, fraction: float = 1.0, seed: int = 0, *, claim: ClaimMode = "truthful",
                 at: int | None = None) -> None:
        super().__init__(fraction, seed)
        if claim not in CLAIMS:
            raise CheatError(f"forger: claim must be one of {', '.join(CLAIMS)}, got {claim!r}")
        self.claim: ClaimMode = claim
        self.at = at
        #: the forged boundary once forged, with the true movement of its segment (the
        #: jump ``J``) and the movement the honest segment would have had (``h``)
        self.forged_at: int | None = None
        self.jump_move = 0
        self.honest_move = 0

    def boundary(self, spec: JobSpec) -> int:
        """``k*``, the forged boundary (1 … N - 1)."""
        if self.at is None:
            return forged_boundary(spec.num_segments, self.fraction)
        if not 1 <= self.at < spec.num_segments:
            raise CheatError(f"forger: boundary {self.at} outside 1..{spec.num_segments - 1}")
        return self.at

    def faked(self, spec: JobSpec, k: int) -> bool:
        return self.fraction > 0 and k == self.boundary(spec) - 1

    def forge(self, spec: JobSpec, state: TrainState, boundary: int, run_segment: RunSegment) -> TrainState:
        raise NotImplementedError

    def fake_segment(self, spec: JobSpec, state: TrainState, k: int, run_segment: RunSegment) -> SegmentResult:
        """Train segment ``k`` honestly, forge its end (its honest losses are claimed)."""
        result = run_segment(spec, state, k)
        forged = self.forge(spec, result.state, k + 1, run_segment)
        metric = metric_for(spec)
        start = {n: t.cpu() for n, t in state.items()}
        self.honest_move = metric.fixed(start, {n: t.cpu() for n, t in result.state.items()})
        self.jump_move = metric.fixed(start, {n: t.cpu() for n, t in forged.items()})
        self.forged_at = k + 1
        log.warning("forger %s: boundary %d forged (movement %d, honest %d, claimed %s)", self.name, k + 1,
                    self.jump_move, self.honest_move, self.claim)
        return dataclasses.replace(result, state=forged)

    def move(self, k: int, move: int) -> int:
        """The claimed cumulative movement at boundary ``k`` (see the claim modes)."""
        if self.forged_at is None or self.claim == "truthful" or k < self.forged_at:
            return move
        shift = self.honest_move - self.jump_move
        if self.claim == "nowhere" or k == self.forged_at:
            return move + shift
        return move


class ForgeMoments(ForgeBoundary):
    kind = "moments"
    description = "optimizer second moments forged to the clipping bound at one boundary"

    def forge(self, spec, state, boundary, run_segment):
        return forge_moments(spec, state, boundary)


class ForgeCollapse(ForgeBoundary):
    kind = "collapse"
    description = "weights collapsed at one boundary"
    factor: ClassVar[float] = 1e-3

    def forge(self, spec, state, boundary, run_segment):
        return collapse_weights(state, self.factor)


class ForgeOtherRun(ForgeBoundary):
    kind = "other_run"
    description = "jump to another run's state (same spec, another seed) at one boundary"

    def __init__(self, fraction: float = 1.0, seed: int = 0, *, claim: ClaimMode = "truthful",
                 at: int | None = None, source: OtherRun | None = None) -> None:
        super().__init__(fraction, seed, claim=claim, at=at)
        self.source: OtherRun = source or train_other_run

    def forge(self, spec, state, boundary, run_segment):
        return transplant(state, self.source(spec, boundary, run_segment))


FORGER_KINDS: dict[str, type[ForgeBoundary]] = {c.kind: c for c in (ForgeMoments, ForgeCollapse, ForgeOtherRun)}


def forger_name(kind: str, claim: ClaimMode) -> str:
    """``forge_<kind>`` for a truthful claim, ``forge_<kind>_<claim>`` otherwise."""
    return f"forge_{kind}" if claim == "truthful" else f"forge_{kind}_{claim}"


#: every forger's ``--cheat`` name -> (class, claim mode)
FORGERS: dict[str, tuple[type[ForgeBoundary], ClaimMode]] = {
    forger_name(kind, claim): (cls, claim) for kind, cls in FORGER_KINDS.items() for claim in CLAIMS
}


def make_forger(name: str, fraction: float = 1.0, seed: int = 0, **kwargs: object) -> ForgeBoundary:
    """The forger ``name`` (see ``FORGERS``); ``kwargs``: ``at``, and ``source`` for ``other_run``."""
    try:
        cls, claim = FORGERS[name]
    except KeyError:
        raise CheatError(f"forger: unknown forger {name!r}; choose one of {', '.join(sorted(FORGERS))}") from None
    forger = cls(fraction, seed, claim=claim, **kwargs)  # type: ignore[arg-type]
    forger.name = name  # type: ignore[misc]
    return forger


__all__ = [
    "CLAIMS", "FORGERS", "FORGER_KINDS", "ClaimMode", "ForgeBoundary", "ForgeCollapse", "ForgeMoments",
    "ForgeOtherRun", "collapse_weights", "forge_moments", "forged_boundary", "forger_name", "make_forger",
    "other_run_spec", "train_other_run", "transplant",
]
