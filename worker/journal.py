"""The worker's durable memory: a small sqlite journal.

Everything the worker must not forget across a ``kill -9`` lives here: the
event cursor, every job it has looked at (and why it skipped it), the phase of
every job it accepted, each training boundary it reached (``k``, state hash,
cumulative energy, work digest, cumulative movement) and every audited segment
it opened.

The database runs in WAL mode with ``synchronous=FULL``, so a transaction that
returned is on disk. Every public method is one transaction. The connection is
shared between the daemon loop, the training thread and the artifact server
under a lock (sqlite connections are not thread-safe by themselves).

Write-ahead rules the daemon follows (and the tests check):

* ``ACCEPTING`` is journaled *before* ``accept_job`` is sent, so a crash
  between the two is resolved on restart from on-chain state, never by a
  second blind accept;
* a boundary is journaled only after its checkpoint is durable in the store;
* ``COMMITTING`` is journaled with the exact root before ``commit_result`` is
  sent, so a restart recommits the same thing (or sees it landed).

Schema 2 added each boundary's work digest (the leaf commits to its seal),
schema 3 its cumulative movement ``move_k`` (the leaf commits to it,
:mod:`greenproof.movement`) and the committed ``move_total``. An older journal
is migrated in place on open, loudly (a warning names what its old rows lack):
the columns are added and its old rows keep no digest or movement (NULL); the
worker refuses to resume, commit or open a job whose boundaries lack either
(``UnsealedBoundaries``: it cannot know them without retraining) rather than
guess.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

log = logging.getLogger("greenproof.worker")

SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id            TEXT PRIMARY KEY,   -- decimal uint256
    phase             TEXT NOT NULL,
    reason            TEXT NOT NULL DEFAULT '',
    spec_json         TEXT,
    spec_hash         TEXT,
    determinism_class TEXT,
    deadline          INTEGER NOT NULL DEFAULT 0,
    num_segments      INTEGER NOT NULL DEFAULT 0,
    root              TEXT,
    final_state_hash  TEXT,
    energy_mj         INTEGER,
    move_total        TEXT,               -- decimal uint256, journaled with the commit
    result_uri        TEXT,
    posted_block      INTEGER NOT NULL DEFAULT 0,
    updated_at        REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS boundaries (
    job_id      TEXT NOT NULL,
    k           INTEGER NOT NULL,
    state_hash  TEXT NOT NULL,
    energy_mj   INTEGER NOT NULL,
    work_digest TEXT,                 -- NULL only in rows a schema-1 worker journaled
    move        TEXT,                 -- decimal uint256; NULL only in rows a schema-1/2 worker journaled
    PRIMARY KEY (job_id, k)
);
CREATE INDEX IF NOT EXISTS boundaries_by_hash ON boundaries (job_id, state_hash);
CREATE TABLE IF NOT EXISTS opened (
    job_id TEXT NOT NULL,
    idx    INTEGER NOT NULL,
    PRIMARY KEY (job_id, idx)
);
"""


class JournalError(RuntimeError):
    """The journal is unusable (wrong schema, another chain, corrupt)."""


class UnsealedBoundaries(JournalError):
    """Boundaries an older worker journaled: no work digest (schema 1) or no movement
    (schema 1 and 2), so no leaf can be built (never guessed)."""


class Phase(StrEnum):
    """Where a job is in the worker's own state machine."""

    SKIPPED = "skipped"  # looked at, not taken (reason says why)
    ACCEPTING = "accepting"  # accept_job about to be / was sent
    QUEUED = "queued"  # accepted on chain, waiting for the device
    TRAINING = "training"  # on the device (or was, when the worker died)
    TRAINED = "trained"  # every boundary journaled, not yet committed
    COMMITTING = "committing"  # commit_result about to be / was sent
    COMMITTED = "committed"  # on chain; waiting for draw_audit
    AUDITING = "auditing"  # audit drawn; opening segments
    VOTING = "voting"  # every audited segment open; waiting to finalize
    CLOSED = "closed"  # finalized (paid or slashed); nothing left to do
    ABANDONED = "abandoned"  # gave up (deadline unreachable, lost the job, …)


#: Phases in which the worker still has something to do.
ACTIVE_PHASES: tuple[Phase, ...] = (
    Phase.ACCEPTING,
    Phase.QUEUED,
    Phase.TRAINING,
    Phase.TRAINED,
    Phase.COMMITTING,
    Phase.COMMITTED,
    Phase.AUDITING,
    Phase.VOTING,
)


@dataclass(frozen=True)
class JobRow:
    """One job as the journal remembers it."""

    job_id: int
    phase: Phase
    reason: str
    spec_json: str | None
    spec_hash: bytes | None
    determinism_class: bytes | None
    deadline: int
    num_segments: int
    root: bytes | None
    final_state_hash: bytes | None
    energy_mj: int | None
    move_total: int | None
    result_uri: str | None
    posted_block: int


@dataclass(frozen=True)
class Boundary:
    """One journaled boundary; ``work_digest`` is None in a row a schema-1 worker
    journaled (before seals), ``move`` in a row a schema-1 or 2 worker journaled
    (before movement): such a job cannot be committed or opened."""

    k: int
    state_hash: bytes
    energy_mj: int
    work_digest: bytes | None
    move: int | None


def work_digests(job_id: int, bounds: Sequence[Boundary]) -> list[bytes]:
    """The work digests of ``bounds``, in order; ``UnsealedBoundaries`` when one has none."""
    missing = [b.k for b in bounds if b.work_digest is None]
    if missing:
        raise UnsealedBoundaries(
            f"journal: job {job_id}: boundaries {missing[:5]} were journaled without work digests "
            "(by a worker before seals); their seals are unknown, so the job cannot be committed"
        )
    return [b.work_digest for b in bounds if b.work_digest is not None]


def moves(job_id: int, bounds: Sequence[Boundary]) -> list[int]:
    """The cumulative movements of ``bounds``, in order; ``UnsealedBoundaries`` when one has none."""
    missing = [b.k for b in bounds if b.move is None]
    if missing:
        raise UnsealedBoundaries(
            f"journal: job {job_id}: boundaries {missing[:5]} were journaled without their movement "
            "(by a worker before committed movement); their leaves are unknown, so the job cannot be committed"
        )
    return [b.move for b in bounds if b.move is not None]


def _unhex(s: str | None) -> bytes | None:
    return None if s is None else bytes.fromhex(s)


class Journal:
    """The worker's sqlite journal (one file per worker data directory)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"journal: cannot open {self.path}: {exc}") from exc
        version = self.get_meta("schema_version")
        if version is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))
        elif int(version) in (1, 2):
            self._migrate(int(version))
        elif int(version) != SCHEMA_VERSION:
            raise JournalError(
                f"journal: {self.path} has schema {version}, this worker needs {SCHEMA_VERSION}; "
                "use a fresh --data-dir"
            )

    def _migrate(self, version: int) -> None:
        """Schema 1 or 2 -> 3: boundaries gain ``work_digest`` (schema 1) and ``move``, jobs
        ``move_total``; NULL in the old rows, whose jobs can then neither resume nor commit."""
        with self._tx() as db:
            added = []
            for table, column in (("boundaries", "work_digest"), ("boundaries", "move"), ("jobs", "move_total")):
                columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                if column not in columns:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
                    added.append(f"{table}.{column}")
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
            old = db.execute("SELECT COUNT(DISTINCT job_id) FROM boundaries WHERE move IS NULL").fetchone()[0]
        log.warning("journal: %s migrated from schema %d to %d (added %s); %d job(s) journaled before "
                    "committed movement cannot be committed or resumed", self.path, version, SCHEMA_VERSION,
                    ", ".join(added) or "nothing", old)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ------------------------------------------------------------------ meta
    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def bind(self, chain_id: int, market: str, provider: str, identity: str | None = None) -> None:
        """Tie this journal to one chain, market and provider account, and (``identity``,
        :meth:`greenproof.chain.Chain.identity`) to the chain's genesis and deployment block.

        A data directory reused against another deployment, or against a chain that was
        reset and redeployed at the same addresses, would otherwise resume a cursor and
        jobs that mean nothing there, and ignore every new job without a word.
        """
        want = f"{chain_id}:{market.lower()}:{provider.lower()}"
        have = self.get_meta("binding")
        if have is None:
            self.set_meta("binding", want)
        elif have != want:
            raise JournalError(
                f"journal: {self.path} belongs to {have} (chain:market:provider), "
                f"not {want}; use another --data-dir"
            )
        if identity is None:
            return
        known = self.get_meta("chain_identity")
        if known is None:
            self.set_meta("chain_identity", identity)
        elif known != identity:
            raise JournalError(
                f"journal: {self.path} was written on another chain with the same id and addresses "
                f"(genesis and deployment block: {known}; this chain: {identity}): the chain was "
                "reset or redeployed. Its cursor and jobs mean nothing here: move the data "
                "directory away (or use another --data-dir) and start again"
            )

    @property
    def cursor(self) -> int | None:
        """The last block whose events were fully processed."""
        value = self.get_meta("cursor")
        return None if value is None else int(value)

    def set_cursor(self, block: int) -> None:
        self.set_meta("cursor", str(block))

    # ------------------------------------------------------------------ jobs
    def job(self, job_id: int) -> JobRow | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._JOB_COLUMNS} FROM jobs WHERE job_id = ?", (str(job_id),)
            ).fetchone()
        return None if row is None else self._row(row)

    def jobs(self, phases: Sequence[Phase] | None = None) -> list[JobRow]:
        with self._lock:
            if phases is None:
                rows = self._db.execute(f"SELECT {self._JOB_COLUMNS} FROM jobs").fetchall()
            else:
                marks = ",".join("?" * len(phases))
                rows = self._db.execute(
                    f"SELECT {self._JOB_COLUMNS} FROM jobs WHERE phase IN ({marks})", [str(p) for p in phases]
                ).fetchall()
        out = [self._row(r) for r in rows]
        out.sort(key=lambda j: (j.deadline, j.job_id))
        return out

    def active_jobs(self) -> list[JobRow]:
        return self.jobs(ACTIVE_PHASES)

    def record_skip(self, job_id: int, reason: str, posted_block: int = 0) -> bool:
        """Remember a job the worker will not take. False if it was known already."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO jobs (job_id, phase, reason, posted_block, updated_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (str(job_id), str(Phase.SKIPPED), reason, posted_block, time.time()),
            )
            return cur.rowcount == 1

    def begin_accept(
        self,
        job_id: int,
        *,
        spec_json: str,
        spec_hash: bytes,
        determinism_class: bytes,
        deadline: int,
        num_segments: int,
        posted_block: int,
    ) -> bool:
        """Journal the intent to accept, before the transaction is sent.

        Returns False (and changes nothing) if the job is already known in any
        phase other than SKIPPED: the worker never accepts a job twice.
        """
        with self._tx() as db:
            row = db.execute("SELECT phase FROM jobs WHERE job_id = ?", (str(job_id),)).fetchone()
            if row is not None and row[0] != Phase.SKIPPED:
                return False
            db.execute(
                "INSERT INTO jobs (job_id, phase, reason, spec_json, spec_hash, determinism_class, "
                "deadline, num_segments, posted_block, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(job_id) DO UPDATE SET phase=excluded.phase, reason='', "
                "spec_json=excluded.spec_json, spec_hash=excluded.spec_hash, "
                "determinism_class=excluded.determinism_class, deadline=excluded.deadline, "
                "num_segments=excluded.num_segments, posted_block=excluded.posted_block, "
                "updated_at=excluded.updated_at",
                (
                    str(job_id),
                    str(Phase.ACCEPTING),
                    "",
                    spec_json,
                    spec_hash.hex(),
                    determinism_class.hex(),
                    deadline,
                    num_segments,
                    posted_block,
                    time.time(),
                ),
            )
            return True

    def set_phase(self, job_id: int, phase: Phase, reason: str = "") -> None:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET phase = ?, reason = ?, updated_at = ? WHERE job_id = ?",
                (str(phase), reason, time.time(), str(job_id)),
            )
            if cur.rowcount != 1:
                raise JournalError(f"journal: unknown job {job_id}")

    def begin_commit(
        self,
        job_id: int,
        *,
        root: bytes,
        final_state_hash: bytes,
        energy_mj: int,
        move_total: int,
        result_uri: str,
    ) -> None:
        """Journal exactly what will be committed, before ``commit_result`` is sent."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET phase = ?, root = ?, final_state_hash = ?, energy_mj = ?, "
                "move_total = ?, result_uri = ?, updated_at = ? WHERE job_id = ?",
                (
                    str(Phase.COMMITTING),
                    root.hex(),
                    final_state_hash.hex(),
                    energy_mj,
                    str(move_total),
                    result_uri,
                    time.time(),
                    str(job_id),
                ),
            )
            if cur.rowcount != 1:
                raise JournalError(f"journal: unknown job {job_id}")

    # ------------------------------------------------------------ boundaries
    def record_boundary(
        self, job_id: int, k: int, state_hash: bytes, energy_mj: int, work_digest: bytes, move: int
    ) -> None:
        """Journal boundary ``k`` (its checkpoint must already be durable) with its work digest
        and cumulative movement.

        Re-recording the same boundary with the same values is a no-op (a
        resumed run replays its last boundary); different values are an error,
        because a committed root may already depend on the first ones.
        """
        if len(work_digest) != 32:
            raise JournalError(f"journal: job {job_id} boundary {k}: work digest must be 32 bytes")
        if move < 0:
            raise JournalError(f"journal: job {job_id} boundary {k}: movement must be >= 0, got {move}")
        new = (state_hash.hex(), energy_mj, work_digest.hex(), str(move))
        with self._tx() as db:
            row = db.execute(
                "SELECT state_hash, energy_mj, work_digest, move FROM boundaries WHERE job_id = ? AND k = ?",
                (str(job_id), k),
            ).fetchone()
            if row is not None:
                if tuple(row) != new:
                    raise JournalError(
                        f"journal: job {job_id} boundary {k} already recorded as "
                        f"({row[0]}, {row[1]} mJ, digest {row[2]}, movement {row[3]}), refusing "
                        f"({new[0]}, {new[1]} mJ, digest {new[2]}, movement {new[3]})"
                    )
                return
            db.execute(
                "INSERT INTO boundaries (job_id, k, state_hash, energy_mj, work_digest, move) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (str(job_id), k, *new),
            )

    def boundaries(self, job_id: int) -> list[Boundary]:
        with self._lock:
            rows = self._db.execute(
                "SELECT k, state_hash, energy_mj, work_digest, move FROM boundaries "
                "WHERE job_id = ? ORDER BY k",
                (str(job_id),),
            ).fetchall()
        return [Boundary(k, bytes.fromhex(h), e, _unhex(w), None if m is None else int(m))
                for k, h, e, w, m in rows]

    def has_boundary_hash(self, job_id: int, state_hash: bytes) -> bool:
        """True if ``state_hash`` is one of the job's journaled boundaries."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM boundaries WHERE job_id = ? AND state_hash = ? LIMIT 1",
                (str(job_id), state_hash.hex()),
            ).fetchone()
        return row is not None

    # ---------------------------------------------------------------- audits
    def record_opened(self, job_id: int, indices: Sequence[int]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO opened (job_id, idx) VALUES (?, ?)",
                [(str(job_id), int(i)) for i in indices],
            )

    def opened(self, job_id: int) -> set[int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT idx FROM opened WHERE job_id = ?", (str(job_id),)
            ).fetchall()
        return {r[0] for r in rows}

    # -------------------------------------------------------------- helpers
    _JOB_COLUMNS = ("job_id, phase, reason, spec_json, spec_hash, determinism_class, deadline, num_segments, "
                    "root, final_state_hash, energy_mj, move_total, result_uri, posted_block")

    @staticmethod
    def _row(r: tuple) -> JobRow:
        return JobRow(
            job_id=int(r[0]),
            phase=Phase(r[1]),
            reason=r[2],
            spec_json=r[3],
            spec_hash=_unhex(r[4]),
            determinism_class=_unhex(r[5]),
            deadline=int(r[6]),
            num_segments=int(r[7]),
            root=_unhex(r[8]),
            final_state_hash=_unhex(r[9]),
            energy_mj=None if r[10] is None else int(r[10]),
            move_total=None if r[11] is None else int(r[11]),
            result_uri=r[12],
            posted_block=int(r[13]),
        )


__all__ = [
    "ACTIVE_PHASES", "Boundary", "JobRow", "Journal", "JournalError", "Phase", "UnsealedBoundaries",
    "moves", "work_digests",
]
