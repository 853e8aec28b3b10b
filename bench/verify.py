"""Verifier compute over training compute at the default audit parameters.

For each spec: train the whole run (as the worker does), draw the market's
default number of samples (``max_audit_samples`` = 32, with replacement, the
contract's index formula) and audit them (fetch, hash, replay, compare) as the
verifier does. Compute is CPU time of this process (wall time too). Prints a
table and writes ``bench/results/verify.json``.

    python bench/verify.py [--samples 32] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import secrets
import time
from pathlib import Path

import torch

from greenproof.adversaries.simulate import simulate_run
from greenproof.spec import parse_spec
from verifier.audit import AuditConfig, audit_job
from verifier.sampling import audit_indices

DEFAULT_SAMPLES = 32

SPECS = {
    "mlp-64seg": {"task": "mlp", "dataset": {"uri": "builtin://digits"}, "batch_size": 32,
                  "total_steps": 256, "segment_steps": 4, "seed": 1},
    "cnn-64seg": {"task": "cnn", "model": {"channels": [8, 16], "hidden": 32},
                  "dataset": {"uri": "builtin://digits"}, "batch_size": 32,
                  "total_steps": 256, "segment_steps": 4, "seed": 1},
    "mlp-32seg": {"task": "mlp", "dataset": {"uri": "builtin://digits"}, "batch_size": 32,
                  "total_steps": 256, "segment_steps": 8, "seed": 1},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    ap.add_argument("--quick", action="store_true", help="only the first spec")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    for raw in SPECS.values():  # warm-up: imports, dataset load, kernels
        simulate_run(parse_spec({**raw, "total_steps": raw["segment_steps"]}), measure_energy=False)
    rows = []
    for name, raw in list(SPECS.items())[: 1 if args.quick else None]:
        spec = parse_spec(raw)
        c0, w0 = time.process_time(), time.perf_counter()
        run = simulate_run(spec, measure_energy=False)
        train_cpu, train_wall = time.process_time() - c0, time.perf_counter() - w0
        idx = audit_indices(secrets.token_bytes(32), 1, spec.num_segments, args.samples)
        c0, w0 = time.process_time(), time.perf_counter()
        report = audit_job(run.audit_job(idx), AuditConfig(measure_energy=False), fetch=run.fetch)
        verify_cpu, verify_wall = time.process_time() - c0, time.perf_counter() - w0
        assert not report.fraud, report.reasons
        distinct = len(set(idx))
        rows.append({
            "spec": name, "segments": spec.num_segments, "samples": args.samples,
            "distinct_audited": distinct, "expected_ratio": distinct / spec.num_segments,
            "train_cpu_s": round(train_cpu, 3), "verify_cpu_s": round(verify_cpu, 3),
            "train_wall_s": round(train_wall, 3), "verify_wall_s": round(verify_wall, 3),
            "verify_over_train": round(verify_cpu / train_cpu, 4),
        })
    head = f"{'spec':<11} {'N':>4} {'s':>3} {'distinct':>8} {'train cpu s':>11} {'verify cpu s':>12} {'ratio':>6} {'distinct/N':>10}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['spec']:<11} {r['segments']:>4} {r['samples']:>3} {r['distinct_audited']:>8} "
              f"{r['train_cpu_s']:>11.2f} {r['verify_cpu_s']:>12.2f} {r['verify_over_train']:>6.3f} "
              f"{r['expected_ratio']:>10.3f}")
    out = {
        "bench": "verify",
        "machine": {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "torch": torch.__version__, "threads": 1},
        "figures": {"verify_over_train": rows[0]["verify_over_train"]},
        "rows": rows,
    }
    path = Path(__file__).parent / "results" / "verify.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
