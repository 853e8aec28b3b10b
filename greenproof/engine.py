"""The one training code path: the worker trains with it, the verifier replays with it.

A training state is a flat ``dict[str, Tensor]`` (docs/protocol.md §3)::

    model.<name>           parameters and buffers (``model.state_dict()``)
    optim.<name>.<slot>    optimizer state per parameter (AdamW: step, exp_avg, exp_avg_sq;
                           SGD with momentum: momentum_buffer)
    train.step             int64 scalar, the number of steps taken
    rng.key                int64 scalar, the key of every random draw the segment makes

Randomness is counter-based so that a segment replays from its start state alone:

* data order: epoch ``e`` is ``randperm(N)`` from a CPU generator seeded with
  ``derive_seed(spec.seed, "data", e)``; the batch at step ``t`` is slice
  ``t mod (N // batch_size)`` of epoch ``t // (N // batch_size)``;
* dropout (any in-model randomness): before step ``t`` the global generators are
  seeded with ``derive_seed(rng.key, "step", t)`` inside ``torch.random.fork_rng``,
  so nothing leaks in from, or out to, the caller's RNG.

``run_segment`` never mutates its input state and returns tensors that nothing
else holds, so a background writer may hash the returned state while the next
segment trains.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import platform
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from eth_utils import keccak
from torch import nn

from greenproof.spec import JobSpec, JobSpecError
from greenproof.tasks import TASKS

log = logging.getLogger(__name__)

# cuBLAS reads this when the CUDA context is created: set it before anything touches CUDA.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

TrainState = dict[str, torch.Tensor]
STEP_KEY = "train.step"
RNG_KEY = "rng.key"
Progress = Callable[[int, float], None]  # (steps done in total, loss of the last step)


class SegmentError(ValueError):
    """A state that does not fit the segment asked for (wrong step counter, missing tensors)."""


@dataclass
class SegmentResult:
    state: TrainState
    losses: list[float]
    steps: int


# ---------------------------------------------------------------------------- device & determinism


def select_device(prefer: str | torch.device | None = None) -> torch.device:
    """CUDA when present (or asked for and present), else CPU; ``prefer="cpu"`` forces CPU."""
    if prefer is not None and str(prefer) not in ("auto", ""):
        dev = torch.device(prefer)
        if dev.type == "cuda" and not torch.cuda.is_available():
            log.warning("CUDA requested but not available; falling back to CPU")
            return torch.device("cpu")
        if dev.type not in ("cpu", "cuda"):
            raise ValueError(f"unsupported device {prefer!r} (use cpu or cuda[:N])")
        return dev
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def configure_determinism(device: torch.device | str) -> None:
    """Deterministic kernels everywhere; no TF32; cuDNN without autotuning."""
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def effective_precision(spec: JobSpec, device: torch.device) -> str:
    """``bf16`` only on CUDA; a bf16 spec on CPU computes in fp32 (see greenproof.spec)."""
    return "bf16" if spec.precision == "bf16" and device.type == "cuda" else "fp32"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def determinism_info(spec: JobSpec, device: torch.device | str) -> dict[str, object]:
    """What decides the bits of a replay: device kind and architecture, torch, precision, flags.

    On CPU the intra-op thread count is included: 1 and 2 threads give
    different bits for the cnn and gpt families (docs/engine.md, "Threads").
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        major, minor = torch.cuda.get_device_capability(dev)
        arch = f"{torch.cuda.get_device_name(dev)}|sm_{major}{minor}"
        backend = f"cuda {torch.version.cuda}|cudnn {torch.backends.cudnn.version()}"
    else:
        arch = f"{_cpu_model()}|{platform.machine()}|{torch.backends.cpu.get_cpu_capability()}"
        backend = f"cpu|threads {torch.get_num_threads()}"
    return {
        "device": dev.type,
        "arch": arch,
        "backend": backend,
        "torch": torch.__version__,
        "precision": effective_precision(spec, dev),
        "flags": "deterministic_algorithms,cudnn.deterministic,no_benchmark,no_tf32,cublas:4096:8",
    }


def determinism_class(spec: JobSpec, device: torch.device | str) -> bytes:
    """keccak256 of the canonical JSON of :func:`determinism_info` (docs/protocol.md §3)."""
    info = determinism_info(spec, device)
    return keccak(json.dumps(info, sort_keys=True, separators=(",", ":")).encode())


# ---------------------------------------------------------------------------- seeds, data order, lr


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from a tuple of parts (stable across machines and Python runs)."""
    digest = hashlib.sha256(repr(("greenproof",) + parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@functools.lru_cache(maxsize=8)
def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The permutation of the ``n`` examples used in ``epoch`` (a function of seed and epoch only)."""
    g = torch.Generator().manual_seed(derive_seed(seed, "data", epoch))
    return torch.randperm(n, generator=g)


def batch_indices(spec: JobSpec, n: int, step: int) -> torch.Tensor:
    """Example indices of the batch at ``step``: computable from ``step`` alone."""
    per_epoch = n // spec.batch_size
    if per_epoch == 0:
        raise JobSpecError(f"batch_size ({spec.batch_size}) exceeds the dataset's {n} examples")
    epoch, i = divmod(step, per_epoch)
    return epoch_order(spec.seed, epoch, n)[i * spec.batch_size : (i + 1) * spec.batch_size]


def lr_at(spec: JobSpec, step: int) -> float:
    """Learning rate at ``step``: linear warm-up, then the schedule's decay."""
    base, s = spec.optimizer.lr, spec.schedule
    if step < s.warmup_steps:
        return base * (step + 1) / s.warmup_steps
    if s.name == "constant":
        return base
    progress = (step - s.warmup_steps) / max(1, spec.total_steps - s.warmup_steps)
    floor = base * s.min_lr_ratio
    if s.name == "cosine":
        return floor + 0.5 * (base - floor) * (1.0 + math.cos(math.pi * progress))
    return base - (base - floor) * progress  # linear


# ---------------------------------------------------------------------------- state <-> model/optimizer


def _rng_devices(device: torch.device) -> list[int]:
    return [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []


def build_model(spec: JobSpec, device: torch.device) -> nn.Module:
    """The family's model on ``device`` with the spec's seeded initialisation."""
    task = TASKS[spec.task]
    data = spec.load_data()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(spec.seed, "init"))
        try:
            model = task.build(spec.family_config, data)  # initialised on CPU: same bits everywhere
        except ValueError as e:
            raise JobSpecError(f"task {spec.task!r} cannot build its model: {e}") from None
    return model.to(device)


def build_optimizer(spec: JobSpec, model: nn.Module) -> tuple[torch.optim.Optimizer, list[str]]:
    """The optimizer (weight decay on matrices only) and its parameters' names in state order."""
    o = spec.optimizer
    named = list(model.named_parameters())
    groups = [
        {"params": [p for _, p in named if p.dim() >= 2], "weight_decay": o.weight_decay},
        {"params": [p for _, p in named if p.dim() < 2], "weight_decay": 0.0},
    ]
    names = [n for n, p in named if p.dim() >= 2] + [n for n, p in named if p.dim() < 2]
    groups = [g for g in groups if g["params"]]
    if o.name == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=o.betas, eps=o.eps)
    else:
        opt = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum)
    return opt, names


def _initial_slots(spec: JobSpec, p: torch.Tensor) -> dict[str, torch.Tensor]:
    """Optimizer state as torch creates it before the first step (identical arithmetic)."""
    if spec.optimizer.name == "adamw":
        return {
            "step": torch.tensor(0.0, dtype=torch.float32),
            "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
            "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
        }
    if spec.optimizer.momentum:
        return {"momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format)}
    return {}


def init_state(spec: JobSpec, device: torch.device | str | None = None) -> TrainState:
    """The seeded state at boundary 0 (same bits on every device; tensors on ``device``)."""
    dev = select_device(device)
    model = build_model(spec, torch.device("cpu"))
    _opt, names = build_optimizer(spec, model)
    params = dict(model.named_parameters())
    state: TrainState = {f"model.{n}": t.detach() for n, t in model.state_dict().items()}
    for name in names:
        for slot, t in _initial_slots(spec, params[name].detach()).items():
            state[f"optim.{name}.{slot}"] = t
    state[STEP_KEY] = torch.tensor(0, dtype=torch.int64)
    state[RNG_KEY] = torch.tensor(derive_seed(spec.seed, "rng"), dtype=torch.int64)
    return {k: v.to(dev) for k, v in state.items()} if dev.type != "cpu" else state


def _materialize(
    spec: JobSpec, state: TrainState, device: torch.device
) -> tuple[nn.Module, torch.optim.Optimizer, list[str]]:
    """Model and optimizer holding private copies of ``state`` (which stays untouched)."""
    model = build_model(spec, device)
    expected = {f"model.{n}" for n in model.state_dict()}
    missing = sorted(expected - state.keys())
    if missing:
        raise SegmentError(f"state lacks model tensors {missing[:5]} (wrong task or spec?)")
    model.load_state_dict({n: state[f"model.{n}"] for n in model.state_dict()})  # copies
    opt, names = build_optimizer(spec, model)
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for i, name in enumerate(names):
        prefix = f"optim.{name}."
        slots = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        if slots:
            opt_state[i] = {
                slot: (t.clone() if slot == "step" else t.to(device, copy=True)) for slot, t in slots.items()
            }
    opt.load_state_dict({"state": opt_state, "param_groups": opt.state_dict()["param_groups"]})
    return model, opt, names


def _export(
    model: nn.Module, opt: torch.optim.Optimizer, names: list[str], step: int, rng_key: torch.Tensor
) -> TrainState:
    state: TrainState = {f"model.{n}": t.detach() for n, t in model.state_dict().items()}
    for i, slots in opt.state_dict()["state"].items():
        for slot, t in slots.items():
            if isinstance(t, torch.Tensor):
                state[f"optim.{names[i]}.{slot}"] = t
    state[STEP_KEY] = torch.tensor(step, dtype=torch.int64)
    state[RNG_KEY] = rng_key.clone()
    return state


# ---------------------------------------------------------------------------- the training segment


def run_segment(
    spec: JobSpec,
    state: TrainState,
    k: int,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
    progress_loss: bool = True,
) -> SegmentResult:
    """Train steps ``k*segment_steps … (k+1)*segment_steps - 1`` from ``state`` (the start of segment k).

    The step loop never synchronises with the device on its own: the per-step losses are
    kept on the device and copied to the host once, after the last step. ``progress``,
    when given, is called after every step with the loss (``loss.item()``, a host sync)
    or, with ``progress_loss=False``, with NaN (no sync: a bar that does not show the loss).
    """
    dev = select_device(device)
    configure_determinism(dev)
    if not 0 <= k < spec.num_segments:
        raise SegmentError(f"segment {k} outside 0..{spec.num_segments - 1}")
    first, last = k * spec.segment_steps, (k + 1) * spec.segment_steps
    if STEP_KEY not in state or RNG_KEY not in state:
        raise SegmentError(f"state lacks {STEP_KEY!r} or {RNG_KEY!r}")
    if int(state[STEP_KEY]) != first:
        raise SegmentError(f"segment {k} starts at step {first} but the state is at step {int(state[STEP_KEY])}")

    task, cfg, data = TASKS[spec.task], spec.family_config, spec.load_data()
    model, opt, names = _materialize(spec, state, dev)
    n = task.num_examples(cfg, data)
    rng_key = int(state[RNG_KEY])
    autocast: AbstractContextManager = (
        torch.autocast("cuda", dtype=torch.bfloat16) if effective_precision(spec, dev) == "bf16" else nullcontext()
    )
    # Per-step losses stay on the device and come to the host once, at the end of the
    # segment: no host sync in the step loop unless a progress callback asks for the loss.
    step_losses: list[torch.Tensor] = []
    model.train()
    with torch.random.fork_rng(devices=_rng_devices(dev)):
        for step in range(first, last):
            torch.manual_seed(derive_seed(rng_key, "step", step))  # dropout for this step
            x, y = task.batch(cfg, data, batch_indices(spec, n, step))
            if dev.type == "cuda":  # pinned, so the copies below are truly asynchronous
                x, y = x.pin_memory(), y.pin_memory()
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            for group in opt.param_groups:
                group["lr"] = lr_at(spec, step)
            with autocast:
                loss = task.loss(model, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if spec.optimizer.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), spec.optimizer.grad_clip)
            opt.step()
            step_losses.append(loss.detach())
            if progress is not None:
                progress(step + 1, loss.item() if progress_loss else math.nan)
    # the exact values ``loss.item()`` gives, step by step (same dtype, one copy)
    losses: list[float] = torch.stack(step_losses).cpu().tolist() if step_losses else []
    return SegmentResult(state=_export(model, opt, names, last, state[RNG_KEY]), losses=losses, steps=last - first)


def param_rel_l2(a: TrainState, b: TrainState) -> float:
    """Relative L2 distance between the model parameters of two states (cross-class replay)."""
    keys = sorted(k for k in a if k.startswith("model.") and a[k].is_floating_point())
    if keys != sorted(k for k in b if k.startswith("model.") and b[k].is_floating_point()):
        raise SegmentError("states have different model tensors")
    num = sum(float((a[k].double().cpu() - b[k].double().cpu()).pow(2).sum()) for k in keys)
    den = sum(float(b[k].double().cpu().pow(2).sum()) for k in keys)
    return math.sqrt(num) / max(math.sqrt(den), 1e-30)
