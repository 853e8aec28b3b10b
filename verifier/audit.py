"""The verifier's decision logic (docs/protocol.md §4): pure, no chain.

Given the job spec, the opened segments (their start/end state hashes and
cumulative energies as revealed on chain) and where the provider serves its
checkpoints, decide per audited segment ``i``:

1. the requester's side: the spec's pinned dataset must be obtainable; if it
   is not, the segment cannot be judged and the verifier **abstains** (no vote:
   a removed dataset must never make an honest provider look like a cheat);
2. fetch the start and end checkpoints from ``{result_uri}/{hash}`` and check
   their hashes (unfetchable or mis-hashed -> fraud); for ``i = 0`` the start
   hash must be the spec's seeded initial state ``init_state(spec)``;
3. check every fetched state's whole-state invariants
   (:mod:`verifier.invariants`: the exact tensor set, counters, RNG key,
   finiteness, optimizer moments within the clipping bound) -> fraud;
4. the energy counter must not go backwards (``end_energy >= start_energy``);
   the segment's movement (:mod:`verifier.movement`): the committed states'
   distance ``fixed(dist(start, end))`` must be the claimed ``end_move -
   start_move`` within one unit (same class: the replay's end is the end);
5. replay segment ``i`` from the fetched start with ``run_segment``: the very
   function the worker trained with;
6. same determinism class: the replayed end hash must equal ``end_hash``, and
   the replay's work digest (:func:`greenproof.merkle.work_digest` of its
   per-step losses) must be the one the opened end seal commits to,
   ``seal(job_id, i + 1, w) == end_seal`` (check ``seal``): a mismatch is
   fraud, the provider's claimed losses are not what the replay computes;
   other class (:mod:`verifier.compare`): **every** tensor of the replayed end
   within ``spec.tolerance.rel_l2`` of the claimed one (integers exactly), AND
   the weights closer than ``update_fraction`` times the segment's own update
   size ``||end - start|| / ||end||`` — so a cheat that barely moves the
   weights cannot hide inside the tolerance;
7. an energy claim more than ``energy_warn_ratio`` times the replay's own
   measurement, or less than its inverse, is a warning in the report, never a
   fraud vote.

Besides the sampled segments the delivered model is checked: the final
checkpoint must be fetchable and hash to the committed ``final_state_hash``
(what the requester pays for; a swapped model is fraud whatever the sample).
And the job's movement claims are checked against its known boundaries (the
``triangle`` check, :mod:`verifier.movement`): boundary 0, every opened
boundary and boundary N, each consecutive pair no farther apart than the
movement claimed between them.

A cross-class pass is only a vote: the vote decides (docs/protocol.md §4). The rule is
asymmetric on purpose: a mismatch in the same class is proof; a cross-class
distance above tolerance is the verifier's honest judgement.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from greenproof.spec import JobSpec
from verifier.evidence import AuditReport, FinalCheck, SegmentCheck, TriangleCheck, Verdict
from verifier.movement import (
    bridged_segments,
    check_segment_movement,
    check_triangle,
    known_boundaries,
)

if TYPE_CHECKING:
    from greenproof.energy import EnergyMeter

log = logging.getLogger(__name__)

Fetch = Callable[[str, bytes], dict[str, torch.Tensor]]


class OpenedSegment(BaseModel):
    """One audited segment as revealed by ``SegmentOpened``: both boundaries' state hash,
    cumulative energy, seal and cumulative movement. The seals and movements are None only
    for a segment judged from files (``verifier judge``), where no job committed any: the
    ``seal`` and ``movement`` checks do not run."""

    model_config = ConfigDict(frozen=True)

    index: int
    start_hash: bytes
    start_energy_mj: int
    end_hash: bytes
    end_energy_mj: int
    start_seal: bytes | None
    end_seal: bytes | None
    start_move: int | None
    end_move: int | None


class AuditJob(BaseModel):
    """Everything the decision needs, read from the chain (or given by a test)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    job_id: int
    spec: JobSpec
    result_uri: str
    provider_class: bytes
    #: every audited segment: the uniform indices, then the movement samples' segments
    audit_indices: list[int]
    opened: list[OpenedSegment]
    final_state_hash: bytes | None = None
    energy_mj: int | None = None
    #: the committed total movement ``move_N`` (None: not a chain job, no triangle check)
    move_total: int | None = None
    #: the movement samples' targets ``u_j`` (for the report)
    movement_draws: list[int] = Field(default_factory=list)
    spec_uri: str | None = None
    provider: str | None = None
    chain_id: int | None = None
    market: str | None = None


@dataclass(frozen=True)
class AuditConfig:
    """Knobs of the decision and of the replay budget."""

    #: other class: distance must also be below this fraction of the segment's update size
    update_fraction: float = 0.1
    #: warn when the claimed segment energy exceeds this multiple of the replay's measurement
    energy_warn_ratio: float = 3.0
    #: replays run at once (each in its own process when > 1)
    max_parallel: int = 1
    #: torch intra-op threads per replay (None: leave torch's default)
    threads_per_replay: int | None = None
    #: device to replay on (None: the engine's default)
    device: str | None = None
    #: measure the replay's energy (for the energy warning)
    measure_energy: bool = True
    #: makes the replay's meter, not started (None: the best real one for ``device``); tests
    #: pass ``greenproof.energy.FakeMeter``. Picklable (a class, a partial) when max_parallel > 1
    meter_factory: Callable[[], EnergyMeter] | None = None
    #: check the delivered final model too
    check_final: bool = True
    #: check the movement claims between the known boundaries (needs ``move_total``)
    check_triangle: bool = True
    #: also replay every segment not drawn whose two boundaries are known (boundary 0, an
    #: opened boundary, boundary N): docs/protocol.md §4, bridged segments
    check_bridged: bool = True
    #: show rich progress bars
    progress: bool = False
    #: on CPU, replay with the thread count whose determinism class is the
    #: provider's when one exists (1 .. cpu count), so the check can be exact
    match_provider_threads: bool = True


# --------------------------------------------------------------------------- distances


def _params(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's floating parameters and buffers (what "the weights" means)."""
    out = {n: t for n, t in state.items() if n.startswith("model.") and t.is_floating_point()}
    if not out:  # an engine that does not prefix: fall back to every floating tensor
        out = {n: t for n, t in state.items() if t.is_floating_point()}
    return out


def _l2(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor] | None = None) -> float:
    total = 0.0
    for name, t in a.items():
        x = t.detach().double()
        if b is not None:
            other = b.get(name)
            if other is None or other.shape != t.shape:
                return float("inf")
            x = x - other.detach().double()
        total += float((x * x).sum())
    return total**0.5


def relative_distance(replayed: dict[str, torch.Tensor], claimed: dict[str, torch.Tensor]) -> float:
    """``||replayed - claimed|| / ||claimed||`` over the model parameters."""
    rp, cp = _params(replayed), _params(claimed)
    if set(rp) != set(cp):
        return float("inf")
    norm = _l2(cp)
    return _l2(rp, cp) / norm if norm > 0 else (0.0 if _l2(rp) == 0 else float("inf"))


def update_size(start: dict[str, torch.Tensor], end: dict[str, torch.Tensor]) -> float:
    """The segment's own update ``||end - start|| / ||end||`` over the model parameters."""
    return relative_distance(start, end)


# --------------------------------------------------------------------------- one segment


def _hex(h: bytes | None) -> str | None:
    return None if h is None else "0x" + h.hex()


def _fetch(fetch: Fetch, result_uri: str, h: bytes) -> tuple[dict[str, torch.Tensor] | None, str | None]:
    """The verified state or the reason it could not be had."""
    from greenproof.statehash import state_hash

    try:
        state = fetch(result_uri, h)
    except Exception as exc:  # any failure to obtain a verified checkpoint is the provider's
        return None, f"checkpoint {_hex(h)} not available: {exc}"
    got = state_hash(state)
    if got != h:
        return None, f"checkpoint {_hex(h)} hashes to {_hex(got)}"
    return state, None


@functools.lru_cache(maxsize=4)
def _meter_source(device: str | None) -> str:
    """Pick the energy source once per process (and log the fallbacks once)."""
    from greenproof.energy import make_meter

    meter = make_meter(device)
    meter.close()
    return meter.source


def _measure(device: str | None, meter_factory: Callable[[], EnergyMeter] | None) -> EnergyMeter:
    """A started meter: ``meter_factory()`` when given, else the best real one for ``device``."""
    from greenproof.energy import make_meter

    meter = meter_factory() if meter_factory is not None else make_meter(device, prefer=_meter_source(device))
    meter.start()
    return meter


def check_segment(
    spec: JobSpec,
    seg: OpenedSegment,
    result_uri: str,
    provider_class: bytes,
    config: AuditConfig,
    fetch: Fetch | None = None,
    *,
    job_id: int | None = None,
) -> SegmentCheck:
    """All of §4 for one opened segment of job ``job_id`` (None: judged from files, no seal
    to check). Safe to run in a worker process; torch's thread count is restored afterwards."""
    threads = torch.get_num_threads()
    try:
        return _check_segment(spec, seg, result_uri, provider_class, config, fetch, job_id)
    finally:
        torch.set_num_threads(threads)


def _check_segment(
    spec: JobSpec,
    seg: OpenedSegment,
    result_uri: str,
    provider_class: bytes,
    config: AuditConfig,
    fetch: Fetch | None,
    job_id: int | None,
) -> SegmentCheck:
    from greenproof.engine import determinism_class, run_segment, select_device
    from greenproof.merkle import seal, work_digest
    from greenproof.statehash import state_hash

    if fetch is None:
        from greenproof.store import fetch_state as fetch
    if config.threads_per_replay:
        torch.set_num_threads(config.threads_per_replay)
    if config.match_provider_threads:
        _match_threads(spec, select_device(config.device), provider_class)
    check = SegmentCheck(
        index=seg.index,
        start_hash=_hex(seg.start_hash),
        end_hash=_hex(seg.end_hash),
        start_energy_mj=seg.start_energy_mj,
        end_energy_mj=seg.end_energy_mj,
        claimed_energy_mj=max(0, seg.end_energy_mj - seg.start_energy_mj),
        tolerance=spec.tolerance.rel_l2,
    )
    if seg.end_energy_mj < seg.start_energy_mj:
        check.fraud("energy_counter", f"energy counter goes backwards ({seg.start_energy_mj} -> {seg.end_energy_mj} mJ)")
    if seg.index == 0 and seg.start_energy_mj != 0:
        check.fraud("energy_counter", f"energy at boundary 0 must be 0, got {seg.start_energy_mj} mJ")
    check.passed("energy_counter")

    # --- the requester's side: without the spec's dataset nothing can be judged (abstain)
    if not _dataset_available(spec, check):
        return check

    start = _start_state(check, spec, seg, result_uri, config, fetch)

    end = _end_state(check, spec, seg, result_uri, fetch)
    if start is None or end is None or check.verdict is Verdict.FRAUD:
        return check

    # --- the claimed movement: the committed states' distance (no replay needed)
    check_segment_movement(check, spec, seg.index, seg.start_move, seg.end_move, start, end)
    if check.verdict is Verdict.FRAUD:
        return check

    # --- replay with the worker's own code path
    meter = _measure(config.device, config.meter_factory) if config.measure_energy else None
    t0 = time.perf_counter()
    try:
        result = run_segment(spec, start, seg.index, device=config.device)
    except Exception as exc:
        # the dataset loaded above, so a start state the engine cannot run is the provider's fault
        check.fraud("replay", f"replay failed from the committed start state: {type(exc).__name__}: {exc}")
        return check
    finally:
        check.replay_seconds = time.perf_counter() - t0
        if meter is not None:
            check.measured_energy_mj = int(meter.read_mj())
            meter.close()
    check.passed("replay")
    replay = result.state
    replay_hash = state_hash(replay)
    check.replay_hash = _hex(replay_hash)
    digest = work_digest(result.losses)
    check.work_digest = _hex(digest)

    mine = determinism_class(spec, select_device(config.device))
    check.replay_class = _hex(mine)
    check.same_class = mine == provider_class
    if replay_hash == seg.end_hash:
        check.distance = 0.0
    elif check.same_class:
        check.fraud(
            "comparison",
            f"replayed end state {_hex(replay_hash)} differs from the committed {_hex(seg.end_hash)} "
            "(same determinism class: the replay must be bit-identical)"
        )
    else:
        _compare_across_classes(check, spec, config, start, replay, end)
    check.passed("comparison")
    if check.same_class and job_id is not None and seg.end_seal is not None:
        _check_seal(check, seal(job_id, seg.index + 1, digest), seg.end_seal)

    _energy_warning(check, config)
    return check


def _check_seal(check: SegmentCheck, replayed_seal: bytes, end_seal: bytes) -> None:
    """Same class: the opened end seal must be the seal of the replay's own work digest."""
    if replayed_seal != end_seal:
        check.fraud("seal", f"seal mismatch: the end seal {_hex(end_seal)} does not commit to the "
                    f"replay's work digest {check.work_digest} (the provider's claimed losses are not "
                    "what the replay computes)")
    check.passed("seal")


def _start_state(check: SegmentCheck, spec: JobSpec, seg: OpenedSegment, result_uri: str,
                 config: AuditConfig, fetch: Fetch) -> dict[str, torch.Tensor] | None:
    """The segment's start: the spec's seeded initial state for segment 0, else the fetched
    checkpoint (hash and whole-state invariants checked); None when it is unusable (fraud)."""
    from greenproof.engine import init_state
    from greenproof.statehash import state_hash

    if seg.index == 0:
        start = init_state(spec, device=config.device)
        init_hash = state_hash(start)
        check.start_fetched = True
        if init_hash != seg.start_hash:
            check.fraud("start", f"start is not the spec's seeded initial state (expected {_hex(init_hash)})")
            return None
        check.passed("start")
        return start
    start, why = _fetch(fetch, result_uri, seg.start_hash)
    check.start_fetched = start is not None
    if why:
        check.fraud("start", f"start {why}")
    elif start is not None:
        check.passed("start")
        _invariants(check, "start", spec, start, seg.index)
    return start


def _end_state(check: SegmentCheck, spec: JobSpec, seg: OpenedSegment, result_uri: str,
               fetch: Fetch) -> dict[str, torch.Tensor] | None:
    """The claimed end: the fetched checkpoint (hash and whole-state invariants checked)."""
    end, why = _fetch(fetch, result_uri, seg.end_hash)
    check.end_fetched = end is not None
    if why:
        check.fraud("end", f"end {why}")
    elif end is not None:
        check.passed("end")
        _invariants(check, "end", spec, end, seg.index + 1)
    return end


def _dataset_available(spec: JobSpec, check: SegmentCheck) -> bool:
    """Load the spec's dataset; a dataset that cannot be had is the requester's fault (abstain)."""
    try:
        spec.load_data()
    except Exception as exc:  # noqa: BLE001 - any failure to obtain the pinned dataset
        check.abstain("dataset", f"the requester's dataset cannot be had: {exc}")
        return False
    check.passed("dataset")
    return True


def _invariants(check: SegmentCheck, which: str, spec: JobSpec, state: dict[str, torch.Tensor],
                boundary: int) -> None:
    """Whole-state invariants of a fetched state (docs/protocol.md §4): each violation is fraud."""
    from verifier.invariants import check_state

    for reason in check_state(spec, state, boundary):
        check.fraud(f"{which}_invariants", f"{which} state (boundary {boundary}) is malformed: {reason}")
    check.passed(f"{which}_invariants")


def _compare_across_classes(check: SegmentCheck, spec: JobSpec, config: AuditConfig,
                            start: dict[str, torch.Tensor], replay: dict[str, torch.Tensor],
                            end: dict[str, torch.Tensor]) -> None:
    """Every tensor within the spec's tolerance, and the weights well inside the segment's own move."""
    from verifier.compare import over_tolerance, tensor_distances, worst

    distances = tensor_distances(replay, end)
    top = worst(distances)
    check.distance, check.worst_tensor = top.distance, top.name
    check.update_size = update_size(start, end)
    tol = spec.tolerance.rel_l2
    over = over_tolerance(distances, tol)
    if over:
        listed = ", ".join(f"{d.name} {d.distance:.3g}" for d in over[:5])
        check.fraud("comparison", f"replay (other determinism class) differs beyond the tolerance {tol:.3g} in "
                    f"{len(over)} tensor(s): {listed}")
    weights = relative_distance(replay, end)
    bound = config.update_fraction * check.update_size
    if not weights < bound:
        check.fraud("comparison", f"replayed weights are {weights:.3g} away from the claimed end, not below "
                    f"{config.update_fraction:g} x the segment's update size {check.update_size:.3g} = {bound:.3g}")


def _energy_warning(check: SegmentCheck, config: AuditConfig) -> None:
    """Claims far from the replay's own measurement, above or below: a warning, never a vote."""
    measured = check.measured_energy_mj
    if measured is None or measured <= 0:
        return
    check.energy_ratio = check.claimed_energy_mj / measured
    r = config.energy_warn_ratio
    if check.energy_ratio > r:
        check.warnings.append(
            f"energy claim {check.claimed_energy_mj} mJ is {check.energy_ratio:.2f}x the replay's "
            f"{measured} mJ (over-claim: warning above {r:g}x)"
        )
    elif check.energy_ratio < 1 / r:
        check.warnings.append(
            f"energy claim {check.claimed_energy_mj} mJ is {check.energy_ratio:.2f}x the replay's "
            f"{measured} mJ (under-claim: warning below {1 / r:.2g}x)"
        )


def _match_threads(spec: JobSpec, device: torch.device, provider_class: bytes) -> int | None:
    """Set torch's thread count to one whose determinism class is ``provider_class``
    (the CPU class includes the thread count); leave it unchanged if none is."""
    from greenproof.engine import determinism_class

    if device.type != "cpu":
        return None
    current = torch.get_num_threads()
    candidates = [current] + [n for n in range(1, (os.cpu_count() or 1) + 1) if n != current]
    for n in candidates:
        torch.set_num_threads(n)
        if determinism_class(spec, device) == provider_class:
            if n != current:
                log.info("replaying with %d threads: the provider's determinism class", n)
            return n
    torch.set_num_threads(current)
    return None


def check_final(result_uri: str, final_state_hash: bytes, fetch: Fetch | None = None) -> FinalCheck:
    """The delivered model must be served and hash to the committed final state hash."""
    if fetch is None:
        from greenproof.store import fetch_state as fetch

    out = FinalCheck(final_state_hash=_hex(final_state_hash))
    state, why = _fetch(fetch, result_uri, final_state_hash)
    out.fetched = state is not None
    out.ok = why is None
    out.reason = why
    return out


def triangle_check(job: AuditJob, fetch: Fetch | None = None) -> TriangleCheck | None:
    """The job's ``triangle`` check (:mod:`verifier.movement`) over the opened segments, boundary 0
    and the committed final state; None when the job has no committed movement (not a chain job)."""
    from greenproof.engine import init_state
    from greenproof.statehash import state_hash

    if job.move_total is None or job.final_state_hash is None:
        return None
    if fetch is None:
        from greenproof.store import fetch_state as fetch
    spec = job.spec
    init = init_state(spec, "cpu")
    check = TriangleCheck()
    opened = [s for s in _unique(job.opened) if 0 <= s.index < spec.num_segments]
    known = known_boundaries(state_hash(init), opened, spec.num_segments, job.final_state_hash, job.move_total,
                             check)

    def load(k: int, h: bytes) -> tuple[dict[str, torch.Tensor] | None, str | None]:
        if k == 0:
            return init, None
        return _fetch(fetch, job.result_uri, h)

    return check_triangle(spec, known, load, check)


# --------------------------------------------------------------------------- a whole job


@functools.lru_cache(maxsize=8)
def _init_hash(spec_json: bytes) -> bytes:
    from greenproof.engine import init_state
    from greenproof.spec import parse_spec
    from greenproof.statehash import state_hash

    return state_hash(init_state(parse_spec(json.loads(spec_json)), "cpu"))


def bridged(job: AuditJob) -> list[OpenedSegment]:
    """The job's bridged segments (:func:`verifier.movement.bridged_segments`) as openings: each
    boundary's hash, cumulative energy, seal and movement from the opening that reveals it,
    boundary 0 from the spec (hash of ``init_state``; energy, movement 0; seal of ``w_0 = 0``)
    and boundary N from the committed result (no seal: the replay's end hash is still checked).
    Not a chain job (no committed movement): none. Builds the spec's initial state once per
    spec (call it where ``init_state`` may run: under the daemon's replay lock)."""
    from greenproof.merkle import boundary0_seal

    spec, n = job.spec, job.spec.num_segments
    if job.move_total is None or job.final_state_hash is None:
        return []
    opened = [s for s in _unique(job.opened) if 0 <= s.index < n]
    bounds: dict[int, tuple[bytes, int, bytes | None, int | None]] = {
        n: (job.final_state_hash, job.energy_mj or 0, None, job.move_total)}
    for seg in reversed(opened):  # the lower opening wins a disagreement (the triangle reports it)
        bounds[seg.index + 1] = (seg.end_hash, seg.end_energy_mj, seg.end_seal, seg.end_move)
        bounds[seg.index] = (seg.start_hash, seg.start_energy_mj, seg.start_seal, seg.start_move)
    todo = bridged_segments([0, *bounds], [s.index for s in opened], n)
    if 0 in todo:
        bounds[0] = (_init_hash(spec.canonical_json()), 0, boundary0_seal(job.job_id), 0)
    out = []
    for k in todo:
        (sh, se, ss, sm), (eh, ee, es, em) = bounds[k], bounds[k + 1]
        out.append(OpenedSegment(index=k, start_hash=sh, start_energy_mj=se, end_hash=eh, end_energy_mj=ee,
                                 start_seal=ss, end_seal=es, start_move=sm, end_move=em))
    return out


def _unique(opened: Sequence[OpenedSegment]) -> list[OpenedSegment]:
    seen: dict[int, OpenedSegment] = {}
    for seg in opened:
        seen.setdefault(seg.index, seg)
    return [seen[i] for i in sorted(seen)]


def _init_worker(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def audit_job(job: AuditJob, config: AuditConfig | None = None, fetch: Fetch | None = None) -> AuditReport:
    """Decide a job: per-segment checks (in parallel within ``config.max_parallel``),
    the final model, and the verdict folded from them."""
    from greenproof.engine import determinism_class, select_device

    config = config or AuditConfig()
    t0 = time.perf_counter()
    spec = job.spec
    report = AuditReport(
        job_id=job.job_id,
        chain_id=job.chain_id,
        market=job.market,
        provider=job.provider,
        spec_hash=_hex(spec.spec_hash()),
        spec_uri=job.spec_uri,
        result_uri=job.result_uri,
        num_segments=spec.num_segments,
        provider_class=_hex(job.provider_class),
        verifier_class=_hex(determinism_class(spec, select_device(config.device))),
        audit_indices=list(job.audit_indices),
        movement_draws=list(job.movement_draws),
    )
    segments = _unique(job.opened)
    missing = sorted(set(job.audit_indices) - {s.index for s in segments})
    checks: list[SegmentCheck] = []
    for i in missing:  # the chain would not be in VOTING; a test or a partial read may be
        c = SegmentCheck(index=i, start_hash="", end_hash="", start_energy_mj=0, end_energy_mj=0)
        c.fraud("opened", "segment was not opened")
        checks.append(c)
    for seg in segments:
        if not 0 <= seg.index < spec.num_segments:
            c = SegmentCheck(index=seg.index, start_hash=_hex(seg.start_hash), end_hash=_hex(seg.end_hash),
                             start_energy_mj=seg.start_energy_mj, end_energy_mj=seg.end_energy_mj)
            c.fraud("opened", f"index outside 0..{spec.num_segments - 1}")
            checks.append(c)
    segments = [s for s in segments if 0 <= s.index < spec.num_segments]
    extra = bridged(job) if config.check_bridged else []
    segments += extra

    progress = _progress(config.progress)
    task = progress.add_task(f"job {job.job_id}: replaying", total=len(segments)) if progress else None
    try:
        if progress:
            progress.start()
        if config.max_parallel <= 1 or len(segments) <= 1:
            for seg in segments:
                log.info("job %d: auditing segment %d", job.job_id, seg.index)
                checks.append(check_segment(spec, seg, job.result_uri, job.provider_class, config, fetch,
                                            job_id=job.job_id))
                if progress:
                    progress.advance(task)
        else:
            ctx = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(
                max_workers=min(config.max_parallel, len(segments)),
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(config.threads_per_replay,),
            ) as pool:
                futures = [
                    pool.submit(check_segment, spec, seg, job.result_uri, job.provider_class, config, fetch,
                                job_id=job.job_id)
                    for seg in segments
                ]
                for fut in cf.as_completed(futures):
                    checks.append(fut.result())
                    if progress:
                        progress.advance(task)
    finally:
        if progress:
            progress.stop()
    for c in checks:
        c.bridged = any(c.index == s.index for s in extra)
    report.segments = sorted(checks, key=lambda c: c.index)
    if config.check_triangle:
        report.triangle = triangle_check(job, fetch)
    if config.check_final and job.final_state_hash is not None:
        report.final = check_final(job.result_uri, job.final_state_hash, fetch)
    report.audit_seconds = time.perf_counter() - t0
    report.conclude()
    log.info("job %d: verdict %s %s", job.job_id, report.verdict.value, "; ".join(report.reasons))
    return report


def _progress(enabled: bool) -> Any:
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
