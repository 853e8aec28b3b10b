"""State hashing throughput (docs/protocol.md §3 framing) against raw hashlib SHA-256.

Usage: python bench/hashing.py [--mb 256]
Figure: hash_gbps (target >= 1 GB/s); also raw_sha256_gbps, the ceiling on this CPU.
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


def write_result(name: str, figures: dict[str, float], rows: list[dict[str, Any]]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    doc = {"bench": name, "machine": machine_info(), "figures": figures, "rows": rows}
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def best_of(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=int, default=256, help="state size in MiB")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    n_tensors = 64
    per = args.mb * 2**20 // 4 // n_tensors
    g = torch.Generator().manual_seed(0)
    state = {f"model.layer{i}.weight": torch.randn(per, generator=g) for i in range(n_tensors)}
    state["train.step"] = torch.tensor(1)
    nbytes = sum(t.numel() * t.element_size() for t in state.values())
    raw = b"".join(memoryview(t.numpy()).cast("B") for t in list(state.values())[:8])  # a 1/8 sample

    t_state = best_of(lambda: state_hash(state), args.reps)
    t_raw = best_of(lambda: hashlib.sha256(raw).digest(), args.reps) * nbytes / len(raw)
    bf16 = {k: v.to(torch.bfloat16) for k, v in list(state.items())[:16]}
    bf16_bytes = sum(t.numel() * t.element_size() for t in bf16.values())
    t_bf16 = best_of(lambda: state_hash(bf16), args.reps)

    rows = [
        {"what": "state_hash fp32", "bytes": nbytes, "seconds": t_state, "gbps": nbytes / t_state / 1e9},
        {"what": "state_hash bf16", "bytes": bf16_bytes, "seconds": t_bf16, "gbps": bf16_bytes / t_bf16 / 1e9},
        {"what": "raw hashlib sha256", "bytes": nbytes, "seconds": t_raw, "gbps": nbytes / t_raw / 1e9},
    ]
    figures = {
        "hash_gbps": rows[0]["gbps"],
        "raw_sha256_gbps": rows[2]["gbps"],
        "hash_vs_raw": rows[0]["gbps"] / rows[2]["gbps"],
    }
    print(f"{'what':<22}{'MiB':>8}{'s':>9}{'GB/s':>8}")
    for r in rows:
        print(f"{r['what']:<22}{r['bytes'] / 2**20:>8.0f}{r['seconds']:>9.3f}{r['gbps']:>8.2f}")
    print(f"hash_gbps {figures['hash_gbps']:.2f} (target >= 1); framing costs {1 - figures['hash_vs_raw']:.1%} vs raw SHA-256")
    print(f"wrote {write_result('hashing', figures, rows)}")


if __name__ == "__main__":
    main()
