"""A whole training run: segments, boundary hashes, checkpoints, energy, commitment.

``train_run`` is the one loop over a run's segments in the repository: the worker,
``greenproof train``, the benches and the adversary simulations
(:mod:`greenproof.adversaries.simulate`) all train through it, and differ only by
the hooks and the checkpoint sink they hand it. It trains segment after segment
with :func:`greenproof.engine.run_segment`. At every boundary ``k`` it reads the
energy meter (cumulative millijoules) and hands the state to a background
:class:`CheckpointWriter` (bounded queue) that hashes and keeps it in a
:class:`CheckpointSink` (the durable :class:`~greenproof.store.ArtifactStore`, or
:class:`MemoryCheckpoints` for simulations), so the training thread never waits
for hashing or disk unless the writer falls two boundaries behind.

Hooks (typed below):

* ``segment_hook(spec, state, k, run_segment) -> SegmentResult`` trains segment
  ``k`` in place of the plain ``run_segment(spec, state, k)``: the worker checks
  its deadline and throughput there, a test or an adversary can alter the result;
* ``on_boundary(k, state_hash, energy_mj, work_digest, move)`` is called from the
  calling thread, in boundary order, once boundary ``k``'s checkpoint is kept: a
  worker journals it and can resume after a crash from the last reported boundary.

Movement (docs/protocol.md §3.7, :mod:`greenproof.movement`): boundary ``k``'s
``move_k`` is the cumulative fixed-point movement ``move_{k-1} + d_k``,
``d_k = fixed(dist(state_{k-1}, state_k))`` under the job's metric (weights from
``init_state(spec)``), ``move_0 = 0``. The writer thread computes ``d_k`` from the
same CPU copies it hashes, keeping the previous boundary's copy: the training
thread does no extra work and no extra device synchronisation for it.

Work digests (docs/protocol.md §3, docs/court.md): boundary ``k``'s ``w_k`` is
:func:`greenproof.merkle.work_digest` of the per-step losses of the segment that
ends there, exactly as ``run_segment`` recorded them (the float32 value of each
step's loss), so a verifier's replay in the same determinism class reproduces it
bit for bit; ``w_0`` is 32 zero bytes. The leaf of boundary ``k`` commits to
``seal(job_id, k, w_k)``. Digests and losses are the provider's proof of work: a
worker keeps them to itself until the job is final (:mod:`worker.records`).

States handed to the writer are never mutated afterwards: ``run_segment`` copies
its input into a fresh model and optimizer, so the writer reads them while the
next segment trains without any extra copy on CPU. On CUDA the training thread
enqueues non-blocking copies into pinned host buffers on a side stream and records
an event (:class:`HostStager`); the writer waits on the event, then hashes and writes,
while the next segment trains: the training thread never waits for the device at a
boundary.

Sparse checkpoints: with ``keep`` the writer writes only the boundaries ``keep(k)``
selects and hashes the others (every boundary is still hashed, measured and reported).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch

from greenproof.engine import (
    Progress,
    SegmentResult,
    TrainState,
    determinism_class,
    init_state,
    run_segment,
    select_device,
)
from greenproof.merkle import ZERO32, MerkleTree, commitment_tree, seal, work_digest
from greenproof.movement import Metric
from greenproof.spec import JobSpec
from greenproof.statehash import state_hash

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- hook types


class RunSegment(Protocol):
    """``run_segment`` bound to the run's device and progress bar: what a segment
    hook calls to train segment ``k`` (possibly of a modified spec) from ``state``."""

    def __call__(self, spec: JobSpec, state: TrainState, k: int, /) -> SegmentResult: ...


class SegmentHook(Protocol):
    """Trains segment ``k`` from ``state`` in place of ``run_segment(spec, state, k)``.

    It may refuse to go on (raise: the run stops, boundaries up to ``k`` stay
    reported) or return another result (tests, :mod:`greenproof.adversaries`);
    ``Cheat.train_segment`` is one.
    """

    def __call__(self, spec: JobSpec, state: TrainState, k: int, run_segment: RunSegment, /) -> SegmentResult: ...


class OnBoundary(Protocol):
    """Boundary ``k`` is kept: its state hash, the cumulative energy (mJ) measured up
    to it, its work digest ``w_k`` (32 zero bytes at boundary 0) and the cumulative
    movement ``move_k`` (0 at boundary 0)."""

    def __call__(self, k: int, state_hash: bytes, energy_mj: int, work_digest: bytes, move: int, /) -> None: ...


class BoundaryReport(NamedTuple):
    """What ``on_boundary`` reported of one boundary (a resumed run's ``history``)."""

    state_hash: bytes
    energy_mj: int
    work_digest: bytes
    move: int


class CheckpointSink(Protocol):
    """Where the writer keeps boundary states: :class:`~greenproof.store.ArtifactStore`
    (durable files, what a worker serves) or :class:`MemoryCheckpoints`."""

    def put(self, state: TrainState) -> bytes:
        """Keep ``state`` (a no-op if already kept) and return its state hash."""
        ...


class MemoryCheckpoints:
    """Boundary states kept in memory by state hash (simulations and tests: nothing durable)."""

    def __init__(self) -> None:
        self.states: dict[bytes, TrainState] = {}

    def put(self, state: TrainState) -> bytes:
        h = state_hash(state)
        self.states.setdefault(h, state)
        return h

    def has(self, h: bytes) -> bool:
        return h in self.states

    def get(self, h: bytes) -> TrainState:
        return self.states[h]


class Meter(Protocol):
    source: str

    def start(self) -> None: ...
    def read_mj(self) -> int: ...
    def close(self) -> None: ...


class ZeroMeter:
    """A meter that measures nothing (used only when greenproof.energy is unavailable)."""

    source = "none"

    def start(self) -> None: ...
    def read_mj(self) -> int:
        return 0

    def close(self) -> None: ...


def default_meter(device: torch.device) -> Meter:
    try:
        from greenproof.energy import make_meter
    except ImportError:
        log.warning("greenproof.energy unavailable: energy is not measured")
        return ZeroMeter()
    return make_meter(device)


# ---------------------------------------------------------------------------- background writer


class Kept(NamedTuple):
    """A boundary the writer kept: its index, state hash and the movement ``d_k`` of the
    segment that ends there (None for the first boundary submitted, or without a metric)."""

    k: int
    state_hash: bytes
    movement: int | None


class HostCopy(NamedTuple):
    """A boundary state on its way to the host: pinned CPU tensors being filled by
    non-blocking copies on a side stream, and the CUDA event recorded after them."""

    state: TrainState
    ready: Any  # torch.cuda.Event

    def wait(self) -> TrainState:
        self.ready.synchronize()
        return self.state


def _is_cuda(state: TrainState) -> bool:
    return any(t.device.type == "cuda" for t in state.values())


class HostStager:
    """Copies CUDA boundary states to pinned host memory off the training thread's critical path.

    :meth:`stage` makes a side stream wait for the work queued so far on the current
    stream (the segment that produced the state), enqueues ``non_blocking`` copies of
    every tensor into freshly allocated pinned buffers (torch's caching host allocator
    recycles them once the writer has dropped them) and records an event; it returns at
    once, without synchronising the host with the device. ``record_stream`` keeps the
    source tensors' memory from being reused before the copies finish, even if the
    training thread drops them. The writer thread waits on the event (:class:`HostCopy`)
    before it hashes and writes. Only built for a CUDA device (``torch.cuda.is_available()``).
    """

    def __init__(self, device: torch.device):
        if device.type != "cuda" or not torch.cuda.is_available():
            raise ValueError(f"HostStager needs a CUDA device, got {device}")
        self.device = device
        self.stream = torch.cuda.Stream(device=device)

    def stage(self, state: TrainState) -> HostCopy:
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        host: TrainState = {}
        with torch.cuda.stream(self.stream):
            for name, t in state.items():
                t = t.detach()
                if t.device.type != "cuda":  # a CPU scalar (e.g. an optimizer step): copy as is
                    host[name] = t.clone()
                    continue
                buf = torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=True)
                buf.copy_(t, non_blocking=True)
                t.record_stream(self.stream)
                host[name] = buf
            ready = torch.cuda.Event()
            ready.record(self.stream)
        return HostCopy(host, ready)


def stage_to_host(state: TrainState, stager: HostStager | None) -> TrainState | HostCopy:
    """What the training thread hands the writer: on CUDA (with a stager) a :class:`HostCopy`
    in flight, otherwise ``state`` itself (CPU: today's path, no copy at all)."""
    if stager is not None and _is_cuda(state):
        return stager.stage(state)
    return state


Keep = Callable[[int], bool]
"""``keep(k)``: whether boundary ``k``'s state is written to the sink (its hash is always computed)."""


class CheckpointWriter:
    """Hashes and keeps boundary states (``store.put``) on one background thread, in submission order.

    With a ``metric`` it also measures each boundary's movement from the previous
    submitted one (:class:`Kept`), on the CPU copies it hashes. ``submit`` blocks
    when ``maxsize`` states are waiting (back-pressure bounds memory). A failure in
    the writer is re-raised in the caller at the next ``submit``/``done``/``close``
    so a run never commits to a checkpoint that was not written.

    ``keep`` (default: every boundary) says which boundaries are written: the others are
    only hashed (sparse checkpoints, docs/worker.md). A submitted state may be a
    :class:`HostCopy` (CUDA): the writer waits on its event before reading it.
    """

    def __init__(self, store: CheckpointSink, maxsize: int = 2, metric: Metric | None = None,
                 keep: Keep | None = None):
        self.store = store
        self.metric = metric
        self.keep = keep
        self._todo: queue.Queue[tuple[int, TrainState | HostCopy] | None] = queue.Queue(maxsize)
        self._done: queue.Queue[Kept] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="greenproof-checkpoints", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        previous: TrainState | None = None
        while (item := self._todo.get()) is not None:
            k, state = item
            try:
                if isinstance(state, HostCopy):
                    state = state.wait()
                cpu = {n: t.detach().cpu() for n, t in state.items()}
                h = self.store.put(cpu) if self.keep is None or self.keep(k) else state_hash(cpu)
                moved = None
                if self.metric is not None and previous is not None:
                    moved = self.metric.fixed(previous, cpu)
                previous = cpu
                self._done.put(Kept(k, h, moved))
            except BaseException as e:  # surfaced in the training thread
                log.exception("checkpoint writer failed at boundary %d", k)
                self._error = e
                # keep draining so a blocked submit() returns and sees the error
                while self._todo.get() is not None:
                    pass
                return

    def _check(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"checkpoint writer failed: {self._error}") from self._error

    def submit(self, k: int, state: TrainState | HostCopy) -> None:
        self._check()
        self._todo.put((k, state))

    def done(self, check: bool = True) -> list[Kept]:
        """Boundaries stored since the last call, in submission order (re-raises a writer failure)."""
        out: list[Kept] = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                break
        if check:
            self._check()
        return out

    def close(self) -> None:
        """Finish the queued writes, stop the thread, re-raise a writer failure."""
        if self._thread.is_alive():
            self._todo.put(None)
            self._thread.join()
        self._check()


# ---------------------------------------------------------------------------- run record


@dataclass
class RunRecord:
    """A run's commitment data: per boundary its state hash, cumulative energy, work
    digest (``work_digests[0]`` is 32 zero bytes) and cumulative movement
    (``moves[0] = 0``), plus the per-step losses of the segments trained in this
    session (a resumed run's cover only those)."""

    spec_hash: bytes
    state_hashes: list[bytes]
    energies_mj: list[int]
    work_digests: list[bytes]
    moves: list[int]
    losses: list[float]
    device: str
    determinism_class: bytes
    energy_source: str
    wall_s: float = 0.0
    segment_wall_s: list[float] = field(default_factory=list)
    energy_meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_segments(self) -> int:
        return len(self.state_hashes) - 1

    @property
    def final_state_hash(self) -> bytes:
        return self.state_hashes[-1]

    @property
    def energy_mj(self) -> int:
        return self.energies_mj[-1]

    @property
    def move_total(self) -> int:
        """``move_N``, what ``commit_result`` posts with the root."""
        return self.moves[-1]

    def seals(self, job_id: int) -> list[bytes]:
        """``seal(job_id, k, w_k)`` of every boundary, in order."""
        return [seal(job_id, k, w) for k, w in enumerate(self.work_digests)]

    def tree(self, job_id: int) -> MerkleTree:
        return commitment_tree(job_id, self.state_hashes, self.energies_mj, self.moves, self.seals(job_id))

    def root(self, job_id: int) -> bytes:
        return self.tree(job_id).root

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["spec_hash"] = self.spec_hash.hex()
        d["determinism_class"] = self.determinism_class.hex()
        d["state_hashes"] = [h.hex() for h in self.state_hashes]
        d["work_digests"] = [w.hex() for w in self.work_digests]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunRecord:
        names = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in names}  # run.json may carry extra keys (job_id, root)
        d["spec_hash"] = bytes.fromhex(d["spec_hash"])
        d["determinism_class"] = bytes.fromhex(d["determinism_class"])
        d["state_hashes"] = [bytes.fromhex(h) for h in d["state_hashes"]]
        d["work_digests"] = [bytes.fromhex(w) for w in d["work_digests"]]
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> RunRecord:
        return cls.from_json(json.loads(Path(path).read_text()))


# ---------------------------------------------------------------------------- the run


def _default_hook(spec: JobSpec, state: TrainState, k: int, run: RunSegment, /) -> SegmentResult:
    return run(spec, state, k)


class _Bar:
    """A rich progress bar: loss (unless ``show_loss`` is off), steps/s, energy."""

    def __init__(self, spec: JobSpec, start_step: int, show_loss: bool = True):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(("loss {task.fields[loss]:.4f}  " if show_loss else "")
                       + "{task.fields[rate]:.1f} steps/s  {task.fields[energy]}"),
            TimeRemainingColumn(),
        )
        self.task = self.progress.add_task(
            f"{spec.task} training", total=spec.total_steps, completed=start_step, loss=float("nan"), rate=0.0, energy="0 J"
        )
        self.t0, self.s0 = time.perf_counter(), start_step
        self.progress.start()

    def step(self, done: int, loss: float) -> None:
        rate = (done - self.s0) / max(time.perf_counter() - self.t0, 1e-9)
        self.progress.update(self.task, completed=done, loss=loss, rate=rate)

    def energy(self, mj: int) -> None:
        self.progress.update(self.task, energy=f"{mj / 1000:.1f} J")

    def close(self) -> None:
        self.progress.stop()


def train_run(
    spec: JobSpec,
    store: CheckpointSink,
    meter: Meter | None = None,
    *,
    device: torch.device | str | None = None,
    start_state: TrainState | None = None,
    start_k: int = 0,
    history: Sequence[BoundaryReport] | None = None,
    on_boundary: OnBoundary | None = None,
    segment_hook: SegmentHook | None = None,
    progress: bool | Progress = True,
    show_loss: bool = True,
    keep: Keep | None = None,
) -> RunRecord:
    """Train segments ``start_k … num_segments-1`` and return the run's commitment data.

    ``store`` keeps every boundary state (see :class:`CheckpointSink`); ``meter``
    is started here and closed at the end (default: the best meter for the
    device). ``segment_hook`` trains each segment (default: plain ``run_segment``)
    and ``on_boundary`` hears of each kept boundary (see the module docstring).
    ``progress``: True draws a progress bar (with the loss unless ``show_loss``
    is False: a worker never shows a job's losses), False nothing, a callable
    gets ``(steps done in total, loss)`` after every step.

    ``keep(k)`` (default: every boundary) says which boundary states the writer puts in
    ``store``; the others are hashed, measured and reported exactly the same, but never
    written (a worker's sparse checkpoints regenerate them on demand by replay,
    :mod:`worker.checkpoints`).

    On a CUDA device each boundary state is copied to pinned host memory with
    non-blocking copies on a side stream (:class:`HostStager`); the writer waits on the
    copy's event, so the training thread goes on to the next segment without waiting for
    the device. On CPU the writer reads the state itself (``run_segment`` never mutates it).

    Resuming needs the state at boundary ``start_k`` (e.g. from the store) and
    ``history``: what ``on_boundary`` reported for boundaries ``0 … start_k``
    (:class:`BoundaryReport`: state hash, cumulative energy, work digest, cumulative
    movement); an empty
    history starts from scratch at boundary 0. ``on_boundary`` is also called
    for boundary ``start_k`` itself.
    """
    dev = select_device(device)
    if not 0 <= start_k <= spec.num_segments:
        raise ValueError(f"start_k {start_k} outside 0..{spec.num_segments}")
    history = [BoundaryReport(*r) for r in history or []]
    if (start_k > 0 or history) and len(history) != start_k + 1:
        raise ValueError(
            f"resuming at boundary {start_k} needs history of boundaries 0..{start_k} "
            f"(got {len(history)} entries)"
        )
    if start_k > 0 and start_state is None:
        raise ValueError(f"resuming at boundary {start_k} needs start_state")
    # A fresh run builds its initial state here, before the meter starts, and so pays the
    # process's warm-up (dataset load, first allocations) off the meter; a resumed run does
    # the same work once, so that its first segment's energy is that segment's own.
    state = init_state(spec, dev)
    metric = Metric({n: t.cpu() for n, t in state.items()})  # weights from the seeded initial state
    if start_state is not None:
        state = start_state
    hook = segment_hook or _default_hook
    meter = meter if meter is not None else default_meter(dev)
    done_before = history[:start_k]
    record = RunRecord(
        spec_hash=spec.spec_hash(),
        state_hashes=[r.state_hash for r in done_before],
        energies_mj=[r.energy_mj for r in done_before],
        work_digests=[r.work_digest for r in done_before],
        moves=[r.move for r in done_before],
        losses=[],
        device=str(dev),
        determinism_class=determinism_class(spec, dev),
        energy_source=meter.source,
    )
    start = history[start_k] if history else None
    start_energy_mj = start.energy_mj if start else 0
    start_digest = start.work_digest if start else ZERO32
    energies: dict[int, int] = {start_k: start_energy_mj}
    digests: dict[int, bytes] = {start_k: start_digest}
    moves: dict[int, int] = {start_k: start.move if start else 0}
    bar = _Bar(spec, start_k * spec.segment_steps, show_loss) if progress is True else None
    step_cb = bar.step if bar else (progress if callable(progress) else None)

    # the per-step callback gets the loss (a host sync per step) only if it shows it
    wants_loss = callable(progress) if bar is None else show_loss

    def segment(spec_: JobSpec, state_: TrainState, k_: int) -> SegmentResult:
        return run_segment(spec_, state_, k_, dev, progress=step_cb, progress_loss=wants_loss)

    def report(done: list[Kept]) -> None:
        for k, h, moved in done:
            assert k == len(record.state_hashes), "checkpoint writer reordered boundaries"
            if k != start_k:
                assert moved is not None, "checkpoint writer measured no movement"
                moves[k] = moves[k - 1] + moved
            record.state_hashes.append(h)
            record.energies_mj.append(energies[k])
            record.work_digests.append(digests[k])
            record.moves.append(moves[k])
            log.info("boundary %d: state %s, %d mJ, movement %d", k, h.hex()[:16], energies[k], moves[k])
            if on_boundary is not None:
                on_boundary(k, h, energies[k], digests[k], moves[k])

    stager = HostStager(dev) if dev.type == "cuda" and torch.cuda.is_available() else None
    # on CUDA each queued state is a pinned host copy: one queued (plus the one being written
    # and the writer's previous one, for movement) bounds the pinned memory a run holds
    writer = CheckpointWriter(store, metric=metric, keep=keep, maxsize=1 if stager else 2)
    t0 = time.perf_counter()
    finished = False
    meter.start()
    try:
        writer.submit(start_k, stage_to_host(state, stager))
        for k in range(start_k, spec.num_segments):
            ts = time.perf_counter()
            result = hook(spec, state, k, segment)
            record.segment_wall_s.append(time.perf_counter() - ts)
            energies[k + 1] = max(start_energy_mj + int(meter.read_mj()), energies[k])
            digests[k + 1] = work_digest(result.losses)
            if bar:
                bar.energy(energies[k + 1])
            record.losses.extend(result.losses)
            state = result.state
            writer.submit(k + 1, stage_to_host(state, stager))
            report(writer.done())
        writer.close()
        report(writer.done())
        finished = True
    finally:
        if not finished:  # flush what was queued and report it: a resume starts from there
            with contextlib.suppress(RuntimeError):
                writer.close()
            with contextlib.suppress(Exception):
                report(writer.done(check=False))
        meter.close()
        if bar:
            bar.close()
    if len(record.state_hashes) != spec.num_segments + 1:
        raise RuntimeError(f"run ended with {len(record.state_hashes)} boundaries, expected {spec.num_segments + 1}")
    record.wall_s = time.perf_counter() - t0
    describe = getattr(meter, "describe", None)
    record.energy_meta = describe() if callable(describe) else {"source": record.energy_source}
    return record
