"""Engine-level simulation of a provider's run (honest or cheating), no chain.

Used by the adversary tests and ``bench/verify.py``: trains a spec segment by
segment exactly like the worker (the same ``run_segment``, the cheat's hooks at
the same points, energy from a real meter), keeps the checkpoints in memory and
serves them through the cheat's ``serve`` hook, and builds the ``AuditJob`` a
verifier would read from the chain for a given set of audited indices.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from greenproof.spec import JobSpec
from verifier.audit import AuditJob, OpenedSegment


class Withheld(FileNotFoundError):
    """The simulated artifact server answered 404."""


@dataclass
class SimulatedRun:
    spec: JobSpec
    job_id: int
    hashes: list[bytes]
    energies_mj: list[int]
    states: dict[bytes, dict[str, torch.Tensor]]
    provider_class: bytes
    cheat: Any = None
    train_seconds: float = 0.0
    segment_seconds: list[float] = field(default_factory=list)

    def fetch(self, result_uri: str, h: bytes) -> dict[str, torch.Tensor]:
        """What the provider's artifact server would answer for ``h``."""
        if self.cheat is not None:
            answer = self.cheat.serve(self.job_id, h)
            if answer == "withhold":
                raise Withheld(f"404: {h.hex()} withheld")
            if isinstance(answer, bytes):
                from safetensors.torch import load

                return load(answer)
        if h not in self.states:
            raise Withheld(f"404: {h.hex()} unknown")
        return self.states[h]

    def opened(self, index: int) -> OpenedSegment:
        return OpenedSegment(
            index=index,
            start_hash=self.hashes[index],
            start_energy_mj=self.energies_mj[index],
            end_hash=self.hashes[index + 1],
            end_energy_mj=self.energies_mj[index + 1],
        )

    def audit_job(self, indices: list[int], provider_class: bytes | None = None) -> AuditJob:
        return AuditJob(
            job_id=self.job_id,
            spec=self.spec,
            result_uri="sim://provider",
            provider_class=provider_class if provider_class is not None else self.provider_class,
            audit_indices=list(indices),
            opened=[self.opened(i) for i in sorted(set(indices))],
            final_state_hash=self.hashes[-1],
            energy_mj=self.energies_mj[-1],
        )


def simulate_run(spec: JobSpec, cheat: Any = None, job_id: int = 1, device: str | None = "cpu",
                 measure_energy: bool = True) -> SimulatedRun:
    """Train ``spec`` like the worker does (with ``cheat``'s hooks when given)."""
    from greenproof.engine import determinism_class, init_state, run_segment, select_device
    from greenproof.statehash import state_hash
    from verifier.audit import _measure

    dev = select_device(device)
    state = init_state(spec, dev)
    h0 = state_hash(state)
    run = SimulatedRun(spec=spec, job_id=job_id, hashes=[h0], energies_mj=[0], states={h0: state},
                       provider_class=determinism_class(spec, dev), cheat=cheat)
    meter = _measure(device) if measure_energy else None
    t_start = time.perf_counter()
    for k in range(spec.num_segments):
        t0 = time.perf_counter()
        if cheat is not None:
            result = cheat.train_segment(spec, state, k, run_segment)
        else:
            result = run_segment(spec, state, k, device=dev)
        run.segment_seconds.append(time.perf_counter() - t0)
        state = result.state
        h = state_hash(state)
        run.states[h] = state
        run.hashes.append(h)
        energy = int(meter.read_mj()) if meter is not None else 0
        if cheat is not None:
            energy = int(cheat.energy(k + 1, energy))
        run.energies_mj.append(max(energy, run.energies_mj[-1]))
    run.train_seconds = time.perf_counter() - t_start
    if meter is not None:
        meter.close()
    return run
