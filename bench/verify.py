"""Verifier compute over training compute per job, under the court (docs/court.md).

Only the seats drawn for a job replay it: a job costs the verifiers one replay of
its distinct audited segments per seat holder of round 0 (at most
``committee_size``; a member holding several seats replays once), whatever the
number of verifiers in the pool. The open vote before the court had every
verifier replay every job; its column is shown for scale.

Measured at engine level (``greenproof.engine.run_segment``, CPU time of this
thread, one intra-op thread): training is every segment of the run once; a
replay is the distinct audited segments of the market's default draw
(``max_audit_samples`` = 32 with replacement, the contract's index formula),
each from its stored start state, averaged over ``--draws`` audit seeds. Seat
holders are the contract's draw (``VerifierCourt._draw_round``: seat ``j`` is
the member whose cumulative free-seat interval holds
``keccak256(abi_encode(seed_0, j)) % free_seats``, without replacement),
averaged over ``--draws`` seeds, with every verifier holding ``--seats`` seats.

Usage: python bench/verify.py [--family mlp] [--samples 32] [--seats 2] [--draws 2000]
Figures: verify_ratio_committee3 (10 verifiers, the default committee of 3),
verify_ratio_committee5, replay_over_train (one replay of the distinct audited
segments over training).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from pathlib import Path

import torch
from eth_abi import encode as abi_encode
from eth_utils import keccak

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hashing import write_result  # noqa: E402
from overhead import bench_spec  # noqa: E402

from greenproof.engine import init_state, run_segment  # noqa: E402
from verifier.sampling import audit_indices  # noqa: E402

CPU = torch.device("cpu")
POOLS = (3, 10, 100)
COMMITTEES = (3, 5)
DEFAULT_POOL, DEFAULT_COMMITTEE = 10, 3


def seat_holders(seed: bytes, job_id: int, seats: list[int], size: int) -> list[int]:
    """Round 0 of a case as ``VerifierCourt.open_case`` draws it: the member index of each
    seat, ``size`` seats (fewer when the pool runs out of free seats)."""
    free = list(seats)
    seed0 = keccak(abi_encode(["bytes32", "uint256"], [seed, job_id]))
    holders: list[int] = []
    for j in range(size):
        total = sum(free)
        if total == 0:
            break
        target = int.from_bytes(keccak(abi_encode(["bytes32", "uint256"], [seed0, j])), "big") % total
        member = 0
        while target >= free[member]:
            target -= free[member]
            member += 1
        free[member] -= 1
        holders.append(member)
    return holders


def expected_replays(pool: int, seats_each: int, committee: int, draws: int) -> tuple[float, float]:
    """(mean seats drawn, mean distinct seat holders) of round 0 over ``draws`` random seeds."""
    drawn, distinct = [], []
    for job_id in range(1, draws + 1):
        holders = seat_holders(secrets.token_bytes(32), job_id, [seats_each] * pool, committee)
        drawn.append(len(holders))
        distinct.append(len(set(holders)))
    return statistics.fmean(drawn), statistics.fmean(distinct)


def train_and_replay(family: str, segment_steps: int, segments: int, samples: int,
                     draws: int) -> dict[str, float | int]:
    """Train a run segment by segment, replay every segment from its stored start state, and
    average the replay cost of the distinct audited segments over ``draws`` audit seeds."""
    spec = bench_spec(family, segment_steps, segments)
    run_segment(spec, init_state(spec, CPU), 0, CPU)  # warm-up: dataset, kernels, allocator
    starts = [init_state(spec, CPU)]
    t = time.thread_time()
    for k in range(spec.num_segments):
        starts.append(run_segment(spec, starts[k], k, CPU).state)
    train_s = time.thread_time() - t
    replay_s = []
    for k in range(spec.num_segments):
        t = time.thread_time()
        run_segment(spec, starts[k], k, CPU)
        replay_s.append(time.thread_time() - t)
    audited = [set(audit_indices(secrets.token_bytes(32), job_id, spec.num_segments, samples))
               for job_id in range(1, draws + 1)]
    return {"segments": spec.num_segments, "segment_steps": spec.segment_steps, "samples": samples,
            "distinct_audited": round(statistics.fmean(len(a) for a in audited), 2),
            "train_cpu_s": round(train_s, 4),
            "replay_cpu_s": round(statistics.fmean(sum(replay_s[k] for k in a) for a in audited), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="mlp", choices=("mlp", "cnn", "gpt"))
    ap.add_argument("--segment-steps", type=int, default=16)
    ap.add_argument("--segments", type=int, default=64)
    ap.add_argument("--samples", type=int, default=32, help="audit samples (the market's default)")
    ap.add_argument("--seats", type=int, default=2, help="seats each verifier holds")
    ap.add_argument("--draws", type=int, default=2000, help="random seeds per pool and committee")
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = train_and_replay(args.family, args.segment_steps, args.segments, args.samples, args.draws)
    replay_ratio = run["replay_cpu_s"] / run["train_cpu_s"]
    rows, figures = [], {"replay_over_train": round(replay_ratio, 4)}
    for committee in COMMITTEES:
        for pool in POOLS:
            drawn, replays = expected_replays(pool, args.seats, committee, args.draws)
            row = {"family": args.family, **run, "pool_verifiers": pool, "seats_each": args.seats,
                   "committee_size": committee, "seats_drawn": round(drawn, 3),
                   "replays": round(replays, 3),
                   "verify_over_train": round(replays * replay_ratio, 4),
                   "open_vote_over_train": round(pool * replay_ratio, 4)}
            rows.append(row)
            if pool == DEFAULT_POOL:
                figures[f"verify_ratio_committee{committee}"] = row["verify_over_train"]
    print(f"{args.family}: {run['segments']} segments x {run['segment_steps']} steps, "
          f"{run['samples']} samples -> {run['distinct_audited']} distinct audited (mean); "
          f"train {run['train_cpu_s']:.2f} s, one replay {run['replay_cpu_s']:.2f} s CPU "
          f"({replay_ratio:.3f} of training)")
    head = (f"{'verifiers':>9} {'committee':>9} {'seats drawn':>11} {'replays':>8} "
            f"{'verify/train':>12} {'open vote/train':>15}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['pool_verifiers']:>9} {r['committee_size']:>9} {r['seats_drawn']:>11.2f} "
              f"{r['replays']:>8.2f} {r['verify_over_train']:>12.3f} {r['open_vote_over_train']:>15.2f}")
    print("figures: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    print(f"wrote {write_result('verify', figures, rows)}")


if __name__ == "__main__":
    main()
