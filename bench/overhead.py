"""Training with commitments (boundary hashing + durable checkpoints on the background
writer) against the same segments without them, per task family. Both are ``train_run``;
the baseline's checkpoint sink neither hashes nor stores (:class:`Uncommitted`).

Usage: python bench/overhead.py [--threads 1] [--reps 3]
Figures: overhead_ratio_<family> (target <= 1.02 at the default segment length): the
ratio of process CPU time (all threads, so the background writer's work counts),
best of --reps. CPU time rather than wall time because a shared 2-core machine
makes wall time swing by +-30 % between identical runs; wall ratios are in the rows.
commit_cost_ratio_<family>: 1 + (CPU cost of one boundary's hash + serialize + durable
write) x (boundaries) / (training CPU time) -- the same overhead computed from its
parts, which is far less sensitive to machine load than the difference of two runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hashing import write_result  # noqa: E402

from greenproof.engine import TrainState, init_state  # noqa: E402
from greenproof.run import ZeroMeter, train_run  # noqa: E402
from greenproof.spec import JobSpec, load_spec  # noqa: E402
from greenproof.statehash import state_hash  # noqa: E402
from greenproof.store import ArtifactStore, checkpoint_bytes  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "greenproof" / "examples"
CPU = torch.device("cpu")


def bench_spec(family: str, segment_steps: int, segments: int) -> JobSpec:
    base = load_spec(EXAMPLES / f"{family}.yaml")
    return base.model_copy(update={"segment_steps": segment_steps, "total_steps": segment_steps * segments})


class Uncommitted:
    """A checkpoint sink that neither hashes nor keeps a state: a run without commitments."""

    def __init__(self) -> None:
        self.boundaries = 0

    def put(self, state: TrainState) -> bytes:
        self.boundaries += 1
        return self.boundaries.to_bytes(32, "big")  # a placeholder, not a state hash


def plain(spec: JobSpec) -> tuple[float, float]:
    """(wall s, process CPU s) of train_run with nothing hashed or stored: the bare training."""
    t, c = time.perf_counter(), time.process_time()
    train_run(spec, Uncommitted(), ZeroMeter(), device=CPU, progress=False)
    return time.perf_counter() - t, time.process_time() - c


def committed(spec: JobSpec) -> tuple[float, float]:
    """(wall s, process CPU s, all threads) of train_run: hashing and durable checkpoints included."""
    with tempfile.TemporaryDirectory() as d:
        t, c = time.perf_counter(), time.process_time()
        train_run(spec, ArtifactStore(d), ZeroMeter(), device=CPU, progress=False)
        return time.perf_counter() - t, time.process_time() - c


def boundary_cost(spec: JobSpec, reps: int = 5) -> float:
    """Best-of CPU seconds the writer spends on one boundary: hash, serialize, atomic durable write."""
    state = init_state(spec, CPU)
    best = float("inf")
    with tempfile.TemporaryDirectory() as d:
        store = ArtifactStore(d)
        for i in range(reps):
            state = dict(state, **{"train.step": torch.tensor(i)})  # a new hash each time
            c = time.process_time()
            h = state_hash(state)
            store.put_bytes(h, checkpoint_bytes(state))
            best = min(best, time.process_time() - c)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--segment-steps", type=int, default=50)
    ap.add_argument("--segments", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows, figures = [], {}
    for family in ("mlp", "cnn", "gpt"):
        spec = bench_spec(family, args.segment_steps, args.segments)
        plain(bench_spec(family, 2, 1))  # warm caches (dataset, allocator)
        t_plain, t_comm = [], []
        for _ in range(args.reps):  # interleaved so load drifts hit both alike
            t_plain.append(plain(spec))
            t_comm.append(committed(spec))
        cpu_ratio = min(c for _, c in t_comm) / min(c for _, c in t_plain)
        wall_ratio = min(w for w, _ in t_comm) / min(w for w, _ in t_plain)
        per_boundary = boundary_cost(spec)
        cost_ratio = 1 + per_boundary * (spec.num_segments + 1) / min(c for _, c in t_plain)
        state_mb = sum(t.numel() * t.element_size() for t in init_state(spec, CPU).values()) / 2**20
        rows.append(
            {"family": family, "segment_steps": spec.segment_steps, "segments": spec.num_segments,
             "state_mib": state_mb, "plain_cpu_s": min(c for _, c in t_plain),
             "committed_cpu_s": min(c for _, c in t_comm), "cpu_ratio": cpu_ratio,
             "plain_wall_s": min(w for w, _ in t_plain), "committed_wall_s": min(w for w, _ in t_comm),
             "wall_ratio": wall_ratio, "boundary_cpu_s": per_boundary, "cost_ratio": cost_ratio}
        )
        figures[f"overhead_ratio_{family}"] = cpu_ratio
        figures[f"overhead_wall_ratio_{family}"] = wall_ratio
        figures[f"commit_cost_ratio_{family}"] = cost_ratio
    print(f"{'family':<7}{'seg':>5}{'n':>3}{'state MiB':>10}{'plain cpu':>10}{'commit cpu':>11}{'ratio':>7}{'wall ratio':>11}{'boundary ms':>12}{'cost ratio':>11}")
    for r in rows:
        print(f"{r['family']:<7}{r['segment_steps']:>5}{r['segments']:>3}{r['state_mib']:>10.2f}"
              f"{r['plain_cpu_s']:>10.2f}{r['committed_cpu_s']:>11.2f}{r['cpu_ratio']:>7.3f}{r['wall_ratio']:>11.3f}"
              f"{r['boundary_cpu_s'] * 1e3:>12.1f}{r['cost_ratio']:>11.4f}")
    print(f"wrote {write_result('overhead', figures, rows)}")


if __name__ == "__main__":
    main()
