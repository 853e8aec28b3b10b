"""Per-boundary commitment cost and provider disk for 125 M, 1 B and 7 B parameters on a
24 GB consumer GPU, COMPUTED (not measured) from the throughputs bench/overhead.py measured
on this machine and from stated assumptions about the GPU machine.

Measured here (bench/results/overhead.json, the gpt50m state, each part's slowest repetition):
BLAKE3 hash, durable write, movement ``d_k``, the longest GIL hold of the store's write
(safetensors ``save_file``, which has no separate serialization stage);
this machine's disk is a shared VM disk, so the write is computed at an assumed NVMe speed. Assumed (ASSUMPTIONS below): the state
layout (12 bytes per parameter: fp32 weights + AdamW's two moments; training also holds fp32
gradients, 16 bytes per parameter), the device-to-host copy into pinned memory (PCIe 4.0 x16),
the NVMe write speed, and the GPU's training throughput (6 N T FLOPs per step of T tokens).

Usage: python bench/extrapolate.py [--tokens-per-step 65536] [--job-segments 1000]
Figures: critical_ratio_<size> (device-to-host copy / 100-step segment), background_ratio_<size>
(hash + write + movement / segment, < 1: the writer keeps up), gil_hold_ratio_<size>
(the writer's longest GIL hold, scaled linearly from the one measured, / segment), disk_gb_all_<size>.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hashing import RESULTS, write_result  # noqa: E402

from greenproof.spec import DEFAULT_SEGMENT_STEPS  # noqa: E402

ASSUMPTIONS: dict[str, Any] = {
    "gpu_memory_gb": 24,
    "state_bytes_per_param": 12,  # fp32 weights, exp_avg, exp_avg_sq (greenproof's state layout)
    "train_bytes_per_param": 16,  # + fp32 gradients; activations on top
    "d2h_gbps": 25.0,  # PCIe 4.0 x16, pinned host memory
    "nvme_write_gbps": 3.0,
    "gpu_bf16_tflops": 165.0,  # dense bf16 peak, RTX 4090 class
    "mfu": 0.40,  # achieved fraction of peak
    "flops_per_param_token": 6,  # forward + backward
}
SIZES = {"125M": 125e6, "1B": 1e9, "7B": 7e9}
MS = (1, 10, 100)


def slowest_throughputs(row: dict[str, Any]) -> dict[str, float]:
    """GB/s of each part in its slowest repetition (this VM's disk and allocator swing 2-5x between
    repetitions: the slowest is the conservative basis), and the longest GIL hold per GB."""
    gb = row["state_bytes"] / 1e9
    runs = row["parts_runs_s"]
    return {"hash_gbps": gb / max(runs["hash"]), "serialize_gbps": gb / max(runs["serialize"]),
            "write_gbps": gb / max(runs["write"]), "movement_gbps": gb / max(runs["movement"]),
            # the store writes with safetensors' save_file (no serialization stage): its GIL hold
            "gil_max_hold_s_per_gb": row.get("direct_gil_max_s", row["gil_max_s"]) / gb}


def row_for(name: str, params: float, measured: dict[str, float], tokens: int, job_segments: int) -> dict[str, Any]:
    a = ASSUMPTIONS
    gb = params * a["state_bytes_per_param"] / 1e9
    segment_s = DEFAULT_SEGMENT_STEPS * a["flops_per_param_token"] * params * tokens / (a["gpu_bf16_tflops"] * 1e12 * a["mfu"])
    d2h = gb / a["d2h_gbps"]
    # the store writes with save_file straight from the tensors: no serialization stage
    hash_s, serialize = gb / measured["hash_gbps"], 0.0
    write_here, write_nvme = gb / measured["write_gbps"], gb / a["nvme_write_gbps"]
    movement = gb / measured["movement_gbps"]
    gil_hold = measured["gil_max_hold_s_per_gb"] * gb  # the writer's longest GIL hold, linear in size
    background = hash_s + serialize + write_nvme + movement
    row = {
        "size": name, "params": params, "state_gb": gb,
        "train_gb": params * a["train_bytes_per_param"] / 1e9,
        "fits_24gb": params * a["train_bytes_per_param"] / 1e9 < a["gpu_memory_gb"],
        "segment_s": segment_s, "d2h_s": d2h, "hash_s": hash_s, "serialize_s": serialize,
        "write_nvme_s": write_nvme, "write_here_s": write_here, "movement_s": movement,
        "background_s": background, "gil_hold_s": gil_hold, "gil_hold_ratio": gil_hold / segment_s, "critical_ratio": d2h / segment_s, "background_ratio": background / segment_s,
        "sync_ratio": (d2h + background) / segment_s,
        "disk_gb_all": (job_segments + 1) * gb,
    }
    for m in MS[1:]:
        # the worker's sparse checkpoints (worker/checkpoints.py): ceil(N/m) kept + 2 in flight
        row[f"disk_gb_m{m}"] = (math.ceil(job_segments / m) + 2) * gb
        row[f"regen_h_m{m}"] = (m - 1) * segment_s / 3600
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens-per-step", type=int, default=65536, help="e.g. 64 x 1024 (gradient accumulation)")
    ap.add_argument("--job-segments", type=int, default=1000)
    args = ap.parse_args()
    source = RESULTS / "overhead.json"
    if not source.exists():
        sys.exit(f"extrapolate: {source} is missing: run python bench/overhead.py first")
    big = max(json.loads(source.read_text())["rows"], key=lambda r: r["state_bytes"])
    measured = slowest_throughputs(big)
    rows = [row_for(n, p, measured, args.tokens_per_step, args.job_segments) for n, p in SIZES.items()]
    print(f"COMPUTED, not measured: {args.tokens_per_step} tokens/step, {DEFAULT_SEGMENT_STEPS}-step segments, "
          f"{ASSUMPTIONS['gpu_bf16_tflops']:.0f} TFLOPS x {ASSUMPTIONS['mfu']:.0%}, D2H {ASSUMPTIONS['d2h_gbps']} GB/s, "
          f"NVMe {ASSUMPTIONS['nvme_write_gbps']} GB/s; measured here (slowest repetition): hash "
          f"{measured['hash_gbps']:.2f}, serialize {measured['serialize_gbps']:.2f}, movement "
          f"{measured['movement_gbps']:.2f}, disk {measured['write_gbps']:.2f} GB/s, GIL hold "
          f"{measured['gil_max_hold_s_per_gb']:.2f} s/GB")
    print(f"{'size':<6}{'state GB':>9}{'fits 24GB':>10}{'segment s':>10}{'D2H s':>7}{'hash s':>7}{'ser. s':>7}"
          f"{'NVMe s':>7}{'move s':>7}{'GIL s':>7}{'D2H %':>7}{'bg %':>7}{'disk all GB':>12}{'m=100 GB':>9}"
          f"{'regen h':>8}")
    for r in rows:
        print(f"{r['size']:<6}{r['state_gb']:>9.1f}{'yes' if r['fits_24gb'] else 'NO':>10}{r['segment_s']:>10.0f}"
              f"{r['d2h_s']:>7.2f}{r['hash_s']:>7.2f}{r['serialize_s']:>7.2f}{r['write_nvme_s']:>7.2f}"
              f"{r['movement_s']:>7.2f}{r['gil_hold_s']:>7.2f}{100 * r['critical_ratio']:>7.2f}"
              f"{100 * r['background_ratio']:>7.1f}"
              f"{r['disk_gb_all']:>12.0f}{r['disk_gb_m100']:>9.0f}{r['regen_h_m100']:>8.1f}")
    figures: dict[str, float] = {}
    for r in rows:
        for key in ("critical_ratio", "background_ratio", "sync_ratio", "gil_hold_ratio", "disk_gb_all", "segment_s"):
            figures[f"{key}_{r['size']}"] = r[key]
    note = "computed from measured throughputs and stated assumptions; nothing here ran on a GPU"
    basis = {"assumptions": ASSUMPTIONS, "tokens_per_step": args.tokens_per_step, "measured": measured}
    print(f"wrote {write_result('extrapolate', figures, [basis, *rows], note=note)}")


if __name__ == "__main__":
    main()
