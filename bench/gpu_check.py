"""GPU check: what issue 14 needs measured on a CUDA device, in one command (< 8 minutes).

1. **train**: each family (mlp, cnn, gpt in fp32, gpt in bf16, and gpt50m, the gpt example
   widened to 57 M parameters) for --segments segments of the default length on CUDA through
   ``train_run`` (durable checkpoints, the best energy meter: NVML's counter on Volta or newer),
   and the same segments without commitments: the stall the training thread sees on a GPU;
2. **same-class replay**: the last segment of each run replayed on the same device from its
   stored start checkpoint: end state hash and work digest must equal the run's, bit for bit;
3. **energy** per segment from the meter, with its source and description;
4. **cross-class**: the same segment of mlp, cnn and gpt (fp32 and bf16) replayed on the CPU
   from the GPU's start state, compared tensor by tensor with the GPU's end state as
   ``verifier/compare.py`` does (relative L2), against the spec's tolerance and the segment's
   own update;
5. **boundary pipeline** on a random state of --big-params parameters (default 1e9: weights and
   AdamW's two moments in fp32, 12 GB) constructed on the GPU, not trained: device-to-host copy
   into pinned memory (once through the worker's ``HostStager``: the enqueue is what the
   training thread waits for, ``big_critical_path_s``; then synchronously), BLAKE3 hash,
   safetensors serialize + atomic durable write (what the store does), safetensors
   ``save_file`` (direct) and the movement ``d_k``. Scaled down, and said so, when GPU
   memory, host memory or disk would not hold it.

Without CUDA it exits with code 2 and says why. ``--cpu-smoke`` runs the same code paths tiny
on the CPU (tests use it; nothing it measures is a GPU figure) and writes
``bench/results/gpu_check-smoke.json`` unless --out says otherwise. Exit code 1: a same-class
replay did not match (the JSON is written first).

Usage: python bench/gpu_check.py [--out bench/results/gpu_check.json] [--big-params 1e9]
Figures: replay_match_all, energy_j_per_segment_<check>, cross_class_worst_<check>,
stall_ratio_<check>, step_ms_<check>, d2h_gbps, hash_gbps, serialize_gbps, write_gbps,
direct_write_gbps, movement_gbps, big_params, big_boundary_s, big_critical_path_s, big_gil_max_hold_s
(the longest the writer's stages held the GIL at once: the stall a GPU training thread would see).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hashing import RESULTS, write_result  # noqa: E402
from overhead import LARGE, PartTimer, bench_spec, committed, durable_save_file, plain  # noqa: E402

from greenproof.energy import make_meter  # noqa: E402
from greenproof.engine import TrainState, run_segment  # noqa: E402
from greenproof.merkle import work_digest  # noqa: E402
from greenproof.movement import Metric  # noqa: E402
from greenproof.run import HostStager  # noqa: E402
from greenproof.spec import DEFAULT_SEGMENT_STEPS, JobSpec  # noqa: E402
from greenproof.statehash import state_hash  # noqa: E402
from greenproof.store import ArtifactStore, checkpoint_bytes  # noqa: E402
from greenproof.tasks import TASKS  # noqa: E402
from verifier.audit import relative_distance, update_size  # noqa: E402
from verifier.compare import tensor_distances, worst  # noqa: E402

CPU = torch.device("cpu")
NO_CUDA_EXIT = 2
CHECKS: tuple[tuple[str, str], ...] = (("mlp", "fp32"), ("cnn", "fp32"), ("gpt", "fp32"), ("gpt", "bf16"), (LARGE, "fp32"))
"""(family, precision) trained on the device; every one but the large is also replayed on the CPU."""
STATE_BYTES_PER_PARAM = 12  # weights, exp_avg, exp_avg_sq in fp32
TENSOR_PARAMS = 1 << 24  # the random state's tensors: 64 MiB each in fp32


def log(msg: str) -> None:
    print(f"gpu_check: {msg}", flush=True)


SMOKE_MODELS: dict[str, dict[str, Any]] = {
    "mlp": {"hidden": 16, "depth": 1},
    "cnn": {"channels": [4, 8], "hidden": 16},
    "gpt": {"block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16},
}
"""Smoke mode's tiny models (the large family's stand-in is the tiny gpt)."""


def check_spec(family: str, precision: str, smoke: bool, segment_steps: int, segments: int) -> JobSpec:
    """The spec a check trains; in smoke mode a tiny model of the family."""
    if not smoke:
        return bench_spec(family, segment_steps, segments).model_copy(update={"precision": precision})
    family = "gpt" if family == LARGE else family
    spec = bench_spec(family, segment_steps, segments)
    model = TASKS[spec.task].Config.model_validate(SMOKE_MODELS[family]).model_dump(mode="json")
    return spec.model_copy(update={"precision": precision, "model": model})


# ---------------------------------------------------------------------------- one family


def same_class_replay(spec: JobSpec, store: ArtifactStore, record: Any, k: int, dev: torch.device) -> dict[str, Any]:
    """Segment ``k`` replayed on ``dev`` from its stored start: bit-exact end hash and work digest?"""
    start = store.get(record.state_hashes[k])
    t = time.perf_counter()
    result = run_segment(spec, start, k, dev)
    replay_s = time.perf_counter() - t
    return {"segment": k, "replay_s": replay_s,
            "hash_match": state_hash(result.state) == record.state_hashes[k + 1],
            "work_digest_match": work_digest(result.losses) == record.work_digests[k + 1]}


def cross_class(spec: JobSpec, store: ArtifactStore, record: Any, k: int) -> dict[str, Any]:
    """Segment ``k`` replayed on the CPU from the device's start state, against the device's end."""
    start = store.get(record.state_hashes[k])
    claimed = store.get(record.state_hashes[k + 1])
    t = time.perf_counter()
    replayed = run_segment(spec, start, k, CPU).state
    cpu_s = time.perf_counter() - t
    distances = tensor_distances(replayed, claimed)
    w = worst(distances)
    weights, update = relative_distance(replayed, claimed), update_size(start, claimed)
    tolerance = spec.tolerance.rel_l2
    return {"segment": k, "cpu_replay_s": cpu_s, "cpu_threads": torch.get_num_threads(),
            "worst_tensor": w.name, "worst_distance": w.distance, "tolerance": tolerance,
            "weights_distance": weights, "segment_update": update,
            "within_tolerance": w.distance <= tolerance and weights < update / 10,
            "distances": {d.name: d.distance for d in distances}}


def check_family(family: str, precision: str, dev: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    spec = check_spec(family, precision, args.cpu_smoke, args.segment_steps, args.segments)
    k = spec.num_segments - 1
    row: dict[str, Any] = {"check": f"{family}-{precision}", "family": family, "precision": precision,
                           "device": str(dev), "segment_steps": spec.segment_steps, "segments": spec.num_segments,
                           "model": spec.model}
    if args.cpu_smoke and family == LARGE:
        row["stand_in"] = "gpt"
    plain(check_spec(family, precision, args.cpu_smoke, 2, 1), device=dev)  # warm-up: context, kernels, data
    with tempfile.TemporaryDirectory(dir=args.tmp) as d:
        times, record = committed(spec, d, device=dev, meter=make_meter(dev))
        store = ArtifactStore(d)
        plain_times, _ = plain(spec, device=dev)
        energies = [b - a for a, b in zip(record.energies_mj, record.energies_mj[1:], strict=False)]
        step_s = statistics.median(plain_times.steps_s)
        stall_s = (times.outside_s + sum(times.segments_s) - sum(plain_times.segments_s)) / spec.num_segments
        row |= {
            "energy_source": record.energy_source, "energy_meta": record.energy_meta,
            "energy_j_per_segment": [e / 1000 for e in energies],
            "segment_wall_s": times.segments_s, "plain_segment_wall_s": plain_times.segments_s,
            "step_s": step_s, "step_committed_s": statistics.median(times.steps_s),
            "blocked_s": times.outside_s / spec.num_segments, "final_flush_s": times.flush_s,
            "stall_s": stall_s, "stall_ratio": stall_s / (DEFAULT_SEGMENT_STEPS * step_s),
            "committed_wall_s": times.wall_s, "plain_wall_s": plain_times.wall_s,
            "replay": same_class_replay(spec, store, record, k, dev),
        }
        if family != LARGE:
            row["cross_class"] = cross_class(spec, store, record, k)
    return row


# ---------------------------------------------------------------------------- boundary pipeline


def mem_available() -> int:
    """Host memory available (``MemAvailable``), in bytes."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def fit_params(requested: int, dev: torch.device, tmp: str) -> tuple[int, str]:
    """The largest parameter count up to ``requested`` whose state fits: once on the device,
    three times in host memory (the stager's pinned copy, which the caching host allocator may
    keep, the pinned copy + the serialized bytes), once on disk; and what limited it."""
    limits = {"requested": requested,
              "host memory": int(mem_available() * 0.8 / 3.2 / STATE_BYTES_PER_PARAM),
              "disk": int(shutil.disk_usage(tmp).free * 0.8 / STATE_BYTES_PER_PARAM)}
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        limits["gpu memory"] = int(free * 0.85 / STATE_BYTES_PER_PARAM)
    why = min(limits, key=lambda name: limits[name])
    return limits[why], why


def random_state(params: int, dev: torch.device) -> TrainState:
    """An AdamW-shaped state of ``params`` parameters (weights, two moments, step), random, on ``dev``."""
    g = torch.Generator(device=dev).manual_seed(0)
    state: TrainState = {}
    for i in range(math.ceil(params / TENSOR_PARAMS)):
        n = min(TENSOR_PARAMS, params - i * TENSOR_PARAMS)
        name = f"layer{i:04d}.weight"
        state[f"model.{name}"] = torch.randn(n, device=dev, generator=g) * 0.02
        state[f"optim.{name}.exp_avg"] = torch.randn(n, device=dev, generator=g) * 1e-3
        state[f"optim.{name}.exp_avg_sq"] = torch.rand(n, device=dev, generator=g) * 1e-6
        state[f"optim.{name}.step"] = torch.tensor(100.0, device=dev)
    state["train.step"] = torch.tensor(100, dtype=torch.int64, device=dev)
    state["rng.key"] = torch.tensor(1, dtype=torch.int64, device=dev)
    return state


def device_to_host(state: TrainState, host: TrainState, dev: torch.device) -> None:
    for name, t in state.items():
        host[name].copy_(t, non_blocking=dev.type == "cuda")
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def boundary_pipeline(requested: int, dev: torch.device, tmp: str) -> dict[str, Any]:
    """Time each stage of one boundary on a random state of (up to) ``requested`` parameters."""
    if dev.type == "cuda":
        torch.cuda.empty_cache()  # what the training checks left cached
    params, limit = fit_params(requested, dev, tmp)
    log(f"boundary pipeline: {params / 1e9:.2f} B parameters ({limit} limits it), random state on {dev}")
    state = random_state(params, dev)
    pinned = dev.type == "cuda"
    timer = PartTimer()
    if pinned:  # the worker's path (greenproof.run.HostStager): what the training thread waits for
        stager = HostStager(dev)
        for _ in range(2):  # the first also allocates the pinned buffers
            copy = timer("stage", lambda: stager.stage(state))  # enqueue only: the critical path
            timer("stage_wait", copy.wait)  # the writer thread's wait for the copy to land
            copy = None  # one pinned copy at a time
    host: TrainState = timer("pin_alloc", lambda: {n: torch.empty(t.shape, dtype=t.dtype, pin_memory=pinned)
                                                   for n, t in state.items()})  # once per job
    for _ in range(2):  # the first also faults the pages in
        timer("d2h", lambda: device_to_host(state, host, dev))
    state.clear()  # the device's copy is not needed any more
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    nbytes = sum(t.numel() * t.element_size() for t in host.values())
    h = timer("hash", lambda: state_hash(host))
    with tempfile.TemporaryDirectory(dir=tmp) as d:
        store = ArtifactStore(d)
        raw = timer("serialize", lambda: checkpoint_bytes(host))  # ArtifactStore.put, stage by stage
        timer("write", lambda raw=raw: store.put_bytes(h, raw))
        del raw
        Path(store.path(h)).unlink()
        timer("direct", lambda: durable_save_file(host, Path(d) / "direct"))
    metric = timer("metric_init", lambda: Metric(host))  # once per job
    timer("movement", lambda: metric.fixed(host, host))  # the cost of d_k between two states
    wall = {name: min(v) for name, v in timer.wall.items()}
    stages = ("d2h", "hash", "serialize", "write", "movement")
    return {"params": params, "limited_by": limit, "requested_params": requested, "state_bytes": nbytes,
            "tensors": len(host), "pinned": pinned, "constructed_not_trained": True,
            **{f"{name}_s": s for name, s in wall.items()},
            **{f"{name}_gil_max_s": timer.gil_max(name) for name in (*stages, "direct")},
            **{f"{name}_gbps": nbytes / 1e9 / wall[name] for name in (*stages, "direct")},
            "boundary_s": sum(wall[name] for name in stages),
            # the training thread's share of a boundary: HostStager's enqueue on CUDA (the copy
            # lands while the next segment trains), the whole copy elsewhere
            "critical_path_s": wall["stage"] if "stage" in wall else wall["d2h"],
            **({"stage_wait_gbps": nbytes / 1e9 / wall["stage_wait"]} if "stage_wait" in wall else {})}


# ---------------------------------------------------------------------------- main


def figures_of(rows: list[dict[str, Any]], pipeline: dict[str, Any]) -> dict[str, float]:
    figures: dict[str, float] = {}
    trained = [r for r in rows if "replay" in r]
    figures["replay_match_all"] = float(bool(trained) and all(
        r["replay"]["hash_match"] and r["replay"]["work_digest_match"] for r in trained))
    figures["checks_failed"] = sum("error" in r for r in (*rows, pipeline))
    for r in trained:
        c = r["check"]
        figures[f"energy_j_per_segment_{c}"] = statistics.median(r["energy_j_per_segment"])
        figures[f"stall_ratio_{c}"] = r["stall_ratio"]
        figures[f"step_ms_{c}"] = r["step_s"] * 1e3
        if "cross_class" in r:
            figures[f"cross_class_worst_{c}"] = r["cross_class"]["worst_distance"]
    if "params" in pipeline:
        for name in ("d2h", "hash", "serialize", "write", "direct", "movement"):
            key = "direct_write_gbps" if name == "direct" else f"{name}_gbps"
            figures[key] = pipeline[f"{name}_gbps"]
        figures["big_params"] = pipeline["params"]
        figures["big_boundary_s"] = pipeline["boundary_s"]
        figures["big_critical_path_s"] = pipeline["critical_path_s"]
        figures["big_gil_max_hold_s"] = max(pipeline[f"{name}_gil_max_s"] for name in ("hash", "serialize", "write",
                                                                                     "movement"))
    return figures


def guarded(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``fn()``, or a row saying how it failed: one failing check must not lose the others' results."""
    try:
        return fn()
    except Exception as e:  # recorded in the JSON, and the exit code says so
        traceback.print_exc()
        return {"check": name, "error": f"{type(e).__name__}: {e}"}


def run_checks(dev: torch.device, args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    t0 = time.perf_counter()
    over_budget: Callable[[], bool] = lambda: time.perf_counter() - t0 > args.budget_s  # noqa: E731
    skipped = {"skipped": f"time budget of {args.budget_s} s spent"}
    rows: list[dict[str, Any]] = []
    for family, precision in CHECKS:
        name = f"{family}-{precision}"
        if over_budget():
            rows.append({"check": name, **skipped})
            continue
        log(f"{family} {precision}: {args.segments} segments on {dev}, replays, cross-class")
        rows.append(guarded(name, lambda f=family, p=precision: check_family(f, p, dev, args)))
    pipeline = {"check": "boundary-pipeline", **skipped} if over_budget() else guarded(
        "boundary-pipeline", lambda: {"check": "boundary-pipeline",
                                      **boundary_pipeline(int(args.big_params), dev, args.tmp)})
    return rows, pipeline


def print_tables(rows: list[dict[str, Any]], pipeline: dict[str, Any]) -> None:
    print(f"{'check':<14}{'step ms':>9}{'J/segment':>11}{'source':>13}{'replay':>8}{'stall %':>9}"
          f"{'cross-class worst':>19}  tensor")
    for r in rows:
        if "skipped" in r or "error" in r:
            print(f"{r['check']:<14}  {'skipped: ' + r['skipped'] if 'skipped' in r else 'FAILED: ' + r['error']}")
            continue
        cc = r.get("cross_class")
        match = r["replay"]["hash_match"] and r["replay"]["work_digest_match"]
        print(f"{r['check']:<14}{r['step_s'] * 1e3:>9.2f}{statistics.median(r['energy_j_per_segment']):>11.2f}"
              f"{r['energy_source']:>13}{'exact' if match else 'DIFF':>8}{100 * r['stall_ratio']:>9.2f}"
              f"{cc['worst_distance'] if cc else float('nan'):>19.2e}  {cc['worst_tensor'] if cc else '-'}")
    if "params" not in pipeline:
        print(f"\nboundary pipeline: {pipeline.get('skipped') or 'FAILED: ' + pipeline['error']}")
    else:
        print(f"\nboundary pipeline, {pipeline['params'] / 1e9:.2f} B parameters "
              f"({pipeline['state_bytes'] / 1e9:.1f} GB, random, {'pinned' if pipeline['pinned'] else 'pageable'}):")
        for name in ("d2h", "hash", "serialize", "write", "direct", "movement"):
            print(f"  {name:<10}{pipeline[f'{name}_s']:>8.2f} s {pipeline[f'{name}_gbps']:>8.2f} GB/s"
                  f"  longest GIL hold {pipeline[f'{name}_gil_max_s'] * 1e3:>7.0f} ms")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-smoke", "--dry-run", action="store_true", dest="cpu_smoke",
                    help="run every code path tiny on the CPU (tests); no GPU figure comes out of it")
    ap.add_argument("--out", type=Path, default=None, help="the JSON written (default bench/results/gpu_check.json)")
    ap.add_argument("--segments", type=int, default=None, help="segments per family (default 3; smoke 2)")
    ap.add_argument("--segment-steps", type=int, default=None,
                    help=f"steps per segment (default {DEFAULT_SEGMENT_STEPS}; smoke 2)")
    ap.add_argument("--big-params", type=float, default=None, help="boundary pipeline parameters (default 1e9)")
    ap.add_argument("--budget-s", type=float, default=300,
                    help="skip what is left after this many seconds (the pipeline last: < 8 minutes in all)")
    ap.add_argument("--tmp", default=tempfile.gettempdir(), help="where checkpoints are written")
    ap.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default torch's; smoke 1)")
    args = ap.parse_args(argv)
    smoke = args.cpu_smoke
    if args.threads or smoke:
        torch.set_num_threads(args.threads or 1)
    args.segments = args.segments or (2 if smoke else 3)
    args.segment_steps = args.segment_steps or (2 if smoke else DEFAULT_SEGMENT_STEPS)
    args.big_params = args.big_params or (2e5 if smoke else 1e9)
    out = args.out or RESULTS / ("gpu_check-smoke.json" if smoke else "gpu_check.json")
    if not smoke and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device is visible to torch {torch.__version__} "
              f"(built with CUDA {torch.version.cuda or 'none'}): run it on a machine with an NVIDIA GPU "
              "and a CUDA build of torch, or pass --cpu-smoke to exercise its code paths on the CPU",
              file=sys.stderr)
        return NO_CUDA_EXIT
    dev = CPU if smoke else torch.device("cuda")
    t0 = time.perf_counter()
    rows, pipeline = run_checks(dev, args)
    figures = figures_of(rows, pipeline)
    print_tables(rows, pipeline)
    note = ("CPU smoke run: code paths only, no GPU measurement" if smoke
            else f"{torch.cuda.get_device_name(dev)}; random {figures.get('big_params', 0) / 1e9:.2f} B-parameter "
                 "state for the boundary pipeline (constructed, not trained)")
    rows.append(pipeline)
    log(f"took {time.perf_counter() - t0:.0f} s; wrote {write_result('gpu_check', figures, rows, note=note, path=out)}")
    if not figures["replay_match_all"] or figures["checks_failed"]:
        log("a check failed or a same-class replay did NOT reproduce its end state bit for bit (see the JSON)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
