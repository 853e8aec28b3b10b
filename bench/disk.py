"""Provider disk per job and regeneration time against m, the sparse-checkpoint interval.

Through the worker's own code path (:mod:`worker.checkpoints`, :class:`worker.trainer.Trainer`):
for each m a fresh worker (journal + content-addressed store) is given the disk budget
``(ceil(N/m) + 2) x state size`` (``--disk-budget-gb``), accepts one job (the gpt example
at the default segment length, --segments N), picks its m from the budget, journals it
and trains the job, writing only boundaries ``k % m == 0`` and the last (boundary 0 is
the spec's seeded initial state, never written). Counted: the checkpoint files in the
store after training and the most seen at any journaled boundary (temporary files of a
write in progress included). Then the worst-case opening (the audited segment whose
boundaries need the most replays, ``m - 1``) is regenerated with
``Trainer.regenerate``, the path the lifecycle takes after an audit draw: replay from
the nearest kept boundary, every replayed hash checked against the journaled one (a
mismatch raises), the targets stored. Computed: the same for a job of --job-segments
segments, with the replay time per segment measured here.

Usage: python bench/disk.py [--segments 8] [--ms 1,2,4,8] [--threads 1]
Figures: disk_over_bound_max (files after training / (N/m + 2), worst m; target <= 1),
peak_over_budget_max (most files seen while training / (ceil(N/m) + 2), the budget's
count; target <= 1), replay_s_per_segment, regen_s_m<m> (measured), kept_states_m<m>,
job_kept_states_m<m> and job_regen_s_m<m> (computed for --job-segments),
all_regenerated_match (1 = every regenerated hash matched).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hashing import write_result  # noqa: E402
from overhead import LARGE, SHARED_NOTE, bench_spec  # noqa: E402

from greenproof.chain.models import PARAM_DEFAULTS  # noqa: E402
from greenproof.spec import DEFAULT_SEGMENT_STEPS, JobSpec  # noqa: E402
from greenproof.store import state_size_cap  # noqa: E402
from worker.checkpoints import (  # noqa: E402
    RegenerationError,
    kept_boundaries,
    states_on_disk,
    worst_replays,
)
from worker.config import WorkerConfig  # noqa: E402
from worker.journal import Journal, Phase  # noqa: E402
from worker.policy import GIB, PolicyConfig  # noqa: E402
from worker.trainer import Throughput, Trainer  # noqa: E402

JOB = 1


#: the market's default audit samples (``max_audit_samples``): the worst opening a job asks for
SAMPLES = PARAM_DEFAULTS["max_audit_samples"]

def opening_replays(n: int, m: int) -> list[tuple[int, int, int]]:
    """Per segment ``i``: (i, the boundary its regeneration starts from, the last boundary
    to regenerate); the replays to open it (both its boundaries) are the difference of the
    last two. A kept boundary (or boundary 0, the seeded initial state) is the start."""
    kept = set(kept_boundaries(n, m))
    out = []
    for i in range(n):
        base = max((k for k in kept if k <= i), default=0)
        last = i if i + 1 in kept else i + 1
        out.append((i, base, max(base, last)))
    return out


class _Clock:
    def now(self) -> int:
        return int(time.time())


def _store_files(store_dir: Path) -> tuple[int, int]:
    """(files, bytes) in the worker's store, temporary files of a write in progress included."""
    entries = [e for e in os.scandir(store_dir) if e.is_file()] if store_dir.is_dir() else []
    return len(entries), sum(e.stat().st_size for e in entries)


def worker_run(spec: JobSpec, m: int, state_bytes: int, tmp: str) -> dict[str, Any]:
    """A worker with the budget that gives ``m`` trains the job, then opens its worst segment."""
    n = spec.num_segments
    with tempfile.TemporaryDirectory(dir=tmp) as d:
        budget_gb = states_on_disk(n, m) * state_bytes / GIB
        config = WorkerConfig(data_dir=Path(d), device="cpu", energy_source="none",
                              policy=PolicyConfig(disk_budget_gb=budget_gb, steps_per_second=1e6))
        journal = Journal(config.journal_path)
        journal.begin_accept(JOB, spec_json=spec.canonical_json().decode(), spec_hash=spec.spec_hash(),
                             determinism_class=b"\0" * 32, deadline=int(time.time()) + 10**6,
                             num_segments=n, posted_block=0)
        journal.set_phase(JOB, Phase.QUEUED)
        from greenproof.store import ArtifactStore

        trainer = Trainer(journal, ArtifactStore(config.store_dir), config, _Clock(),  # type: ignore[arg-type]
                          Throughput(journal), stopping=threading.Event())
        peak = [0]
        record = journal.record_boundary

        def counted(*args: Any) -> None:  # the store as each boundary is journaled
            peak[0] = max(peak[0], _store_files(config.store_dir)[0])
            record(*args)

        journal.record_boundary = counted  # type: ignore[method-assign]
        t = time.perf_counter()
        trainer.train(journal.job(JOB))  # type: ignore[arg-type]
        train_s = time.perf_counter() - t
        row = journal.job(JOB)
        assert row is not None and row.phase is Phase.TRAINED, row
        chosen = journal.keep_every(JOB)
        files, disk_bytes = _store_files(config.store_dir)
        i, base, last = max(opening_replays(n, m), key=lambda r: (r[2] - r[1], r[0]))
        t, c = time.perf_counter(), time.process_time()
        try:
            trainer.regenerate(JOB, [i, i + 1])
            match = all(trainer.store.has(b.state_hash) for b in journal.boundaries(JOB)[i:i + 2])
        except RegenerationError:
            match = False
        regen_s, regen_cpu_s = time.perf_counter() - t, time.process_time() - c
        journal.close()
    return {"m": m, "m_chosen": chosen, "segments": n, "budget_gb": budget_gb, "kept": files,
            "kept_formula": math.ceil(n / m), "peak_files": peak[0], "budget_states": states_on_disk(n, m),
            "bound_states": n / m + 2, "disk_bytes": disk_bytes, "state_bytes_cap": state_bytes,
            "worst_segment": i, "from_boundary": base, "replays": last - base, "train_s": train_s,
            "regen_s": regen_s, "regen_cpu_s": regen_cpu_s, "match": match}


def measured_rows(spec: JobSpec, ms: list[int], tmp: str) -> tuple[list[dict[str, Any]], float]:
    """Per m, one worker run (train under the budget, regenerate the worst opening)."""
    state_bytes = state_size_cap(spec)
    rows = [worker_run(spec, m, state_bytes, tmp) for m in ms]
    return rows, statistics.median(r["train_s"] / r["segments"] for r in rows)


def computed_rows(job_segments: int, ms: list[int], replay_s: float, large_bytes: int) -> list[dict[str, Any]]:
    """A job of ``job_segments`` segments: states kept, disk for the gpt50m state, worst regeneration
    of one audited segment (m - 1 replays) and of the market's default samples (``worst_replays``)."""
    rows = []
    for m in ms:
        kept = job_segments + 1 if m == 1 else math.ceil(job_segments / m)  # m = 1: every boundary, 0 too
        rows.append({"m": m, "segments": job_segments, "kept": kept, "bound_states": job_segments / m + 2,
                     "budget_states": states_on_disk(job_segments, m),
                     "disk_gb_gpt50m": kept * large_bytes / 1e9, "replays": m - 1,
                     "regen_s": (m - 1) * replay_s, "replays_default_samples": worst_replays(job_segments, m, SAMPLES),
                     "regen_s_default_samples": worst_replays(job_segments, m, SAMPLES) * replay_s})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", default="gpt")
    ap.add_argument("--segments", type=int, default=8)
    ap.add_argument("--segment-steps", type=int, default=DEFAULT_SEGMENT_STEPS)
    ap.add_argument("--ms", default="1,2,4,8")
    ap.add_argument("--job-segments", type=int, default=1000)
    ap.add_argument("--job-ms", default="1,10,30,100,300,1000")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tmp", default=tempfile.gettempdir(), help="where checkpoints are written")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    spec = bench_spec(args.family, args.segment_steps, args.segments)
    ms = [m for m in (int(x) for x in args.ms.split(",")) if 1 <= m <= spec.num_segments]
    rows, train_s = measured_rows(spec, ms, args.tmp)
    per_replay = [r["regen_s"] / r["replays"] for r in rows if r["replays"] > 0]
    replay_s = statistics.median(per_replay) if per_replay else float("nan")
    large_bytes = state_size_cap(bench_spec(LARGE, DEFAULT_SEGMENT_STEPS, 1))
    job = computed_rows(args.job_segments, [int(x) for x in args.job_ms.split(",")], replay_s, large_bytes)

    state_mib = rows[0]["disk_bytes"] / max(1, rows[0]["kept"]) / 2**20
    print(f"measured (worker code path): {args.family}, N = {spec.num_segments} segments of {spec.segment_steps} "
          f"steps, {state_mib:.2f} MiB per checkpoint, training {train_s:.2f} s per segment")
    print(f"{'m':>3}{'m chosen':>9}{'budget MiB':>11}{'kept':>6}{'peak':>6}{'N/m+2':>7}{'disk MiB':>10}"
          f"{'worst seg':>10}{'replays':>9}{'regen s':>9}  match")
    for r in rows:
        print(f"{r['m']:>3}{r['m_chosen']:>9}{r['budget_gb'] * 1024:>11.2f}{r['kept']:>6}{r['peak_files']:>6}"
              f"{r['bound_states']:>7.1f}{r['disk_bytes'] / 2**20:>10.2f}{r['worst_segment']:>10}"
              f"{r['replays']:>9}{r['regen_s']:>9.2f}  {r['match']}")
    print(f"\ncomputed: a job of {args.job_segments} segments; replay {replay_s:.2f} s per {args.family} segment "
          f"(measured above); disk for the {LARGE} state ({large_bytes / 1e9:.2f} GB)")
    print(f"{'m':>5}{'kept':>7}{'N/m+2':>9}{'disk GB':>10}{'replays':>9}{'regen s':>10}{f'{SAMPLES} samples s':>14}")
    for r in job:
        print(f"{r['m']:>5}{r['kept']:>7}{r['bound_states']:>9.1f}{r['disk_gb_gpt50m']:>10.1f}{r['replays']:>9}"
              f"{r['regen_s']:>10.1f}{r['regen_s_default_samples']:>14.1f}")

    figures: dict[str, float] = {
        "disk_over_bound_max": max(r["kept"] / r["bound_states"] for r in rows + job),
        "peak_over_budget_max": max(r["peak_files"] / r["budget_states"] for r in rows),
        "m_chosen_as_asked": float(all(r["m_chosen"] == r["m"] for r in rows)),
        "replay_s_per_segment": replay_s, "train_s_per_segment": train_s,
        "all_regenerated_match": float(all(r["match"] for r in rows)),
    }
    for r in rows:
        figures[f"kept_states_m{r['m']}"] = r["kept"]
        figures[f"regen_s_m{r['m']}"] = r["regen_s"]
    for r in job:
        figures[f"job_kept_states_m{r['m']}"] = r["kept"]
        figures[f"job_regen_s_m{r['m']}"] = r["regen_s"]
    met = figures["disk_over_bound_max"] <= 1 and figures["peak_over_budget_max"] <= 1
    print(f"disk per job after training at most {figures['disk_over_bound_max']:.2f} x (N/m + 2) states, "
          f"while training at most {figures['peak_over_budget_max']:.2f} x the budget: target "
          f"{'met' if met else 'NOT met'}; m chosen from the budget as asked: {bool(figures['m_chosen_as_asked'])}; "
          f"every regenerated hash matches: {bool(figures['all_regenerated_match'])}")
    print(f"bench took {time.perf_counter() - t0:.0f} s ({SHARED_NOTE})")
    out = [{"kind": "measured", "family": args.family, **r} for r in rows] + [{"kind": "computed", **r} for r in job]
    print(f"wrote {write_result('disk', figures, out, note=SHARED_NOTE)}")


if __name__ == "__main__":
    main()
