"""Engine-level simulation of a provider's run (honest or cheating), no chain.

Used by the adversary tests and ``bench/verify.py``: trains a spec with
:func:`greenproof.run.train_run` exactly like the worker (the cheat's
``train_segment`` as the segment hook, its ``energy`` on every reported
boundary, energy from a real meter or the one given, unless turned off), keeps
the checkpoints in memory and serves them through the cheat's ``serve`` hook,
and builds the ``AuditJob`` a verifier would read from the chain for a given set
of audited indices. The run keeps every boundary's work digest and cumulative
movement as the provider would commit them (a cheat's faked segment: the digest
of whatever losses it claims, the movement its ``move`` hook claims), and its
openings carry the seals and the movements.

:func:`draw_outcome` decides one audit draw of a run the way a verifier does,
given which segments fail their own checks: an audited segment that fails, or
the triangle check (:func:`verifier.movement.check_triangle`, the verifier's own)
over the draw's known boundaries; ``tests/python/test_forgers.py`` and
``bench/forgery.py`` repeat it over many seeds.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass, field

from safetensors.torch import load

from greenproof.adversaries.cheats import Cheat
from greenproof.engine import TrainState
from greenproof.merkle import MerkleTree, commitment_tree, seal
from greenproof.movement import Metric, metric_for
from greenproof.run import MemoryCheckpoints, Meter, ZeroMeter, train_run
from greenproof.spec import JobSpec
from verifier.audit import AuditJob, OpenedSegment
from verifier.evidence import TriangleCheck
from verifier.movement import bridged_segments, check_triangle, known_boundaries
from verifier.sampling import audited_segments


class Withheld(FileNotFoundError):
    """The simulated artifact server answered 404."""


@dataclass
class SimulatedRun:
    spec: JobSpec
    job_id: int
    hashes: list[bytes]
    energies_mj: list[int]
    #: ``w_k`` per boundary as the provider commits it (``[0]`` is 32 zero bytes)
    work_digests: list[bytes]
    #: ``move_k`` per boundary as the provider commits it (``[0]`` is 0)
    moves: list[int]
    states: dict[bytes, TrainState]
    provider_class: bytes
    cheat: Cheat | None = None
    train_seconds: float = 0.0
    segment_seconds: list[float] = field(default_factory=list)

    def fetch(self, result_uri: str, h: bytes) -> TrainState:
        """What the provider's artifact server would answer for ``h``."""
        if self.cheat is not None:
            answer = self.cheat.serve(self.job_id, h)
            if answer == "withhold":
                raise Withheld(f"404: {h.hex()} withheld")
            if isinstance(answer, bytes):
                return load(answer)
        if h not in self.states:
            raise Withheld(f"404: {h.hex()} unknown")
        return self.states[h]

    @functools.cached_property
    def seals(self) -> list[bytes]:
        """``seal(job_id, k, w_k)`` per boundary, as the leaves commit them."""
        return [seal(self.job_id, k, w) for k, w in enumerate(self.work_digests)]

    def tree(self) -> MerkleTree:
        """The commitment tree the provider would commit the root of."""
        return commitment_tree(self.job_id, self.hashes, self.energies_mj, self.moves, self.seals)

    def opened(self, index: int) -> OpenedSegment:
        """Segment ``index`` as ``SegmentOpened`` reveals it (seals included)."""
        seals = self.seals
        return OpenedSegment(
            index=index,
            start_hash=self.hashes[index],
            start_energy_mj=self.energies_mj[index],
            end_hash=self.hashes[index + 1],
            end_energy_mj=self.energies_mj[index + 1],
            start_seal=seals[index],
            end_seal=seals[index + 1],
            start_move=self.moves[index],
            end_move=self.moves[index + 1],
        )

    def audited(self, seed: bytes, samples: int) -> list[int]:
        """The segments a draw with ``seed`` audits (uniform indices and movement brackets)."""
        return audited_segments(seed, self.job_id, samples, self.moves)

    def audit_job(self, indices: list[int], provider_class: bytes | None = None) -> AuditJob:
        """What a verifier reads from the chain once segments ``indices`` are opened."""
        return AuditJob(
            job_id=self.job_id,
            spec=self.spec,
            result_uri="sim://provider",
            provider_class=provider_class if provider_class is not None else self.provider_class,
            audit_indices=list(indices),
            opened=[self.opened(i) for i in sorted(set(indices))],
            final_state_hash=self.hashes[-1],
            energy_mj=self.energies_mj[-1],
            move_total=self.moves[-1],
        )


def simulate_run(spec: JobSpec, cheat: Cheat | None = None, job_id: int = 1, device: str | None = "cpu",
                 measure_energy: bool = True, meter: Meter | None = None) -> SimulatedRun:
    """Train ``spec`` like the worker does (with ``cheat``'s hooks when given).

    ``meter`` measures the run (None: the best real one for ``device``; tests pass a
    deterministic ``greenproof.energy.FakeMeter``); ``measure_energy=False`` measures nothing."""
    checkpoints = MemoryCheckpoints()
    energies: list[int] = []
    moves: list[int] = []

    def on_boundary(k: int, h: bytes, energy_mj: int, work_digest: bytes, move: int) -> None:
        energies.append(cheat.energy(k, energy_mj) if cheat is not None else energy_mj)
        moves.append(cheat.move(k, move) if cheat is not None else move)

    record = train_run(
        spec,
        checkpoints,
        meter if measure_energy else ZeroMeter(),
        device=device,
        on_boundary=on_boundary,
        segment_hook=cheat.train_segment if cheat is not None else None,
        progress=False,
    )
    return SimulatedRun(
        spec=spec,
        job_id=job_id,
        hashes=record.state_hashes,
        energies_mj=energies,
        work_digests=record.work_digests,
        moves=moves,
        states=checkpoints.states,
        provider_class=record.determinism_class,
        cheat=cheat,
        train_seconds=record.wall_s,
        segment_seconds=record.segment_wall_s,
    )


class Distances:
    """``fixed(dist(state_a, state_b))`` between two boundaries of one run, each pair computed
    once (a :data:`verifier.movement.Distance` for many simulated draws)."""

    def __init__(self, metric: Metric) -> None:
        self.metric = metric
        self._cache: dict[tuple[int, int], int] = {}

    def __call__(self, a: int, b: int, sa: TrainState, sb: TrainState) -> int:
        if (a, b) not in self._cache:
            self._cache[(a, b)] = self.metric.fixed(sa, sb)
        return self._cache[(a, b)]


def draw_outcome(run: SimulatedRun, failing: Collection[int], seed: bytes, samples: int,
                 distance: Distances | None = None) -> tuple[bool, bool]:
    """One audit draw (``seed``, ``samples`` as JobMarket draws them over the run's claimed
    movements): ``(a checked segment is in failing, the triangle check fails)``, where the
    checked segments are the audited ones and the bridged ones (not drawn, both boundaries
    known: :func:`verifier.movement.bridged_segments`, which the verifier replays too); the
    triangle is only checked when no checked segment failed."""
    audited = run.audited(seed, samples)
    if set(audited) & set(failing):
        return True, False
    check = TriangleCheck()
    n = run.spec.num_segments
    known = known_boundaries(run.hashes[0], [run.opened(i) for i in audited], n, run.hashes[-1], run.moves[-1],
                             check)
    if set(bridged_segments(known, audited, n)) & set(failing):
        return True, False
    dist = distance or Distances(metric_for(run.spec))

    def load(k: int, h: bytes) -> tuple[TrainState | None, str | None]:
        return run.states[h], None

    check_triangle(run.spec, known, load, check, distance=dist)
    return False, not check.ok
