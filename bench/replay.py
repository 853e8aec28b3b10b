"""Replay time over training time per segment, per task family.

Training: ``run_segment`` on the segment's start state. Replay: what a verifier
does for one audited segment given the artifacts locally: load and verify the
start checkpoint, ``run_segment``, hash the end state. Both are timed in CPU
time of the calling thread (a shared 2-core machine makes wall time swing by
+-30 %), with one intra-op thread so that is all the work.

Usage: python bench/replay.py [--threads 1]
Figures: replay_ratio_<family> (median over segments; target <= 1.05).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hashing import write_result  # noqa: E402
from overhead import bench_spec  # noqa: E402

from greenproof.engine import run_segment  # noqa: E402
from greenproof.run import ZeroMeter, train_run  # noqa: E402
from greenproof.statehash import state_hash  # noqa: E402
from greenproof.store import ArtifactStore  # noqa: E402

CPU = torch.device("cpu")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--segment-steps", type=int, default=50)
    ap.add_argument("--segments", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows, figures = [], {}
    for family in ("mlp", "cnn", "gpt"):
        spec = bench_spec(family, args.segment_steps, args.segments)
        with tempfile.TemporaryDirectory() as d:
            store = ArtifactStore(d)
            record = train_run(spec, store, ZeroMeter(), device=CPU, progress=False)
            ratios = []
            for k in range(spec.num_segments):
                # train the segment again alone (timed like the replay) so both see the same load
                fresh = store.get(record.state_hashes[k])
                t = time.thread_time()
                run_segment(spec, fresh, k, CPU)
                train_s = time.thread_time() - t
                t = time.thread_time()
                start = store.get(record.state_hashes[k])
                end = run_segment(spec, start, k, CPU).state
                match = state_hash(end) == record.state_hashes[k + 1]
                replay_s = time.thread_time() - t
                ratios.append(replay_s / train_s)
                rows.append({"family": family, "segment": k, "train_cpu_s": train_s,
                             "replay_cpu_s": replay_s, "ratio": ratios[-1], "match": match,
                             "train_run_wall_s": record.segment_wall_s[k]})
        figures[f"replay_ratio_{family}"] = statistics.median(ratios)
    print(f"{'family':<7}{'seg':>4}{'train cpu s':>12}{'replay cpu s':>13}{'ratio':>7}  match")
    for r in rows:
        print(f"{r['family']:<7}{r['segment']:>4}{r['train_cpu_s']:>12.3f}{r['replay_cpu_s']:>13.3f}{r['ratio']:>7.3f}  {r['match']}")
    print("medians: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()))
    print(f"wrote {write_result('replay', figures, rows)}")


if __name__ == "__main__":
    main()
