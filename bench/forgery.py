"""Single-boundary forgers against sampling by movement and the triangle check (issue 12).

Engine level, no chain. For a run of ``--segments`` N segments of one family
(``bench.overhead.bench_spec``: the family's example spec, N x ``--segment-steps``
steps), the honest run is trained once; then, for each forger of
:mod:`greenproof.adversaries.forgers` (moments, collapse, other_run) and each
forged boundary ``k*`` (early 1, middle N/2, late 3N/4, last N-1), the forged
continuation is trained once from the honest boundary ``k* - 1`` with
``greenproof.run.train_run`` and the forger's hooks, exactly as a cheating worker
would. Each claim mode (truthful, elsewhere, nowhere) is the forger's ``move``
hook applied to the run's true cumulative movements.

Precomputed per configuration: per segment whether the verifier would find it
fraudulent when audited (its end is not what a replay of its start gives: only
segment ``k* - 1``; its claimed movement is not its states' distance, beyond
one unit; a boundary state breaking a whole-state invariant), and the distance
between any two boundaries the triangle check may compare. Then ``--draws``
audit draws (random seed and job id from a seeded RNG; the contract's draw:
half the samples uniform over segments, half over the claimed movement,
``greenproof.sampling``) decide "caught" (:func:`greenproof.adversaries.simulate.draw_outcome`):
a checked segment is fraudulent (an audited one, or a bridged one: not drawn, both of its
boundaries known, which the verifier replays too), or the verifier's triangle check
(:func:`verifier.movement.check_triangle`) fails over the known boundaries (0,
both ends of every audited segment, N): a consecutive pair with
``fixed(dist) > move_b - move_a + (b - a) + 1`` or a decreasing movement. The honest run is simulated the same way (false positives).
The "uniform" column is version 1's sampling (all samples uniform, replay only).

``--families`` repeats it for other families (their least rate is a figure).
``--honest`` also audits every segment of an honest run of each of the three
families with the real verifier (``verifier.audit.audit_job``, same class:
segment checks with ``movement``, the ``triangle`` over every boundary, the
final model) and counts fraud verdicts. ``--sweep`` repeats the simulation for
several weight floors (the trained states are shared; only the metric changes;
``0.1/single`` is one floor for every tensor, second moments included).

Usage: python bench/forgery.py [--families mlp,cnn,gpt] [--segments 64] [--segment-steps 8]
       [--samples 48] [--draws 1000] [--honest] [--sweep 0.03,0.3,0.1/single]
Figures: min_caught (the least detection rate over forgers, claim modes and
boundaries), min_caught_<forger>_<mode>, honest_false_positive_rate (simulated
draws on the honest run), honest_segments_audited and honest_fraud_verdicts
(with --honest).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hashing import write_result  # noqa: E402
from overhead import bench_spec  # noqa: E402

from greenproof.adversaries.forgers import (  # noqa: E402
    CLAIMS,
    FORGER_KINDS,
    ForgeBoundary,
    forger_name,
    make_forger,
    other_run_spec,
)
from greenproof.adversaries.simulate import Distances, SimulatedRun, draw_outcome  # noqa: E402
from greenproof.engine import TrainState, init_state  # noqa: E402
from greenproof.movement import FLOOR, Metric, from_fixed  # noqa: E402
from greenproof.run import BoundaryReport, MemoryCheckpoints, ZeroMeter, train_run  # noqa: E402
from greenproof.sampling import audit_draws  # noqa: E402
from greenproof.spec import JobSpec  # noqa: E402
from verifier.invariants import check_state  # noqa: E402
from verifier.sampling import wilson_interval  # noqa: E402

CPU = torch.device("cpu")
JOB_ID = 1
log = logging.getLogger("bench.forgery")


@dataclass
class Run:
    """A run's boundary states and what its provider commits (hashes, cumulative movements)."""

    states: list[TrainState]
    hashes: list[bytes]
    moves: list[int]
    digests: list[bytes]


def train(spec: JobSpec, *, start: Run | None = None, start_k: int = 0, cheat: ForgeBoundary | None = None) -> Run:
    """``train_run`` from scratch, or resumed at boundary ``start_k`` of ``start`` (a worker's
    resume), with ``cheat``'s hooks; the committed movements are the cheat's claims."""
    store = MemoryCheckpoints()
    claimed: list[int] = []

    def on_boundary(k: int, h: bytes, energy_mj: int, digest: bytes, move: int) -> None:
        claimed.append(cheat.move(k, move) if cheat is not None else move)

    resume = {}
    if start is not None:
        resume = {"start_state": start.states[start_k], "start_k": start_k,
                  "history": [BoundaryReport(start.hashes[k], 0, start.digests[k], start.moves[k])
                              for k in range(start_k + 1)]}
    record = train_run(spec, store, ZeroMeter(), device=CPU, on_boundary=on_boundary,
                       segment_hook=cheat.train_segment if cheat is not None else None, progress=False, **resume)
    states = [store.get(h) for h in record.state_hashes[start_k:]]
    prefix = start.states[:start_k] if start is not None else []
    moves = (start.moves[:start_k] if start is not None else []) + claimed
    return Run(prefix + states, record.state_hashes, moves, record.work_digests)


@dataclass
class Forged:
    """One forger at one boundary: the forged run's states, its true movements and the claims."""

    kind: str
    at: int
    run: Run
    #: ``fixed(dist)`` of each segment of the forged run, and of the honest segment ``k* - 1``
    true_segment: list[int]
    honest_move: int
    #: claim mode -> claimed cumulative movements
    claims: dict[str, list[int]]
    #: boundaries whose state breaks a whole-state invariant
    broken: list[int] = field(default_factory=list)


def claims_of(true_segment: list[int], at: int, honest_move: int) -> dict[str, list[int]]:
    """The three claim modes from the true per-segment movements (the forger's ``move`` hook)."""
    true = [0]
    for d in true_segment:
        true.append(true[-1] + d)
    shift = honest_move - true_segment[at - 1]
    return {
        "truthful": list(true),
        "elsewhere": [m + shift if k == at else m for k, m in enumerate(true)],
        "nowhere": [m + shift if k >= at else m for k, m in enumerate(true)],
    }


def forge(spec: JobSpec, honest: Run, other: Run, kind: str, at: int, metric: Metric) -> Forged:
    """Train the forged continuation once (truthful hooks) and derive the three claim modes."""
    forger = make_forger(forger_name(kind, "truthful"), at=at,
                         **({"source": lambda _s, b, _r: other.states[b]} if kind == "other_run" else {}))
    run = train(spec, start=honest, start_k=at - 1, cheat=forger)
    assert run.hashes[at] != honest.hashes[at], "the forgery changed nothing"
    true_segment = [metric.fixed(run.states[j], run.states[j + 1]) for j in range(spec.num_segments)]
    honest_move = metric.fixed(run.states[at - 1], honest.states[at])
    claims = claims_of(true_segment, at, honest_move)
    if (metric.floor, metric.squared) == (FLOOR, True):  # the forger's own hook must claim the same
        assert run.moves == claims["truthful"]
        for mode in ("elsewhere", "nowhere"):
            forger.claim = mode
            assert [forger.move(k, m) for k, m in enumerate(claims["truthful"])] == claims[mode], mode
    broken = [k for k, s in enumerate(run.states) if check_state(spec, s, k)]
    return Forged(kind, at, run, true_segment, honest_move, claims, broken)


def simulated(spec: JobSpec, run: Run, moves: list[int]) -> SimulatedRun:
    """The run as :mod:`greenproof.adversaries.simulate` audits it, committing ``moves``."""
    n = spec.num_segments
    return SimulatedRun(spec=spec, job_id=JOB_ID, hashes=run.hashes, energies_mj=[0] * (n + 1),
                        work_digests=run.digests, moves=moves,
                        states=dict(zip(run.hashes, run.states, strict=True)), provider_class=b"")


def fraudulent_segments(true_segment: list[int], moves: list[int], forged_segment: int | None,
                        broken: list[int]) -> set[int]:
    """Segments whose audit fails: the forged one (end hash), a movement claim off by more than
    one unit, or an end boundary breaking an invariant (start or end)."""
    out = {j for j, d in enumerate(true_segment) if abs((moves[j + 1] - moves[j]) - d) > 1}
    if forged_segment is not None:
        out.add(forged_segment)
    for k in broken:
        out |= {j for j in (k - 1, k) if 0 <= j < len(true_segment)}
    return out


def simulate(run: SimulatedRun, fraudulent: set[int], dist: Distances, draws: int, samples: int,
             label: str, replay_fails: set[int]) -> dict[str, float | int]:
    """Caught rates over ``draws`` seeded draws (:func:`greenproof.adversaries.simulate.draw_outcome`:
    an audited segment fails, or the verifier's triangle check); ``uniform_only_rate``: version 1
    (every sample uniform, only a replay that fails, ``replay_fails``, is caught)."""
    rng = random.Random(label)
    by_segment = by_triangle = uniform = 0
    n = run.spec.num_segments
    for _ in range(draws):
        seed = rng.randbytes(32)
        seg, tri = draw_outcome(run, fraudulent, seed, samples, dist)
        by_segment += seg
        by_triangle += tri
        uniform += bool(replay_fails & set(audit_draws(seed, JOB_ID, n, samples, 0)[0]))
    hits = by_segment + by_triangle
    lo, hi = wilson_interval(hits, draws)
    return {"caught": hits, "draws": draws, "rate": round(hits / draws, 4), "wilson_lo": round(lo, 4),
            "wilson_hi": round(hi, 4), "by_segment": by_segment, "by_triangle": by_triangle,
            "uniform_only_rate": round(uniform / draws, 4)}


def forgery_rows(spec: JobSpec, honest: Run, forged: list[Forged], metric: Metric, draws: int,
                 samples: int) -> tuple[list[dict], dict[str, float]]:
    rows: list[dict] = []
    honest_true = [metric.fixed(honest.states[j], honest.states[j + 1]) for j in range(spec.num_segments)]
    honest_moves = claims_of(honest_true, 1, honest_true[0])["truthful"]
    h = simulate(simulated(spec, honest, honest_moves), fraudulent_segments(honest_true, honest_moves, None, []),
                 Distances(metric), draws, samples, f"honest-{label(metric)}", set())
    rows.append({"family": spec.task, "forger": "none", "claim": "honest", "boundary": None, "floor": label(metric),
                 "move_total": honest_moves[-1], **h})
    for f in forged:
        dist = Distances(metric)
        if (metric.floor, metric.squared) != (FLOOR, True):
            f = recompute(f, honest, metric)
        for mode in CLAIMS:
            moves = f.claims[mode]
            bad = fraudulent_segments(f.true_segment, moves, f.at - 1, f.broken)
            r = simulate(simulated(spec, f.run, moves), bad, dist, draws, samples,
                         f"{f.kind}-{mode}-{f.at}-{label(metric)}",
                         fraudulent_segments(f.true_segment, f.claims["truthful"], f.at - 1, f.broken))
            jump = f.true_segment[f.at - 1]
            rows.append({"family": spec.task, "forger": f.kind, "claim": mode, "boundary": f.at,
                         "floor": label(metric),
                         "jump": round(from_fixed(jump), 4), "honest_segment": round(from_fixed(f.honest_move), 4),
                         "move_total": moves[-1], "jump_share": round(jump / max(1, f.claims["truthful"][-1]), 4),
                         "invariant_breaks": len(f.broken), **r})
    figures: dict[str, float] = {"honest_false_positive_rate": h["rate"]}
    forgers = [r for r in rows if r["forger"] != "none"]
    figures["min_caught"] = min(r["rate"] for r in forgers)
    for kind in FORGER_KINDS:
        for mode in CLAIMS:
            figures[f"min_caught_{kind}_{mode}"] = min(r["rate"] for r in forgers
                                                      if r["forger"] == kind and r["claim"] == mode)
    return rows, figures


def label(metric: Metric) -> str:
    """``0.1`` (the protocol's squared floor for second moments) or ``0.1/single`` (one floor)."""
    return f"{metric.floor:g}" if metric.squared else f"{metric.floor:g}/single"


def recompute(f: Forged, honest: Run, metric: Metric) -> Forged:
    """The same forged states under another metric (the floor sweep)."""
    true_segment = [metric.fixed(f.run.states[j], f.run.states[j + 1]) for j in range(len(f.run.states) - 1)]
    honest_move = metric.fixed(f.run.states[f.at - 1], honest.states[f.at])
    return Forged(f.kind, f.at, f.run, true_segment, honest_move, claims_of(true_segment, f.at, honest_move),
                  f.broken)


def honest_audits(families: list[str], segments: int, segment_steps: int) -> list[dict]:
    """Every segment of an honest run per family through the real verifier (same class)."""
    from greenproof.adversaries.simulate import simulate_run
    from verifier.audit import AuditConfig, audit_job

    rows = []
    for family in families:
        spec = bench_spec(family, segment_steps, segments)
        run = simulate_run(spec, measure_energy=False)
        t = time.perf_counter()
        report = audit_job(run.audit_job(list(range(spec.num_segments))), AuditConfig(measure_energy=False),
                           fetch=run.fetch)
        frauds = [s.index for s in report.segments if s.verdict == "fraud"]
        movement_checked = sum(s.checks.get("movement") == "ok" for s in report.segments)
        pairs = len(report.triangle.pairs) if report.triangle else 0
        rows.append({"family": family, "segments": spec.num_segments, "segment_steps": spec.segment_steps,
                     "verdict": report.verdict.value, "fraud_segments": frauds,
                     "movement_checks_ok": movement_checked, "triangle_pairs": pairs,
                     "triangle_ok": bool(report.triangle and report.triangle.ok),
                     "move_total": run.moves[-1], "audit_s": round(time.perf_counter() - t, 1),
                     "reasons": report.reasons})
        print(f"honest {family}: {spec.num_segments} segments audited, verdict {report.verdict.value}, "
              f"movement ok {movement_checked}, triangle pairs {pairs} ok={rows[-1]['triangle_ok']}, "
              f"fraud segments {frauds}")
    return rows


def print_table(rows: list[dict]) -> None:
    head = (f"{'forger':>9} {'claim':>9} {'k*':>3} {'jump':>8} {'share':>6} {'rate':>6} "
            f"{'95% interval':>15} {'segment':>7} {'triangle':>8} {'uniform':>7}")
    print(head)
    print("-" * len(head))
    for r in rows:
        k = "-" if r["boundary"] is None else r["boundary"]
        jump = f"{r.get('jump', 0):8.3f}" if "jump" in r else f"{'-':>8}"
        share = f"{r.get('jump_share', 0):6.3f}" if "jump_share" in r else f"{'-':>6}"
        print(f"{r['forger']:>9} {r['claim']:>9} {k:>3} {jump} {share} {r['rate']:6.3f} "
              f"[{r['wilson_lo']:.3f}, {r['wilson_hi']:.3f}] {r['by_segment']:>7} {r['by_triangle']:>8} "
              f"{r['uniform_only_rate']:7.3f}")


def family_rows(family: str, args: argparse.Namespace, sweep: list[tuple[float, bool]]) -> tuple[list, dict]:
    """Train one family's honest, other and forged runs once; simulate them under the protocol's
    metric and each swept one."""
    n = args.segments
    spec = bench_spec(family, args.segment_steps, n)
    boundaries = ([int(b) for b in args.boundaries.split(",")] if args.boundaries
                  else sorted({1, n // 2, (3 * n) // 4, n - 1}))
    metric = Metric(init_state(spec, CPU))
    t0 = time.perf_counter()
    honest = train(spec)
    other = train(other_run_spec(spec))
    forged = [forge(spec, honest, other, kind, at, metric) for kind in FORGER_KINDS for at in boundaries]
    print(f"{family}: {n} segments x {args.segment_steps} steps, {args.samples} samples, "
          f"{args.draws} draws per configuration; floor {FLOOR} (second moments {FLOOR ** 2:g}); "
          f"trained in {time.perf_counter() - t0:.0f} s")
    rows, figures = forgery_rows(spec, honest, forged, metric, args.draws, args.samples)
    print_table(rows)
    for floor, squared in sweep:
        swept = Metric(init_state(spec, CPU), floor, squared)
        sweep_rows, sweep_figures = forgery_rows(spec, honest, forged, swept, args.draws, args.samples)
        print(f"\n{family}, floor {label(swept)}: min caught {sweep_figures['min_caught']:.3f}")
        print_table(sweep_rows)
        rows += sweep_rows
        figures[f"sweep_min_caught_floor_{label(swept)}"] = sweep_figures["min_caught"]
    return rows, figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="mlp", help="comma-separated: mlp, cnn, gpt (the first gives the "
                    "headline figures, the others min_caught_<family>)")
    ap.add_argument("--segments", type=int, default=64)
    ap.add_argument("--segment-steps", type=int, default=8)
    ap.add_argument("--samples", type=int, default=48, help="audit samples (the market's default max_audit_samples)")
    ap.add_argument("--draws", type=int, default=1000, help="simulated audit draws per configuration")
    ap.add_argument("--boundaries", default=None, help="forged boundaries (default: 1, N/2, 3N/4, N-1)")
    ap.add_argument("--honest", action="store_true", help="also audit honest runs of the three families")
    ap.add_argument("--honest-segments", type=int, default=64)
    ap.add_argument("--sweep", default="", help="weight floors to compare on the first family (metric only), "
                    "comma-separated; FLOOR/single: one floor for every tensor, second moments included")
    args = ap.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.ERROR)
    families = [f for f in args.families.split(",") if f]
    sweep = [(float(x.split("/")[0]), not x.endswith("/single")) for x in args.sweep.split(",") if x]
    rows, figures = family_rows(families[0], args, sweep)
    for family in families[1:]:
        more, more_figures = family_rows(family, args, [])
        rows += more
        figures[f"min_caught_{family}"] = more_figures["min_caught"]
    if args.honest:
        honest_rows = honest_audits(["mlp", "cnn", "gpt"], args.honest_segments, args.segment_steps)
        rows += [{"honest_audit": True, **r} for r in honest_rows]
        figures["honest_segments_audited"] = sum(r["segments"] for r in honest_rows)
        figures["honest_fraud_verdicts"] = sum(len(r["fraud_segments"]) for r in honest_rows) + sum(
            r["verdict"] == "fraud" and not r["fraud_segments"] for r in honest_rows)
    print("figures: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    print(f"wrote {write_result('forgery', figures, rows)}")


if __name__ == "__main__":
    main()
