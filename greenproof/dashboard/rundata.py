"""Off-chain data about a job that the chain does not hold: loss curves and audit evidence.

Workers keep run records (the per-step losses and per-boundary energies of a
training run; a worker publishes one as ``runs/<job id>/record.json`` only once
the job is final on chain, see :mod:`worker.records`) and verifiers keep evidence reports (one JSON file per audited
job) in their data directories. The dashboard and the demo are given those
directories (``--data-dir``, repeatable) and read any ``*.json`` file under them
(and, for per-boundary energies, a worker's ``journal.sqlite``, read-only)
that names the job (a ``job_id`` field, or a worker's ``runs/<job id>/`` folder): a file with a ``losses`` list is a run record, a file with a
``verdict`` is evidence. Files are read lazily, size-capped and cached by mtime,
so a dashboard over a busy data dir stays cheap; nothing is ever written.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_FILES = 5_000


class JobRunData(BaseModel):
    losses: list[float] = Field(default_factory=list)
    energies_mj: list[int] = Field(
        default_factory=list, description="cumulative energy at each boundary, [0] == 0"
    )
    evidence: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def segment_energy_mj(self) -> list[int]:
        e = self.energies_mj
        return [max(0, b - a) for a, b in zip(e, e[1:], strict=False)]


def _job_id_of(doc: dict[str, Any]) -> int | None:
    for key in ("job_id", "jobId", "job"):
        value = doc.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
    return None


class RunDataStore:
    """Scans data directories for run records and evidence reports, keyed by job id."""

    def __init__(self, dirs: list[Path] | None = None) -> None:
        self.dirs = [Path(d) for d in (dirs or [])]
        self._cache: dict[Path, tuple[float, dict[str, Any] | None]] = {}

    def _load(self, path: Path) -> dict[str, Any] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        cached = self._cache.get(path)
        if cached and cached[0] == st.st_mtime:
            return cached[1]
        doc: dict[str, Any] | None = None
        if st.st_size <= MAX_FILE_BYTES:
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
                doc = loaded if isinstance(loaded, dict) else None
            except (OSError, ValueError) as exc:
                log.debug("rundata: skipping %s: %s", path, exc)
        self._cache[path] = (st.st_mtime, doc)
        return doc

    def _files(self) -> list[Path]:
        files: list[Path] = []
        for d in self.dirs:
            if d.is_dir():
                for p in d.rglob("*.json"):
                    files.append(p)
                    if len(files) >= MAX_FILES:
                        return files
        return files

    def _journal_energies(self, job_id: int) -> list[int]:
        """Cumulative energy per boundary from a worker's journal (``journal.sqlite``), read-only."""
        for d in self.dirs:
            path = d / "journal.sqlite"
            if not path.is_file():
                continue
            try:
                with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=1) as db:
                    rows = db.execute(
                        "SELECT k, energy_mj FROM boundaries WHERE job_id = ? ORDER BY k",
                        (str(job_id),),
                    ).fetchall()
            except sqlite3.Error as exc:
                log.debug("rundata: cannot read %s: %s", path, exc)
                continue
            if rows and [k for k, _ in rows] == list(range(len(rows))):
                return [int(e) for _, e in rows]
        return []

    def for_job(self, job_id: int) -> JobRunData:
        data = JobRunData()
        for path in self._files():
            doc = self._load(path)
            if doc is None:
                continue
            found = _job_id_of(doc)
            if found is None and path.parent.name.isdigit() and path.parent.parent.name == "runs":
                found = int(path.parent.name)  # a worker's runs/<job id>/record.json
            if found != job_id:
                continue
            if "verdict" in doc:
                data.evidence.append(doc)
            losses = doc.get("losses")
            if isinstance(losses, list) and len(losses) > len(data.losses):
                flat: list[float] = []
                for item in losses:  # a flat list, or one list per segment
                    flat.extend(item if isinstance(item, list) else [item])
                data.losses = [float(x) for x in flat if isinstance(x, int | float)]
            energies = doc.get("energies_mj")
            if isinstance(energies, list) and len(energies) > len(data.energies_mj):
                data.energies_mj = [int(x) for x in energies if isinstance(x, int | float)]
        if not data.energies_mj:
            data.energies_mj = self._journal_energies(job_id)
        return data
