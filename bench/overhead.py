"""The cost of commitments per segment boundary, at real sizes, and training with them
against training without them, per model family.

Families: the three examples (mlp, cnn, gpt) and ``gpt50m``, the gpt example widened
through the job spec's ``model`` to 57 M parameters (8 layers, n_embd 768, 12 heads:
GPT-2 small's width; same byte-level text, batch 16 x 64 tokens), a 0.69 GB state.

Per family, in one process:

* **runs**: training without commitments (``run_segment`` segment after segment: nothing
  hashed, kept or measured) and with them (``train_run`` into an ArtifactStore: the
  background CheckpointWriter hashes, writes and measures movement while the next
  segment trains), interleaved --reps times (which goes first alternates);
* **boundary**: the synchronous cost of one boundary on the trained state, split into
  copy (a memcpy of the state: the CPU stand-in for a GPU's device-to-host copy; the CPU
  writer needs none), hash (BLAKE3), serialize (safetensors bytes), write (the store's
  atomic durable write: temporary file, fsync, rename, fsync of the directory; earlier
  files stay, as a run's do) and movement (the writer's ``d_k``); median of --boundary-reps. ``direct`` (safetensors
  ``save_file`` + fsync, the same bytes without the serialized copy) is for comparison.
  Each part also gets its longest GIL hold (:class:`GilProbe`): on a GPU the training
  thread needs the GIL to launch kernels, so that is the stall a GPU run would see;
* **stall**: what the training thread of the committed run actually lost per boundary:
  its segments' extra wall time over the uncommitted run's plus its time between
  segments (back-pressure in ``submit``), per segment; the final flush (the last
  boundary, waited for once per run) and train_run's set-up are reported apart.

Ratios are to the segment's training time at the default segment length
(``DEFAULT_SEGMENT_STEPS``): that many times the median step (wall time, first step of
each segment excluded: it rebuilds the model). Small families train at the default
length; gpt50m trains --large-segment-steps steps per segment (a CPU step takes
seconds) and its 100-step segment is computed from its measured steps.

The machine is a shared 2-core VM (other test suites run on it): every part is timed in
the same run so ratios stay meaningful; wall times swing by +-15 % between identical runs.

Usage: python bench/overhead.py [--threads 1] [--reps 3] [--families mlp,cnn,gpt,gpt50m]
Figures per family: boundary_cost_ratio_<f> (synchronous boundary / 100-step segment; target
<= 0.02 for gpt50m), boundary_stall_ratio_<f> (measured stall / 100-step segment),
overhead_wall_ratio_<f> and overhead_ratio_<f> (committed / uncommitted run, wall and process
CPU time, at the bench's segment length), gil_max_hold_s_<f>; throughputs on the largest state: hash_gbps,
memcpy_gbps, serialize_gbps, write_gbps, movement_gbps, direct_write_gbps; gpt50m_target_met.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hashing import write_result  # noqa: E402

from greenproof.engine import TrainState, init_state, run_segment  # noqa: E402
from greenproof.movement import Metric  # noqa: E402
from greenproof.run import Meter, RunRecord, ZeroMeter, train_run  # noqa: E402
from greenproof.spec import DEFAULT_SEGMENT_STEPS, JobSpec, load_spec  # noqa: E402
from greenproof.statehash import state_hash  # noqa: E402
from greenproof.store import ArtifactStore, checkpoint_bytes  # noqa: E402
from greenproof.tasks import TASKS  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "greenproof" / "examples"
CPU = torch.device("cpu")
SMALL = ("mlp", "cnn", "gpt")
LARGE = "gpt50m"
TARGET = 0.02  # issue 14: commitment cost per boundary <= 2 % of the segment (>= 50 M family)
WIDE_GPT = {"block_size": 64, "n_layer": 8, "n_head": 12, "n_embd": 768, "dropout": 0.1}
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {LARGE: ("gpt", WIDE_GPT)}
"""Bench families that are an example with other model hyper-parameters."""
PARTS = ("copy", "hash", "serialize", "write", "movement")
SHARED_NOTE = "shared 2-core VM: other test suites ran concurrently; no GPU"


def bench_spec(family: str, segment_steps: int, segments: int) -> JobSpec:
    """The family's example spec (``gpt50m``: the gpt example widened) with the given segments."""
    example, model = VARIANTS.get(family, (family, None))
    base = load_spec(EXAMPLES / f"{example}.yaml")
    update: dict[str, Any] = {"segment_steps": segment_steps, "total_steps": segment_steps * segments}
    if model is not None:  # validated (and defaults filled) by the family's own config model
        update["model"] = TASKS[base.task].Config.model_validate(model).model_dump(mode="json")
    return base.model_copy(update=update)


def state_bytes(state: TrainState) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


# ---------------------------------------------------------------------------- the two runs


@dataclass
class RunTimes:
    """One run's timings (wall seconds unless named cpu)."""

    wall_s: float = 0.0
    cpu_s: float = 0.0  # process CPU time: every thread, the writer's included
    segments_s: list[float] = field(default_factory=list)  # each segment's training, wall
    steps_s: list[float] = field(default_factory=list)  # step intervals, first of a segment excluded
    setup_s: float = 0.0  # committed run: train_run's set-up before the first segment
    outside_s: float = 0.0  # committed run: training thread between segments (submit back-pressure)
    flush_s: float = 0.0  # committed run: from the last segment's end to its boundary being kept


class StepClock:
    """Step timestamps from the engine's progress callback."""

    def __init__(self) -> None:
        self.marks: list[float] = []
        self.steps: list[float] = []

    def segment_start(self) -> None:
        self.marks = []

    def __call__(self, _done: int, _loss: float) -> None:
        now = time.perf_counter()
        if self.marks:
            self.steps.append(now - self.marks[-1])
        self.marks.append(now)


def plain(spec: JobSpec, device: torch.device = CPU) -> tuple[RunTimes, TrainState]:
    """The run without commitments: ``run_segment`` after ``run_segment``; and its end state."""
    clock, times = StepClock(), RunTimes()
    state = init_state(spec, device)
    t, c = time.perf_counter(), time.process_time()
    for k in range(spec.num_segments):
        clock.segment_start()
        ts = time.perf_counter()
        state = run_segment(spec, state, k, device, progress=clock).state
        times.segments_s.append(time.perf_counter() - ts)
    times.wall_s, times.cpu_s = time.perf_counter() - t, time.process_time() - c
    times.steps_s = clock.steps
    return times, state


def committed(spec: JobSpec, store_dir: str, device: torch.device = CPU,
              meter: Meter | None = None) -> tuple[RunTimes, RunRecord]:
    """``train_run`` with durable checkpoints in ``store_dir``: the training thread's time in
    and out of segments, and the run's record."""
    clock, times = StepClock(), RunTimes()
    marks: list[tuple[float, float]] = []  # (start, end) of every segment
    kept_at: dict[int, float] = {}

    def hook(spec_: JobSpec, state: TrainState, k: int, run: Any, /) -> Any:
        clock.segment_start()
        ts = time.perf_counter()
        result = run(spec_, state, k)
        marks.append((ts, time.perf_counter()))
        return result

    def on_boundary(k: int, *_: Any) -> None:
        kept_at[k] = time.perf_counter()

    t, c = time.perf_counter(), time.process_time()
    record = train_run(spec, ArtifactStore(store_dir), meter if meter is not None else ZeroMeter(), device=device,
                       progress=clock, segment_hook=hook, on_boundary=on_boundary)
    times.wall_s, times.cpu_s = time.perf_counter() - t, time.process_time() - c
    times.segments_s = [e - s for s, e in marks]
    times.steps_s = clock.steps
    times.setup_s = marks[0][0] - t  # initial state, metric weights, writer start: once per run
    times.outside_s = sum(marks[i + 1][0] - marks[i][1] for i in range(len(marks) - 1))
    times.flush_s = kept_at[spec.num_segments] - marks[-1][1]
    return times, record


def run_pair(spec: JobSpec, tmp: str, plain_first: bool) -> tuple[RunTimes, RunTimes, TrainState]:
    """One run without and one with commitments (in the order asked), and the end state."""
    if plain_first:
        p, end = plain(spec)
    with tempfile.TemporaryDirectory(dir=tmp) as d:
        c, _ = committed(spec, d)
    if not plain_first:
        p, end = plain(spec)
    return p, c, end


# ---------------------------------------------------------------------------- one boundary


class GilProbe:
    """The longest stretch another Python thread (waking every millisecond) could not run while
    a part ran: how long the part held the GIL at once, so how long a GPU training thread, which
    needs the GIL to launch every kernel, would have been stalled by the writer."""

    def __init__(self) -> None:
        self.max_gap = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        last = time.perf_counter()
        while not self._stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            self.max_gap, last = max(self.max_gap, now - last), now

    def __enter__(self) -> GilProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class PartTimer:
    """Wall and process-CPU seconds of named parts, and their longest GIL hold, over repetitions."""

    def __init__(self) -> None:
        self.wall: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}
        self.gil: dict[str, list[float]] = {}

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        with GilProbe() as probe:
            t, c = time.perf_counter(), time.process_time()
            out = fn()
            wall, cpu = time.perf_counter() - t, time.process_time() - c
        self.wall.setdefault(name, []).append(wall)
        self.cpu.setdefault(name, []).append(cpu)
        self.gil.setdefault(name, []).append(probe.max_gap)
        return out

    def median(self, name: str, cpu: bool = False) -> float:
        return statistics.median((self.cpu if cpu else self.wall)[name])

    def gil_max(self, name: str) -> float:
        return max(self.gil[name])


def durable_save_file(state: TrainState, path: Path) -> None:
    """safetensors ``save_file`` (written from the tensors' memory, no serialized copy) + fsync."""
    save_file(state, str(path))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def boundary_cost(state: TrainState, previous: TrainState, metric: Metric, reps: int, tmp: str) -> PartTimer:
    """Each part of one boundary's work, done synchronously on ``state``, ``reps`` times."""
    pairs = [(np.empty_like(t.numpy()), t.numpy()) for t in state.values()]
    for out, src in pairs:  # pages touched: a warm copy, like a pinned buffer reused every boundary
        np.copyto(out, src)
    timer = PartTimer()
    with tempfile.TemporaryDirectory(dir=tmp) as d:
        store = ArtifactStore(d)
        for i in range(reps):
            timer("copy", lambda: [np.copyto(out, src) for out, src in pairs])
            timer("hash", lambda: state_hash(state))
            raw = timer("serialize", lambda: checkpoint_bytes(state))
            name = i.to_bytes(32, "big")  # a distinct artifact per repetition
            timer("write", lambda raw=raw, name=name: store.put_bytes(name, raw))
            del raw
            timer("movement", lambda: metric.fixed(previous, state))
            timer("direct", lambda i=i: durable_save_file(state, Path(d) / f"direct{i}"))
            # files stay until the end, as a run's checkpoints do: a disk that is fast only when it
            # rewrites blocks just freed (thin-provisioned VM disks) is not measured at that speed
    return timer


# ---------------------------------------------------------------------------- per family


def measure(family: str, segment_steps: int, segments: int, reps: int, boundary_reps: int,
            tmp: str) -> dict[str, Any]:
    spec = bench_spec(family, segment_steps, segments)
    if family in SMALL:
        plain(bench_spec(family, 2, 1))  # warm caches (dataset, allocator)
    runs: list[tuple[RunTimes, RunTimes]] = []
    end = None
    for i in range(reps):  # alternate which goes first, so a warm-up or a load drift hits both
        p, c, end = run_pair(spec, tmp, plain_first=bool(i % 2))
        runs.append((p, c))
    assert end is not None
    initial = init_state(spec, CPU)
    timer = boundary_cost(end, initial, Metric(initial), boundary_reps, tmp)
    nbytes = state_bytes(end)
    params = sum(t.numel() for n, t in initial.items() if n.startswith("model."))

    step_s = statistics.median(s for p, _ in runs for s in p.steps_s)
    step_committed_s = statistics.median(s for _, c in runs for s in c.steps_s)
    segment_default_s = DEFAULT_SEGMENT_STEPS * step_s
    parts = {name: timer.median(name) for name in PARTS}
    boundary_s = sum(parts.values())
    # the training thread's loss per boundary: waiting in submit (measured to the ms) plus the
    # writer's contention for the cores: its segments' extra time over the uncommitted run's
    # (a difference of two runs, as noisy as the machine: noise_s is the plain runs' spread)
    blocked_s = statistics.median(c.outside_s for _, c in runs) / segments
    contention = [(sum(c.segments_s) - sum(p.segments_s)) / segments for p, c in runs]
    plain_per_segment = [sum(p.segments_s) / segments for p, _ in runs]
    stall_s = blocked_s + statistics.median(contention)
    best_p = min(runs, key=lambda r: r[0].wall_s)[0]
    best_c = min(runs, key=lambda r: r[1].wall_s)[1]
    return {
        "family": family, "params": params, "state_bytes": nbytes, "state_mib": nbytes / 2**20,
        "segment_steps": segment_steps, "segments": segments, "reps": reps,
        "plain_wall_s": best_p.wall_s, "committed_wall_s": best_c.wall_s,
        "plain_cpu_s": min(p.cpu_s for p, _ in runs), "committed_cpu_s": min(c.cpu_s for _, c in runs),
        "wall_ratio": best_c.wall_s / best_p.wall_s,
        "cpu_ratio": min(c.cpu_s for _, c in runs) / min(p.cpu_s for p, _ in runs),
        "step_s": step_s, "step_committed_s": step_committed_s, "step_slowdown": step_committed_s / step_s,
        "default_segment_steps": DEFAULT_SEGMENT_STEPS, "segment_default_s": segment_default_s,
        **{f"{name}_s": v for name, v in parts.items()},
        **{f"{name}_cpu_s": timer.median(name, cpu=True) for name in PARTS},
        "direct_write_s": timer.median("direct"),
        **{f"{name}_gil_max_s": timer.gil_max(name) for name in (*PARTS, "direct")},
        "gil_max_s": max(timer.gil_max(name) for name in PARTS),
        "parts_runs_s": timer.wall,
        "boundary_s": boundary_s, "boundary_ratio": boundary_s / segment_default_s,
        "writer_cpu_s": sum(timer.median(name, cpu=True) for name in PARTS if name != "copy"),
        "blocked_s": blocked_s, "contention_s": statistics.median(contention), "contention_runs_s": contention,
        "noise_s": max(plain_per_segment) - min(plain_per_segment),
        "stall_s": stall_s, "stall_ratio": stall_s / segment_default_s,
        "setup_s": statistics.median(c.setup_s for _, c in runs),
        "final_flush_s": statistics.median(c.flush_s for _, c in runs),
    }


def throughputs(row: dict[str, Any]) -> dict[str, float]:
    """GB/s of each part on one state (10^9 bytes per second)."""
    b = row["state_bytes"] / 1e9
    return {"hash_gbps": b / row["hash_s"], "memcpy_gbps": b / row["copy_s"],
            "serialize_gbps": b / row["serialize_s"], "write_gbps": b / row["write_s"],
            "movement_gbps": b / row["movement_s"], "direct_write_gbps": b / row["direct_write_s"]}


def print_tables(rows: list[dict[str, Any]]) -> None:
    print(f"{'family':<8}{'params':>8}{'state MiB':>10}{'steps x n':>10}{'plain s':>9}{'commit s':>9}"
          f"{'wall ratio':>11}{'cpu ratio':>10}{'step slowdown':>14}{'final flush s':>14}")
    for r in rows:
        print(f"{r['family']:<8}{r['params'] / 1e6:>7.2f}M{r['state_mib']:>10.1f}"
              f"{r['segment_steps']:>6} x {r['segments']}{r['plain_wall_s']:>9.2f}{r['committed_wall_s']:>9.2f}"
              f"{r['wall_ratio']:>11.3f}{r['cpu_ratio']:>10.3f}{r['step_slowdown']:>14.3f}{r['final_flush_s']:>14.3f}")
    print()
    head = "".join(f"{p + ' ms':>13}" for p in PARTS)
    print(f"{'family':<8}{head}{'total ms':>10}{'GIL ms':>8}{'blocked ms':>11}{'contention ms':>14}"
          f"{'100-step s':>11}{'cost %':>8}{'stall %':>8}")
    for r in rows:
        cells = "".join(f"{r[p + '_s'] * 1e3:>13.1f}" for p in PARTS)
        noise = f"+-{r['noise_s'] * 1e3:.0f}" if r["reps"] > 1 else "+-?"
        contention = f"{r['contention_s'] * 1e3:.0f} {noise}"
        print(f"{r['family']:<8}{cells}{r['boundary_s'] * 1e3:>10.1f}{r['gil_max_s'] * 1e3:>8.0f}"
              f"{r['blocked_s'] * 1e3:>11.1f}"
              f"{contention:>14}{r['segment_default_s']:>11.2f}"
              f"{100 * r['boundary_ratio']:>8.2f}{100 * r['stall_ratio']:>8.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (the CPU determinism class)")
    ap.add_argument("--families", default=",".join((*SMALL, LARGE)))
    ap.add_argument("--reps", type=int, default=3, help="run pairs per small family")
    ap.add_argument("--segment-steps", type=int, default=DEFAULT_SEGMENT_STEPS, help="small families")
    ap.add_argument("--segments", type=int, default=4, help="small families")
    ap.add_argument("--large-segment-steps", type=int, default=2)
    ap.add_argument("--large-segments", type=int, default=2)
    ap.add_argument("--large-reps", type=int, default=2)
    ap.add_argument("--boundary-reps", type=int, default=5)
    ap.add_argument("--tmp", default=tempfile.gettempdir(), help="where checkpoints are written")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rows = []
    for family in args.families.split(","):
        large = family == LARGE
        rows.append(measure(
            family,
            args.large_segment_steps if large else args.segment_steps,
            args.large_segments if large else args.segments,
            args.large_reps if large else args.reps,
            args.boundary_reps, args.tmp,
        ))
    figures: dict[str, float] = {}
    for r in rows:
        f = r["family"]
        figures[f"boundary_cost_ratio_{f}"] = r["boundary_ratio"]
        figures[f"boundary_stall_ratio_{f}"] = r["stall_ratio"]
        figures[f"boundary_s_{f}"] = r["boundary_s"]
        figures[f"segment_default_s_{f}"] = r["segment_default_s"]
        figures[f"overhead_wall_ratio_{f}"] = r["wall_ratio"]
        figures[f"overhead_ratio_{f}"] = r["cpu_ratio"]
        figures[f"gil_max_hold_s_{f}"] = r["gil_max_s"]
    figures.update(throughputs(max(rows, key=lambda r: r["state_bytes"])))
    big = next((r for r in rows if r["family"] == LARGE), None)
    print_tables(rows)
    if big is not None:
        figures["gpt50m_target_met"] = float(big["boundary_ratio"] <= TARGET)
        print(f"\n{LARGE} ({big['params'] / 1e6:.1f} M parameters): one boundary costs {big['boundary_s']:.2f} s "
              f"synchronously, {100 * big['boundary_ratio']:.2f} % of a {DEFAULT_SEGMENT_STEPS}-step segment "
              f"({big['segment_default_s']:.0f} s): target <= {100 * TARGET:.0f} % "
              f"{'met' if big['boundary_ratio'] <= TARGET else 'NOT met'}; "
              f"the training thread waited {big['blocked_s']:.3f} s per boundary and lost "
              f"{big['contention_s']:.2f} s (+-{big['noise_s']:.2f} s run-to-run noise) to contention")
    print("throughputs on the largest state (GB/s): " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()
                                                                  if k.endswith("_gbps")))
    print(f"bench took {time.perf_counter() - t0:.0f} s ({SHARED_NOTE})")
    print(f"wrote {write_result('overhead', figures, rows, note=SHARED_NOTE)}")


if __name__ == "__main__":
    main()
