"""``greenproof verifier judge``: the verifier's challenge script for one segment.

It runs exactly the checks the daemon runs on an audited segment
(:func:`verifier.audit.check_segment`, docs/protocol.md §4) on states given as
local files, checkpoint URIs or hashes, and prints one JSON verdict. The
interface is stable for scripts:

* exit ``0`` ok, ``1`` fraud, ``2`` abstain, ``3`` the inputs could not be used
  (a missing local file, a bad spec, a malformed option): no verdict;
* stdout: one JSON object (``JUDGE_FORMAT`` fields below), nothing else.

A state reference is one of:

* a local safetensors file (``./end.safetensors``): the user's own input, so an
  unreadable file is an input error (exit 3), not fraud;
* a checkpoint URI ``{result_uri}/{hash hex}`` (http(s) or file): fetched like
  the daemon fetches, bounded and verified; failing to get it is the
  provider's fault (fraud);
* a bare hash (``0x…``, 64 hex digits) with ``--result-uri``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from greenproof.engine import TrainState
from greenproof.spec import JobSpec
from verifier.audit import AuditConfig, OpenedSegment, check_segment
from verifier.evidence import SegmentCheck, Verdict

#: Exit codes of ``greenproof verifier judge``.
EXIT_CODES = {Verdict.OK: 0, Verdict.FRAUD: 1, Verdict.ABSTAIN: 2}
EXIT_BAD_INPUT = 3
#: Version of the JSON the command prints (bumped on any incompatible change).
JUDGE_FORMAT = 1
_HASH = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


class JudgeInputError(ValueError):
    """An input the judge cannot use; the message says which and why (exit 3)."""


@dataclass
class StateRefs:
    """Resolved state references: local states by hash, and where the rest are fetched."""

    result_uri: str = "local://"
    local: dict[bytes, TrainState] = field(default_factory=dict)
    spec: JobSpec | None = None

    def resolve(self, ref: str, result_uri: str | None) -> bytes:
        """The state hash ``ref`` names (loading local files now)."""
        if _HASH.match(ref):
            if not result_uri:
                raise JudgeInputError(f"judge: {ref} is a hash; pass --result-uri to say where it is served")
            self.result_uri = result_uri.rstrip("/")
            return bytes.fromhex(ref.removeprefix("0x"))
        if "://" in ref:
            base, _, last = ref.rstrip("/").rpartition("/")
            if not _HASH.match(last):
                raise JudgeInputError(f"judge: {ref} does not end in a state hash ({{result_uri}}/{{hash hex}})")
            self.result_uri = base
            return bytes.fromhex(last)
        return self._load_local(Path(ref))

    def _load_local(self, path: Path) -> bytes:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from greenproof.statehash import state_hash

        if not path.is_file():
            raise JudgeInputError(f"judge: no such checkpoint file {path}")
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise JudgeInputError(f"judge: {path} is not a safetensors checkpoint: {exc}") from None
        h = state_hash(state)
        self.local[h] = state
        return h

    def __call__(self, result_uri: str, h: bytes) -> TrainState:
        """The fetch the audit calls: local states first, then the provider's server."""
        if h in self.local:
            return self.local[h]
        from greenproof.store import fetch_state

        return fetch_state(result_uri, h, spec=self.spec)


def parse_class(value: str, spec: JobSpec, device: str | None) -> bytes:
    """``0x…`` (32 bytes), ``same`` (this machine's class: bit equality) or ``other`` (tolerance)."""
    if value == "same":
        from greenproof.engine import determinism_class, select_device

        return determinism_class(spec, select_device(device))
    if value == "other":
        return b"\0" * 32
    if not _HASH.match(value):
        raise JudgeInputError(f"judge: --provider-class must be 0x + 64 hex digits, 'same' or 'other', got {value!r}")
    return bytes.fromhex(value.removeprefix("0x"))


def judge(spec: JobSpec, segment: int, start: str | None, end: str, provider_class: str, *,
          result_uri: str | None = None, start_energy_mj: int = 0, end_energy_mj: int = 0,
          measure_energy: bool = False, device: str | None = None,
          threads: int | None = None) -> SegmentCheck:
    """Judge segment ``segment`` of ``spec`` from ``start`` to ``end`` (see the module doc)."""
    if not 0 <= segment < spec.num_segments:
        raise JudgeInputError(f"judge: segment {segment} outside 0..{spec.num_segments - 1}")
    refs = StateRefs(spec=spec)
    if start is None:
        if segment != 0:
            raise JudgeInputError("judge: --start is required for segments after 0")
        from greenproof.engine import init_state
        from greenproof.statehash import state_hash

        start_hash = state_hash(init_state(spec, "cpu"))
    else:
        start_hash = refs.resolve(start, result_uri)
    end_hash = refs.resolve(end, result_uri)
    seg = OpenedSegment(index=segment, start_hash=start_hash, start_energy_mj=start_energy_mj,
                        end_hash=end_hash, end_energy_mj=end_energy_mj, start_seal=None, end_seal=None,
                        start_move=None, end_move=None)
    config = AuditConfig(measure_energy=measure_energy, device=device, threads_per_replay=threads,
                         check_final=False)
    threads_before = torch.get_num_threads()
    try:
        return check_segment(spec, seg, refs.result_uri, parse_class(provider_class, spec, device),
                             config, refs)
    finally:
        torch.set_num_threads(threads_before)


def verdict_json(spec: JobSpec, check: SegmentCheck) -> dict[str, object]:
    """The printed verdict: every check with its outcome, the reasons, the numbers."""
    return {
        "format": JUDGE_FORMAT,
        "verdict": check.verdict.value,
        "spec_hash": "0x" + spec.spec_hash().hex(),
        "segment": check.index,
        "checks": check.checks,
        "reasons": check.reasons,
        "abstentions": check.abstentions,
        "warnings": check.warnings,
        "start_hash": check.start_hash,
        "end_hash": check.end_hash,
        "replay_hash": check.replay_hash,
        "same_class": check.same_class,
        "replay_class": check.replay_class,
        "distance": check.distance,
        "worst_tensor": check.worst_tensor,
        "update_size": check.update_size,
        "tolerance": check.tolerance,
        "claimed_energy_mj": check.claimed_energy_mj,
        "measured_energy_mj": check.measured_energy_mj,
        "energy_ratio": check.energy_ratio,
        "replay_seconds": check.replay_seconds,
    }
