"""The verifier's evidence: one JSON report per job.

A report says what was checked (every audited segment's opened hashes, whether
its checkpoints could be fetched and matched, the replayed hash, the parameter
distances, claimed vs measured movement and energy, the triangle check between
the known boundaries with every distance), the verdict with its reasons, warnings
that do not change the vote (energy claims), and the transactions sent. It is
written under the verifier's data dir and printed by ``greenproof verifier check``.
"""

from __future__ import annotations

import json
import os
import time
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field


class Verdict(StrEnum):
    """What the verifier votes: ``ok``, ``fraud``, or nothing at all (``abstain``).

    An abstention is for faults that are not the provider's (the requester's
    spec or dataset cannot be had) and for the verifier's own inability to
    finish in time: it casts no vote (docs/protocol.md §4).
    """

    OK = "ok"
    FRAUD = "fraud"
    ABSTAIN = "abstain"


#: The checks of one segment, in the order they run (docs/protocol.md §4); ``triangle``
#: is the job's (:class:`TriangleCheck`), between its known boundaries.
CHECKS = ("opened", "energy_counter", "dataset", "start", "start_invariants", "end",
          "end_invariants", "movement", "replay", "comparison", "seal", "triangle")


class SegmentCheck(BaseModel):
    """The checks on one audited segment ``index`` (boundaries ``index`` -> ``index + 1``)."""

    index: int
    start_hash: str
    end_hash: str
    start_energy_mj: int
    end_energy_mj: int
    #: not drawn: replayed because both its boundaries are known (a "bridged" segment, §4);
    #: its fraud counts like a drawn segment's, an ok vote reveals no digest for it
    bridged: bool = False
    start_fetched: bool = False
    end_fetched: bool = False
    replay_hash: str | None = None
    #: ``w_{index + 1}``: keccak256 of the replay's per-step losses (what an ok vote reveals)
    work_digest: str | None = None
    same_class: bool = True
    #: the determinism class the replay ran in (threads are matched to the provider's when possible)
    replay_class: str | None = None
    #: cross class: the largest per-tensor relative L2 distance between replayed and claimed end
    distance: float | None = None
    #: the tensor that distance belongs to
    worst_tensor: str | None = None
    #: the segment's own update size ||claimed_end - start|| / ||claimed_end||
    update_size: float | None = None
    tolerance: float | None = None
    #: ``end_move - start_move`` as opened (None when judged from files: no claim)
    claimed_move: int | None = None
    #: ``fixed(dist(start, end))`` of the segment's states (same class: the replay's end is the end)
    measured_move: int | None = None
    claimed_energy_mj: int = 0
    measured_energy_mj: int | None = None
    energy_ratio: float | None = None
    replay_seconds: float | None = None
    verdict: Verdict = Verdict.OK
    reasons: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    #: why the segment could not be judged (requester faults): no vote either way
    abstentions: list[str] = Field(default_factory=list)
    #: every check that ran, in order (see ``CHECKS``): ``ok``, ``fraud: …`` or ``abstain: …``
    checks: dict[str, str] = Field(default_factory=dict)

    def fraud(self, check: str, reason: str) -> None:
        """Check ``check`` failed through the provider's fault."""
        self.verdict = Verdict.FRAUD
        self.reasons.append(reason)
        self.checks.setdefault(check, f"fraud: {reason}")

    def abstain(self, check: str, reason: str) -> None:
        """Check ``check`` could not run through no fault of the provider's."""
        if self.verdict is not Verdict.FRAUD:
            self.verdict = Verdict.ABSTAIN
        self.abstentions.append(reason)
        self.checks.setdefault(check, f"abstain: {reason}")

    def passed(self, check: str) -> None:
        """Check ``check`` ran and passed (a failure recorded earlier stays)."""
        self.checks.setdefault(check, "ok")


class BoundaryPair(BaseModel):
    """Two consecutive known boundaries ``a < b``: their distance against the movement
    claimed between them (fixed-point units, :mod:`greenproof.movement`)."""

    a: int
    b: int
    #: ``fixed(dist(state_a, state_b))``; None when it could not be measured
    distance: int | None
    #: ``move_b - move_a``
    claimed: int
    #: ``(b - a) + 1``: the floor rounding of the ``b - a`` segments, plus one
    slack: int
    ok: bool


class TriangleCheck(BaseModel):
    """The job's movement claims against the known boundaries (docs/protocol.md §4): boundary 0
    (the spec's initial state, movement 0), both boundaries of every opened segment, and
    boundary N (the committed final state and total movement); each consecutive pair
    ``a < b`` must satisfy ``fixed(dist) <= move_b - move_a + slack`` and ``move_a <= move_b``."""

    #: known boundary -> its claimed cumulative movement
    known: dict[int, int] = Field(default_factory=dict)
    pairs: list[BoundaryPair] = Field(default_factory=list)
    ok: bool = True
    reasons: list[str] = Field(default_factory=list)

    def fraud(self, reason: str) -> None:
        self.ok = False
        self.reasons.append(reason)


class FinalCheck(BaseModel):
    """The delivered model: ``{result_uri}/{final_state_hash}`` must hash to the commitment."""

    final_state_hash: str
    fetched: bool = False
    ok: bool = False
    reason: str | None = None


class TxRecord(BaseModel):
    action: str
    tx_hash: str
    block: int | None = None
    at: float = Field(default_factory=time.time)


class AuditReport(BaseModel):
    job_id: int
    chain_id: int | None = None
    market: str | None = None
    verifier: str | None = None
    provider: str | None = None
    spec_hash: str
    spec_uri: str | None = None
    result_uri: str
    num_segments: int
    provider_class: str
    verifier_class: str
    #: every audited segment in draw order: the uniform indices, then the segment whose
    #: movement bracket holds each of ``movement_draws``
    audit_indices: list[int]
    #: the movement samples' targets ``u_j``
    movement_draws: list[int] = Field(default_factory=list)
    segments: list[SegmentCheck] = Field(default_factory=list)
    triangle: TriangleCheck | None = None
    final: FinalCheck | None = None
    verdict: Verdict = Verdict.OK
    reasons: list[str] = Field(default_factory=list)
    abstentions: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    transactions: list[TxRecord] = Field(default_factory=list)
    audited_at: float = Field(default_factory=time.time)
    audit_seconds: float | None = None

    @property
    def fraud(self) -> bool:
        return self.verdict == Verdict.FRAUD

    @property
    def abstain(self) -> bool:
        return self.verdict == Verdict.ABSTAIN

    def conclude(self) -> AuditReport:
        """Fold the per-segment and final-model checks into the job's verdict.

        Any provider fault makes it fraud; otherwise any segment that could not
        be judged (a requester fault) makes it an abstention; otherwise ok.
        """
        reasons = [f"segment {s.index}: {r}" for s in self.segments for r in s.reasons]
        abstentions = [f"segment {s.index}: {r}" for s in self.segments for r in s.abstentions]
        warnings = [f"segment {s.index}: {w}" for s in self.segments for w in s.warnings]
        if self.triangle is not None:
            reasons += [f"triangle: {r}" for r in self.triangle.reasons]
        if self.final is not None and not self.final.ok:
            reasons.append(f"final model: {self.final.reason}")
        self.reasons = reasons
        self.abstentions = abstentions + [a for a in self.abstentions if not a.startswith("segment ")]
        self.warnings = warnings
        if reasons:
            self.verdict = Verdict.FRAUD
        elif self.abstentions:
            self.verdict = Verdict.ABSTAIN
        else:
            self.verdict = Verdict.OK
        return self

    # --- persistence -------------------------------------------------------------
    @staticmethod
    def path_for(data_dir: Path, job_id: int, chain_id: int | None = None) -> Path:
        name = f"job-{job_id}.json" if chain_id is None else f"{chain_id}-job-{job_id}.json"
        return Path(data_dir) / "reports" / name

    def save(self, data_dir: Path) -> Path:
        """Write atomically (tmp file, fsync, rename) under ``data_dir/reports``."""
        path = self.path_for(data_dir, self.job_id, self.chain_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(self.model_dump_json(indent=2))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: Path) -> AuditReport:
        return cls.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))

    def summary(self) -> str:
        """A few human lines: verdict, reasons, warnings, per-segment distances."""
        lines = [
            f"job {self.job_id}: verdict {self.verdict.value.upper()} "
            f"({len(self.segments)} segment(s) audited of {self.num_segments}: {self.audit_indices})"
        ]
        for s in self.segments:
            detail = f"replay {s.replay_hash[:18] + '…' if s.replay_hash else '-'}"
            if s.update_size is not None:  # judged across classes
                detail += (f", distance {s.distance:.3g} at {s.worst_tensor} "
                           f"(update {s.update_size:.3g}, tol {s.tolerance:.3g})")
            if s.claimed_move is not None and s.measured_move is not None:
                detail += f", movement claimed {s.claimed_move} measured {s.measured_move}"
            if s.energy_ratio is not None:
                detail += f", energy claimed/measured {s.energy_ratio:.2f}"
            lines.append(f"  segment {s.index}: {s.verdict.value} — {detail}")
        if self.triangle is not None:
            lines.append(f"  triangle: {'ok' if self.triangle.ok else 'FAIL'} over known boundaries "
                         f"{sorted(self.triangle.known)}")
        if self.final is not None:
            lines.append(f"  final model: {'ok' if self.final.ok else 'FAIL'}")
        lines += [f"  reason: {r}" for r in self.reasons]
        lines += [f"  abstain: {r}" for r in self.abstentions]
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  tx {t.action}: {t.tx_hash}" for t in self.transactions]
        return "\n".join(lines)
