"""Cheating strategies for tests and demos only: NEVER enabled by default.

The honest worker trains every segment with ``greenproof.engine.run_segment``.
For the adversary suite it can be given one ``Cheat`` object
(``greenproof worker run … --cheat NAME``), which it consults at three fixed
points; with no cheat configured the worker never imports this module.

Hooks (the worker and :mod:`greenproof.adversaries.simulate` call exactly these):

* ``train_segment(spec, state, k, run_segment) -> SegmentResult`` instead of
  ``run_segment(spec, state, k)`` for segment ``k`` (a
  :class:`greenproof.run.SegmentHook`);
* ``energy(k, energy_mj) -> int``: the cumulative energy (millijoules) measured
  up to boundary ``k``; the return value is what gets committed;
* ``move(k, move) -> int``: the cumulative movement (:mod:`greenproof.movement`)
  measured up to boundary ``k``; the return value is what gets committed;
* ``serve(job_id, state_hash) -> "withhold" | bytes | None`` when the artifact
  server is asked for the checkpoint ``state_hash``: ``None`` serves the real
  file, ``"withhold"`` answers 404, ``bytes`` are served instead of the file.

The single-boundary forgers (:mod:`greenproof.adversaries.forgers`: forge the
state once and train honestly from there) are strategies too; ``make_cheat``
knows both. Every strategy in ``CHEATS`` fakes a fraction ``fraction`` of a job's segments (chosen by a
seeded RNG, at least one when ``fraction > 0``); the others are trained
honestly. A faked segment's losses are whatever the cheat claims (made up, or
those of the steps it did train, padded to a whole segment), and its work
digest and seal are computed from them like an honest one's. A faked segment ``k`` is detectable exactly when the verifier audits
``k`` (the next segment starts from the faked state and replays consistently),
which is what makes the detection probability ``1 - (1 - f)^s``.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel
from safetensors.torch import save

from greenproof.engine import STEP_KEY, SegmentResult, TrainState
from greenproof.run import RunSegment
from greenproof.spec import JobSpec
from greenproof.statehash import state_hash

log = logging.getLogger(__name__)

ServeAnswer = Literal["withhold"] | bytes | None


class CheatError(ValueError):
    """An unknown strategy or a bad strategy parameter."""


def faked_segments(num_segments: int, fraction: float, seed: int) -> frozenset[int]:
    """The segments a cheater with this ``fraction`` fakes: ``round(f*N)`` of
    them (at least one if ``f > 0``), chosen by ``random.Random(seed)``."""
    if not 0.0 <= fraction <= 1.0:
        raise CheatError(f"cheat: fraction must be in [0, 1], got {fraction}")
    if fraction == 0.0:
        return frozenset()
    count = min(num_segments, max(1, round(fraction * num_segments)))
    return frozenset(random.Random(seed).sample(range(num_segments), count))


def _is_param(name: str, tensor: torch.Tensor) -> bool:
    """Floating tensors of the model (not optimizer moments, counters or RNG state)."""
    return name.startswith("model.") and tensor.is_floating_point()


def _replace_state(result: SegmentResult, state: TrainState) -> SegmentResult:
    """The engine's SegmentResult with another state (losses kept)."""
    return dataclasses.replace(result, state=state)


def _with_spec(spec: BaseModel, path: str, value: Any) -> Any:
    """A copy of the (pydantic) spec with the dotted field ``path`` set to ``value``."""
    head, _, rest = path.partition(".")
    if not rest:
        return spec.model_copy(update={head: value})
    return spec.model_copy(update={head: _with_spec(getattr(spec, head), rest, value)})


class Cheat:
    """Base class: honest behaviour at every hook. Subclasses override one hook."""

    name: ClassVar[str] = "honest"
    description: ClassVar[str] = "no cheating"
    #: True when the verifier's report (not a fraud vote) is the expected outcome.
    warning_only: ClassVar[bool] = False

    def __init__(self, fraction: float = 1.0, seed: int = 0) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise CheatError(f"cheat: fraction must be in [0, 1], got {fraction}")
        self.fraction = fraction
        self.seed = seed

    def faked(self, spec: JobSpec, k: int) -> bool:
        return k in faked_segments(spec.num_segments, self.fraction, self.seed)

    # --- hooks -----------------------------------------------------------------
    def train_segment(self, spec: JobSpec, state: TrainState, k: int, run_segment: RunSegment, /) -> SegmentResult:
        if self.faked(spec, k):
            log.warning("cheat %s: faking segment %d", self.name, k)
            return self.fake_segment(spec, state, k, run_segment)
        return run_segment(spec, state, k)

    def fake_segment(self, spec: JobSpec, state: TrainState, k: int, run_segment: RunSegment) -> SegmentResult:
        return run_segment(spec, state, k)

    def energy(self, k: int, energy_mj: int) -> int:
        return energy_mj

    def move(self, k: int, move: int) -> int:
        return move

    def serve(self, job_id: int, h: bytes) -> ServeAnswer:
        return None


class FakeHashes(Cheat):
    """No training at all on faked segments: the end state is fabricated
    (random tensors of the right shapes), so its hash commits to nothing real."""

    name = "fake_hashes"
    description = "fabricated states, no training"

    def fake_segment(self, spec, state, k, run_segment):
        return fabricated_result(spec, state, k, self.seed * 7919 + k)


class FewerSteps(Cheat):
    """Trains only half of the segment's steps and claims the whole segment."""

    name = "fewer_steps"
    description = "half the steps of a segment"

    def fake_segment(self, spec, state, k, run_segment):
        return run_partial(spec, state, k, run_segment, max(1, spec.segment_steps // 2))


class NoisyWeights(Cheat):
    """Trains honestly, then perturbs the parameters (a stand-in for a
    provider that trains carelessly or in lower precision than specified)."""

    name = "noisy_weights"
    description = "honest training plus weight noise"
    relative_noise: ClassVar[float] = 1e-2

    def fake_segment(self, spec, state, k, run_segment):
        result = run_segment(spec, state, k)
        gen = torch.Generator().manual_seed(self.seed * 104729 + k)
        noisy = dict(result.state)
        for name, t in result.state.items():
            if _is_param(name, t):
                scale = self.relative_noise * (t.float().norm() / max(1, t.numel()) ** 0.5)
                noisy[name] = (t.float() + scale * torch.randn(t.shape, generator=gen)).to(t.dtype)
        return _replace_state(result, noisy)


class InterpolatedWeights(Cheat):
    """Half the compute: trains half the steps and extrapolates the parameters
    linearly to the segment end (``end = start + 2 * (half - start)``)."""

    name = "interpolated_weights"
    description = "half the steps, parameters extrapolated"

    def fake_segment(self, spec, state, k, run_segment):
        result = run_partial(spec, state, k, run_segment, max(1, spec.segment_steps // 2))
        out = dict(result.state)
        for name, t in result.state.items():
            if _is_param(name, t) and name in state:
                out[name] = (state[name].float() + 2.0 * (t.float() - state[name].float())).to(t.dtype)
        return _replace_state(result, out)


class DataOrder(Cheat):
    """Trains on a different data order (another shuffling seed)."""

    name = "data_order"
    description = "changed data order"

    def fake_segment(self, spec, state, k, run_segment):
        return run_segment(data_order_variant(spec), state, k)


class LearningRate(Cheat):
    """Trains with a different learning rate than the spec's."""

    name = "learning_rate"
    description = "changed learning rate"
    factor: ClassVar[float] = 2.0

    def fake_segment(self, spec, state, k, run_segment):
        return run_segment(learning_rate_variant(spec, self.factor), state, k)


class Withhold(Cheat):
    """Trains honestly but never serves the end checkpoints of faked segments."""

    name = "withhold"
    description = "withheld checkpoints"

    def __init__(self, fraction: float = 1.0, seed: int = 0) -> None:
        super().__init__(fraction, seed)
        self.withheld: set[bytes] = set()

    def fake_segment(self, spec, state, k, run_segment):
        result = run_segment(spec, state, k)
        self.withheld.add(state_hash(result.state))
        return result

    def serve(self, job_id, h):
        return "withhold" if h in self.withheld else None


class SwapFinal(Cheat):
    """Commits the honest run, then delivers another model (the state from
    before the last segment) under the final state hash."""

    name = "swap_final"
    description = "final model swapped after commit"

    def __init__(self, fraction: float = 1.0, seed: int = 0) -> None:
        super().__init__(fraction, seed)
        self.swapped: dict[bytes, bytes] = {}

    def faked(self, spec, k):
        return self.fraction > 0 and k == spec.num_segments - 1

    def fake_segment(self, spec, state, k, run_segment):
        result = run_segment(spec, state, k)
        before = {n: t.detach().cpu().contiguous() for n, t in state.items()}
        self.swapped[state_hash(result.state)] = save(before)
        return result

    def serve(self, job_id, h):
        return self.swapped.get(h)


class InflateEnergy(Cheat):
    """Trains honestly but reports ``factor`` times the measured energy
    (a reporting lie: flagged as a warning in the verifier's report)."""

    name = "inflate_energy"
    description = "inflated energy claim"
    warning_only = True
    factor: ClassVar[int] = 10

    def energy(self, k, energy_mj):
        return energy_mj * self.factor if self.fraction > 0 else energy_mj


CHEATS: dict[str, type[Cheat]] = {
    c.name: c
    for c in (
        FakeHashes,
        FewerSteps,
        NoisyWeights,
        InterpolatedWeights,
        DataOrder,
        LearningRate,
        Withhold,
        SwapFinal,
        InflateEnergy,
    )
}


def make_cheat(name: str, fraction: float = 1.0, seed: int = 0) -> Cheat:
    """The strategy ``name`` (``CHEATS`` or a single-boundary forger,
    :data:`greenproof.adversaries.forgers.FORGERS`); a ``CheatError`` names the choices."""
    from greenproof.adversaries.forgers import FORGERS, make_forger

    if name in FORGERS:
        return make_forger(name, fraction=fraction, seed=seed)
    try:
        cls = CHEATS[name]
    except KeyError:
        choices = ", ".join(sorted([*CHEATS, *FORGERS]))
        raise CheatError(f"cheat: unknown strategy {name!r}; choose one of {choices}") from None
    return cls(fraction=fraction, seed=seed)


# --- spec variants and partial segments (over greenproof.engine) --------------------


def run_partial(spec: JobSpec, state: TrainState, k: int, run_segment: RunSegment, steps: int) -> SegmentResult:
    """Train only the first ``steps`` steps of segment ``k`` and label the result as
    the segment's end (step counter at ``(k + 1) * segment_steps``); the claimed
    losses are the trained steps' padded with the last one to a whole segment."""
    first = k * spec.segment_steps
    chunk = steps if first % steps == 0 else 1
    sub = spec.model_copy(update={"segment_steps": chunk})
    result = run_segment(sub, state, first // chunk)
    losses = list(result.losses)
    for j in range(1, steps // chunk):
        result = run_segment(sub, result.state, first // chunk + j)
        losses += result.losses
    claimed = losses + losses[-1:] * (spec.segment_steps - len(losses))
    return SegmentResult(state=with_counters_at(result.state, (k + 1) * spec.segment_steps),
                         losses=claimed, steps=spec.segment_steps)


def with_counters_at(state: TrainState, step: int) -> TrainState:
    """``state`` with every step counter forged to ``step`` (``train.step`` and the
    optimizer's ``step`` slots), as a cheater that knows the invariants would."""
    out = dict(state)
    out[STEP_KEY] = torch.tensor(step, dtype=torch.int64)
    for name, t in state.items():
        if name.startswith("optim.") and name.endswith(".step"):
            out[name] = torch.full_like(t, float(step))
    return out


def fabricated_result(spec: JobSpec, state: TrainState, k: int, seed: int) -> SegmentResult:
    """A SegmentResult with no training behind it: model tensors drawn at random
    (scaled like the real ones), everything else copied, the step counter advanced,
    and made-up losses (float32 values in [0.5, 1.5))."""
    gen = torch.Generator().manual_seed(seed)
    fake: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        if _is_param(name, t):
            scale = float(t.float().std()) if t.numel() > 1 else 1.0
            fake[name] = (torch.randn(t.shape, generator=gen) * scale).to(t.dtype)
        else:
            fake[name] = t.clone()
    fake = with_counters_at(fake, (k + 1) * spec.segment_steps)
    losses = (torch.rand(spec.segment_steps, generator=gen) + 0.5).tolist()
    return SegmentResult(state=fake, losses=losses, steps=spec.segment_steps)


def data_order_variant(spec: JobSpec) -> JobSpec:
    """The spec with another data seed (data order is a function of ``(seed, epoch)``)."""
    return spec.model_copy(update={"seed": (spec.seed + 1) % 2**63})


def learning_rate_variant(spec: JobSpec, factor: float) -> JobSpec:
    return _with_spec(spec, "optimizer.lr", spec.optimizer.lr * factor)
