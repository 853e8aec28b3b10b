"""Whole-state invariants of a training state at a boundary (docs/protocol.md §4).

A checkpoint that hashes right can still be forged: optimizer moments that no
longer follow the gradients, a rewound RNG key, a step counter that skips
ahead. Every state a verifier fetches is checked against what the spec alone
implies, before any replay:

* exactly the tensor set of the spec's initial state: names, shapes, dtypes;
* counters consistent with the boundary: ``train.step = k * segment_steps``,
  every AdamW ``step`` slot the same number;
* ``rng.key`` as the spec derives it (it never changes during a run);
* every floating value finite;
* optimizer moments within what the spec's gradient clipping allows: with
  clipping at ``c`` every gradient element satisfies ``|g| <= c``, so after ``t``
  steps AdamW's ``|exp_avg| <= c (1 - b1^t)`` and ``0 <= exp_avg_sq <= c^2 (1 - b2^t)``,
  and SGD's momentum buffer (for parameters without weight decay, whose
  gradient is not mixed with the weights) ``|buf| <= c (1 - mu^t) / (1 - mu)``.

Each violation is a reason string naming the tensor and the numbers; an empty
list means the state is well-formed.
"""

from __future__ import annotations

import functools

import torch

from greenproof.engine import RNG_KEY, STEP_KEY, TrainState, derive_seed, init_state
from greenproof.spec import JobSpec

#: Relative slack on the moment bounds (float32 rounding of the running averages).
BOUND_SLACK = 1e-4
#: How many violations a report lists before it summarises the rest.
MAX_REASONS = 8


@functools.lru_cache(maxsize=8)
def _template(spec_json: bytes) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    import json

    from greenproof.spec import parse_spec

    spec = parse_spec(json.loads(spec_json))
    return {name: (tuple(t.shape), t.dtype) for name, t in init_state(spec, "cpu").items()}


def state_template(spec: JobSpec) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Name -> (shape, dtype) of every tensor a state of ``spec`` holds at any boundary."""
    return _template(spec.canonical_json())


def check_state(spec: JobSpec, state: TrainState, boundary: int) -> list[str]:
    """Every invariant ``state`` breaks as the state at ``boundary`` of a run of ``spec``."""
    reasons = _check_layout(spec, state)
    if reasons:  # the other checks index tensors by the template's names and shapes
        return _capped(reasons)
    reasons += _check_counters(spec, state, boundary)
    reasons += _check_finite(state)
    if not reasons:
        reasons += _check_moments(spec, state, boundary * spec.segment_steps)
    return _capped(reasons)


def _capped(reasons: list[str]) -> list[str]:
    if len(reasons) <= MAX_REASONS:
        return reasons
    return reasons[:MAX_REASONS] + [f"… and {len(reasons) - MAX_REASONS} more violations"]


def _check_layout(spec: JobSpec, state: TrainState) -> list[str]:
    template = state_template(spec)
    reasons = []
    missing = sorted(template.keys() - state.keys())
    extra = sorted(state.keys() - template.keys())
    if missing:
        reasons.append(f"state lacks tensors {missing[:5]}{' …' if len(missing) > 5 else ''}")
    if extra:
        reasons.append(f"state has tensors the spec does not define {extra[:5]}{' …' if len(extra) > 5 else ''}")
    for name in sorted(template.keys() & state.keys()):
        shape, dtype = template[name]
        t = state[name]
        if tuple(t.shape) != shape or t.dtype != dtype:
            reasons.append(
                f"{name}: {t.dtype} {list(t.shape)}, the spec defines {dtype} {list(shape)}"
            )
    return reasons


def _check_counters(spec: JobSpec, state: TrainState, boundary: int) -> list[str]:
    reasons = []
    step = boundary * spec.segment_steps
    if int(state[STEP_KEY]) != step:
        reasons.append(f"{STEP_KEY} is {int(state[STEP_KEY])}, boundary {boundary} is step {step}")
    want_key = derive_seed(spec.seed, "rng")
    if int(state[RNG_KEY]) != want_key:
        reasons.append(f"{RNG_KEY} is {int(state[RNG_KEY])}, the spec derives {want_key}")
    for name, t in state.items():
        if name.startswith("optim.") and name.endswith(".step") and float(t) != float(step):
            reasons.append(f"{name} is {float(t):g}, boundary {boundary} is step {step}")
    return reasons


def _check_finite(state: TrainState) -> list[str]:
    return [
        f"{name} holds non-finite values"
        for name, t in sorted(state.items())
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]


def _check_moments(spec: JobSpec, state: TrainState, steps: int) -> list[str]:
    o = spec.optimizer
    if o.grad_clip is None or steps == 0:
        return _check_zero_moments(state) if steps == 0 else _check_nonnegative(state)
    c = float(o.grad_clip)
    reasons = []
    if o.name == "adamw":
        b1, b2 = o.betas
        bounds = {"exp_avg": c * (1 - b1**steps), "exp_avg_sq": c * c * (1 - b2**steps)}
    else:
        bounds = {"momentum_buffer": c * (1 - o.momentum**steps) / (1 - o.momentum)}
    decayed = _decayed_params(spec, state)
    for name, t in sorted(state.items()):
        slot = name.rsplit(".", 1)[-1]
        if not name.startswith("optim.") or slot not in bounds:
            continue
        if slot == "momentum_buffer" and name.removeprefix("optim.").rsplit(".", 1)[0] in decayed:
            continue  # SGD adds weight decay to the gradient: no bound from clipping alone
        limit = bounds[slot] * (1 + BOUND_SLACK) + 1e-30
        worst = float(t.abs().max()) if t.numel() else 0.0
        if worst > limit:
            reasons.append(f"{name}: max |value| {worst:.6g} exceeds {limit:.6g}, the bound that "
                           f"gradient clipping at {c:g} allows after {steps} steps")
        if slot == "exp_avg_sq" and t.numel() and float(t.min()) < 0:
            reasons.append(f"{name} is negative ({float(t.min()):.6g})")
    return reasons


def _check_zero_moments(state: TrainState) -> list[str]:
    return [f"{name} is not zero at step 0" for name, t in sorted(state.items())
            if name.startswith("optim.") and t.is_floating_point() and bool(t.any())]


def _check_nonnegative(state: TrainState) -> list[str]:
    return [f"{name} is negative ({float(t.min()):.6g})" for name, t in sorted(state.items())
            if name.endswith(".exp_avg_sq") and t.numel() and float(t.min()) < 0]


def _decayed_params(spec: JobSpec, state: TrainState) -> set[str]:
    """Parameters in the weight-decay group (matrices, when the spec decays at all)."""
    if spec.optimizer.weight_decay == 0:
        return set()
    return {name.removeprefix("model.") for name, t in state.items()
            if name.startswith("model.") and t.dim() >= 2}
