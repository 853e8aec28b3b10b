"""State hashing throughput (BLAKE3 over the docs/protocol.md §3.4 framing) against
memcpy in the same run, for states of 100 MB to 2 GB; SHA-256 of the same bytes for scale.

Usage: python bench/hashing.py [--sizes-mb 100,500,1000,2000] [--reps 3]
Figures: hash_gbps, memcpy_gbps, hash_vs_memcpy_min (target >= 0.5), sha256_gbps.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from greenproof.statehash import state_hash  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def machine_info() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "loadavg_1m": os.getloadavg()[0],
    }


def write_result(name: str, figures: dict[str, float], rows: list[dict[str, Any]], note: str | None = None,
                 path: Path | None = None) -> Path:
    """``bench/results/NAME.json`` (or ``path``): the bench, the machine (with ``note``), figures, rows."""
    path = path or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    machine = machine_info() | ({"note": note} if note else {})
    doc = {"bench": name, "machine": machine, "figures": figures, "rows": rows}
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def best_of(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def make_state(nbytes: int, n_tensors: int = 64) -> dict[str, torch.Tensor]:
    per = nbytes // 4 // n_tensors
    g = torch.Generator().manual_seed(0)
    state = {f"model.layer{i}.weight": torch.randn(per, generator=g) for i in range(n_tensors)}
    state["train.step"] = torch.tensor(1)
    return state


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes-mb", default="100,500,1000,2000", help="state sizes in MB (10^6 bytes)")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for mb in (int(x) for x in args.sizes_mb.split(",")):
        state = make_state(mb * 10**6)
        nbytes = sum(t.numel() * t.element_size() for t in state.values())
        dest = {k: torch.zeros_like(v) for k, v in state.items()}  # pages touched: a warm copy

        pairs = [(dest[k].numpy(), v.numpy()) for k, v in state.items()]

        def memcpy(pairs=pairs) -> None:  # plain single-threaded memcpy, as numpy does it
            for out, src in pairs:
                np.copyto(out, src)

        sample = b"".join(memoryview(t.numpy()).cast("B") for t in list(state.values())[:8])  # 1/8
        t_hash = best_of(lambda state=state: state_hash(state), args.reps)
        t_copy = best_of(memcpy, args.reps)
        t_sha = best_of(lambda sample=sample: hashlib.sha256(sample).digest(), args.reps) * nbytes / len(sample)
        rows.append({"mb": mb, "bytes": nbytes, "hash_s": t_hash, "hash_gbps": nbytes / t_hash / 1e9,
                     "memcpy_gbps": nbytes / t_copy / 1e9, "sha256_gbps": nbytes / t_sha / 1e9,
                     "hash_vs_memcpy": t_copy / t_hash})
        del state, dest, sample, pairs
    figures = {
        "hash_gbps": min(r["hash_gbps"] for r in rows),
        "memcpy_gbps": min(r["memcpy_gbps"] for r in rows),
        "hash_vs_memcpy_min": min(r["hash_vs_memcpy"] for r in rows),
        "sha256_gbps": min(r["sha256_gbps"] for r in rows),
    }
    print(f"{'state MB':>9}{'BLAKE3 s':>10}{'BLAKE3 GB/s':>13}{'memcpy GB/s':>13}{'SHA-256 GB/s':>14}{'hash/memcpy':>13}")
    for r in rows:
        print(f"{r['mb']:>9}{r['hash_s']:>10.3f}{r['hash_gbps']:>13.2f}{r['memcpy_gbps']:>13.2f}"
              f"{r['sha256_gbps']:>14.2f}{r['hash_vs_memcpy']:>13.2f}")
    print(f"state hashing at least {figures['hash_vs_memcpy_min']:.2f} x memcpy throughput (target >= 0.5)")
    print(f"wrote {write_result('hashing', figures, rows)}")


if __name__ == "__main__":
    main()
