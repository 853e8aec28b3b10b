"""Run records held back until the job is final.

A job's per-step losses are its proof of work: their work digests
(docs/protocol.md §3) are what a verifier's ok vote must reveal, so whoever
holds a running job's losses could vote ok on it without replaying a step
(docs/court.md). The worker therefore keeps the run record (losses, work
digests, energy source, device) of a job to itself until the job is final on
chain (PAID, SLASHED, EXPIRED, CANCELLED):

* the trainer *holds* the record at ``{runs_dir}/{job_id}/record.private``, a
  name nothing reads from outside: the artifact server serves only journaled
  checkpoints by content address, and the dashboard reads ``*.json`` files;
* the lifecycle *publishes* it as ``{runs_dir}/{job_id}/record.json`` (what the
  dashboard and the report read from a worker's data directory) once it sees
  the job final on chain, and removes the private copy.

Neither step logs a loss.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from greenproof.chain.models import JobState
from greenproof.run import RunRecord

log = logging.getLogger("greenproof.worker")

HELD_NAME = "record.private"
PUBLISHED_NAME = "record.json"


class RunRecords:
    """The run records under a worker's ``runs_dir``: held while the job runs, published once final."""

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = Path(runs_dir)

    def held_path(self, job_id: int) -> Path:
        return self.runs_dir / str(job_id) / HELD_NAME

    def published_path(self, job_id: int) -> Path:
        return self.runs_dir / str(job_id) / PUBLISHED_NAME

    def hold(self, job_id: int, record: RunRecord) -> None:
        """Keep ``record`` private (written atomically; replaces an earlier one)."""
        path = self.held_path(job_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        record.save(tmp)
        os.replace(tmp, path)

    def publish(self, job_id: int, state: JobState) -> bool:
        """Publish the held record of a job that is final on chain (``state``).

        Returns True when a record was published now; False when none is held
        (never trained here, or published already). Raises ``ValueError`` for a
        job that is not final: its losses must stay private.
        """
        if not state.final:
            raise ValueError(f"worker: job {job_id} is {state}, not final: its run record stays private")
        held = self.held_path(job_id)
        if not held.is_file():
            return False
        os.replace(held, self.published_path(job_id))
        log.info("job %d: %s on chain; run record published", job_id, state)
        return True


__all__ = ["HELD_NAME", "PUBLISHED_NAME", "RunRecords"]
