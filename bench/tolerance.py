"""Honest cross-class replay noise per model family, and what cheaper work looks like.

A verifier outside the provider's determinism class compares every tensor of
its replayed end state with the provider's (``verifier/compare.py``). This
bench measures the honest side of that comparison over every CPU class this
machine can produce, and the cheating side that the tolerance must still catch:

* reference: each family trained for a few segments in this process;
* honest classes: every segment replayed from the reference start in a fresh
  process with another intra-op thread count (1, 2), oneDNN on/off and
  ``ATEN_CPU_CAPABILITY`` (the native kernels, ``default`` = no vector ISA):
  the per-tensor relative L2 distance to the reference end, worst per family;
* cheats (same class, with counters forged to look right): the last step of
  the segment skipped, and the segment computed in bf16 autocast.

The spec's default ``tolerance.rel_l2`` is ``TOLERANCE_MULTIPLE`` times the
worst honest distance measured here, rounded up to one significant digit
(docs/engine.md, "Cross-class tolerance").

Usage: python bench/tolerance.py [--segments 4] [--segment-steps 50]
Figures: worst_honest_<family>, worst_honest, min_cheat_<family>, honest_segments,
honest_over_default (honest segment replays that the default tolerance would call fraud).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hashing import write_result  # noqa: E402
from overhead import bench_spec  # noqa: E402

from greenproof.engine import STEP_KEY, run_segment  # noqa: E402
from greenproof.run import ZeroMeter, train_run  # noqa: E402
from greenproof.spec import DEFAULT_TOLERANCE  # noqa: E402
from greenproof.store import ArtifactStore  # noqa: E402
from verifier.compare import tensor_distances, worst  # noqa: E402

FAMILIES = ("mlp", "cnn", "gpt")
TOLERANCE_MULTIPLE = 30
CPU = torch.device("cpu")


def round_up_1sig(x: float) -> float:
    """``x`` rounded up to one significant digit (0.032 -> 0.04)."""
    if x <= 0:
        return 0.0
    scale = 10 ** math.floor(math.log10(x))
    return math.ceil(x / scale - 1e-9) * scale


def classes() -> list[dict[str, object]]:
    """Every CPU class this machine can produce (the reference is threads=2, oneDNN on, native)."""
    out = []
    for threads, mkldnn, isa in itertools.product((1, 2), (True, False), ("native", "default")):
        if (threads, mkldnn, isa) != (2, True, "native"):
            out.append({"threads": threads, "mkldnn": mkldnn, "isa": isa})
    return out


def replay_worker(args: argparse.Namespace) -> None:
    """Child process: replay every segment of one family in this process's class."""
    torch.set_num_threads(args.threads)
    torch.backends.mkldnn.enabled = bool(args.mkldnn)
    spec = bench_spec(args.family, args.segment_steps, args.segments)
    store = ArtifactStore(args.store)
    hashes = json.loads(Path(args.hashes).read_text())
    rows = []
    for k in range(spec.num_segments):
        end = run_segment(spec, store.get(bytes.fromhex(hashes[k])), k, CPU).state
        d = worst(tensor_distances(end, store.get(bytes.fromhex(hashes[k + 1]))))
        rows.append({"segment": k, "worst_tensor": d.name, "distance": d.distance})
    print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "rows": rows}))


def skip_last_step(spec, state, k):
    """Train all but the last step, then forge every counter to the segment's end."""
    sub = spec.model_copy(update={"segment_steps": 1})
    first = k * spec.segment_steps
    for j in range(spec.segment_steps - 1):
        state = run_segment(sub, state, first + j, CPU).state
    out = dict(state)
    out[STEP_KEY] = torch.tensor(first + spec.segment_steps, dtype=torch.int64)
    for name, t in out.items():
        if name.startswith("optim.") and name.endswith(".step"):
            out[name] = torch.full_like(t, float(first + spec.segment_steps))
    return out


def bf16_compute(spec, state, k):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return run_segment(spec, state, k, CPU).state


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--segments", type=int, default=4)
    ap.add_argument("--segment-steps", type=int, default=50)
    ap.add_argument("--replay-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--family", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--mkldnn", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    ap.add_argument("--hashes", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.replay_worker:
        replay_worker(args)
        return
    torch.set_num_threads(2)
    rows, figures = [], {}
    honest_all: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in FAMILIES:
            spec = bench_spec(family, args.segment_steps, args.segments)
            store = ArtifactStore(Path(tmp) / family)
            record = train_run(spec, store, ZeroMeter(), device=CPU, progress=False)
            hashes_file = Path(tmp) / f"{family}.json"
            hashes_file.write_text(json.dumps([h.hex() for h in record.state_hashes]))
            honest = []
            for cls in classes():
                env = dict(os.environ)
                if cls["isa"] == "default":
                    env["ATEN_CPU_CAPABILITY"] = "default"
                out = subprocess.run(
                    [sys.executable, __file__, "--replay-worker", "--family", family,
                     "--threads", str(cls["threads"]), "--mkldnn", str(int(bool(cls["mkldnn"]))),
                     "--store", str(store.root), "--hashes", str(hashes_file),
                     "--segments", str(args.segments), "--segment-steps", str(args.segment_steps)],
                    env=env, check=True, capture_output=True, text=True,
                )
                child = json.loads(out.stdout.strip().splitlines()[-1])
                for r in child["rows"]:
                    honest.append(r["distance"])
                    rows.append({"family": family, "kind": "honest", "class": cls,
                                 "capability": child["capability"], **r})
            cheats = []
            for name, fn in (("skip_last_step", skip_last_step), ("bf16_compute", bf16_compute)):
                for k in range(spec.num_segments):
                    end = fn(spec, store.get(record.state_hashes[k]), k)
                    d = worst(tensor_distances(end, store.get(record.state_hashes[k + 1])))
                    cheats.append(d.distance)
                    rows.append({"family": family, "kind": name, "segment": k,
                                 "worst_tensor": d.name, "distance": d.distance})
            figures[f"worst_honest_{family}"] = max(honest)
            figures[f"min_cheat_{family}"] = min(cheats)
            honest_all += honest
    worst_honest = max(honest_all)
    figures["worst_honest"] = worst_honest
    figures["suggested_tolerance"] = round_up_1sig(worst_honest * TOLERANCE_MULTIPLE)
    figures["default_tolerance"] = DEFAULT_TOLERANCE
    figures["honest_segments"] = len(honest_all)
    figures["honest_over_default"] = sum(d > DEFAULT_TOLERANCE for d in honest_all)
    print(f"{'family':6} {'kind':15} {'class':32} {'segment':>7} {'worst tensor':34} {'rel L2':>10}")
    for r in rows:
        cls = r.get("class")
        label = f"t{cls['threads']} onednn={'on' if cls['mkldnn'] else 'off'} isa={r['capability']}" if cls else "-"
        print(f"{r['family']:6} {r['kind']:15} {label:32} {r['segment']:>7} {r['worst_tensor'][:34]:34} "
              f"{r['distance']:10.3g}")
    print()
    for name, value in figures.items():
        print(f"{name:24} {value:.3g}")
    print(f"wrote {write_result('tolerance', figures, rows)}")


if __name__ == "__main__":
    main()
