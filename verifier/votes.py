"""The verifier's durable journal: vote salts, the event cursor, job progress, finished segment checks.

A commit-reveal vote is lost if its salt is: the vote stake is then slashed for
not revealing. So the salt (and the vote it hides) is written to sqlite with
``synchronous=FULL`` and committed BEFORE the ``commit_vote`` transaction is
sent; after a crash the daemon finds the row and reveals (or, if the commit
never landed, commits again with the same salt).

Every segment check an audit finishes (ok or fraud; an abstention may change
once the requester's dataset comes back) is written as it finishes, so a
restarted daemon resumes an audit with the segments still to do
(:mod:`verifier.auditor`).

One database per data dir: ``{data_dir}/verifier.sqlite``. Rows are keyed by
``(chain_id, market, job_id, voter)`` so one data dir can serve several
deployments and accounts.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
import time
from enum import StrEnum
from pathlib import Path

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address
from pydantic import BaseModel, ValidationError

from verifier.evidence import SegmentCheck

log = logging.getLogger("greenproof.verifier")

SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
    chain_id INTEGER NOT NULL,
    market TEXT NOT NULL,
    job_id TEXT NOT NULL,
    voter TEXT NOT NULL,
    fraud INTEGER NOT NULL,
    salt BLOB NOT NULL,
    commitment BLOB NOT NULL,
    stage TEXT NOT NULL,
    commit_tx TEXT,
    reveal_tx TEXT,
    settle_tx TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (chain_id, market, job_id, voter)
);
CREATE TABLE IF NOT EXISTS cursor (
    chain_id INTEGER NOT NULL,
    market TEXT NOT NULL,
    next_block INTEGER NOT NULL,
    PRIMARY KEY (chain_id, market)
);
CREATE TABLE IF NOT EXISTS jobs (
    chain_id INTEGER NOT NULL,
    market TEXT NOT NULL,
    job_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    report_path TEXT,
    note TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (chain_id, market, job_id)
);
CREATE TABLE IF NOT EXISTS segment_checks (
    chain_id INTEGER NOT NULL,
    market TEXT NOT NULL,
    job_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    check_json TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (chain_id, market, job_id, idx)
);
"""


class VoteStage(StrEnum):
    PREPARED = "prepared"  # salt on disk, commit tx not yet confirmed
    COMMITTED = "committed"
    REVEALED = "revealed"
    SETTLED = "settled"
    MISSED = "missed"  # a window passed before we could act


class JobStage(StrEnum):
    SEEN = "seen"
    AUDITED = "audited"
    SKIPPED = "skipped"  # we may not vote (our own job, not enough stake, window missed)
    DONE = "done"


class VoteRecord(BaseModel):
    chain_id: int
    market: str
    job_id: int
    voter: str
    fraud: bool
    salt: bytes
    commitment: bytes
    stage: VoteStage
    commit_tx: str | None = None
    reveal_tx: str | None = None
    settle_tx: str | None = None


def vote_commitment(job_id: int, voter: str, fraud: bool, salt: bytes) -> bytes:
    """``keccak256(abi_encode(job_id uint256, voter address, fraud bool, salt bytes32))``."""
    if len(salt) != 32:
        raise ValueError(f"votes: salt must be 32 bytes, got {len(salt)}")
    return keccak(
        abi_encode(["uint256", "address", "bool", "bytes32"], [job_id, to_checksum_address(voter), fraud, salt])
    )


class VoteJournal:
    """Thread-safe sqlite journal (WAL, ``synchronous=FULL``)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "verifier.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- votes ---------------------------------------------------------------------
    def prepare_vote(self, chain_id: int, market: str, job_id: int, voter: str, fraud: bool) -> VoteRecord:
        """The durable vote for this job: an existing one (same salt, so a retried
        commit matches), or a new one with a fresh salt, written before returning."""
        existing = self.vote(chain_id, market, job_id, voter)
        if existing is not None:
            if existing.fraud != fraud and existing.stage == VoteStage.PREPARED:
                # the decision changed before anything was sent: re-salt with the new vote
                self._delete_vote(chain_id, market, job_id, voter)
            else:
                return existing
        salt = secrets.token_bytes(32)
        rec = VoteRecord(
            chain_id=chain_id,
            market=market.lower(),
            job_id=job_id,
            voter=voter.lower(),
            fraud=fraud,
            salt=salt,
            commitment=vote_commitment(job_id, voter, fraud, salt),
            stage=VoteStage.PREPARED,
        )
        with self._lock:
            self._db.execute(
                "INSERT INTO votes VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (chain_id, rec.market, str(job_id), rec.voter, int(fraud), salt, rec.commitment,
                 rec.stage.value, None, None, None, time.time()),
            )
        return rec

    def _delete_vote(self, chain_id: int, market: str, job_id: int, voter: str) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM votes WHERE chain_id=? AND market=? AND job_id=? AND voter=?",
                (chain_id, market.lower(), str(job_id), voter.lower()),
            )

    def vote(self, chain_id: int, market: str, job_id: int, voter: str) -> VoteRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT chain_id, market, job_id, voter, fraud, salt, commitment, stage, commit_tx,"
                " reveal_tx, settle_tx FROM votes WHERE chain_id=? AND market=? AND job_id=? AND voter=?",
                (chain_id, market.lower(), str(job_id), voter.lower()),
            ).fetchone()
        if row is None:
            return None
        return VoteRecord(
            chain_id=row[0], market=row[1], job_id=int(row[2]), voter=row[3], fraud=bool(row[4]),
            salt=row[5], commitment=row[6], stage=VoteStage(row[7]), commit_tx=row[8],
            reveal_tx=row[9], settle_tx=row[10],
        )

    def votes(self, chain_id: int, market: str, voter: str, stages: tuple[VoteStage, ...]) -> list[VoteRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id FROM votes WHERE chain_id=? AND market=? AND voter=? AND stage IN "
                f"({','.join('?' * len(stages))})",
                (chain_id, market.lower(), voter.lower(), *[s.value for s in stages]),
            ).fetchall()
        out = [self.vote(chain_id, market, int(r[0]), voter) for r in rows]
        return [v for v in out if v is not None]

    def set_vote_stage(self, rec: VoteRecord, stage: VoteStage, tx: str | None = None) -> None:
        column = {VoteStage.COMMITTED: "commit_tx", VoteStage.REVEALED: "reveal_tx", VoteStage.SETTLED: "settle_tx"}.get(stage)
        with self._lock:
            if column and tx:
                self._db.execute(
                    f"UPDATE votes SET stage=?, {column}=?, updated_at=? WHERE chain_id=? AND market=? AND job_id=? AND voter=?",
                    (stage.value, tx, time.time(), rec.chain_id, rec.market, str(rec.job_id), rec.voter),
                )
            else:
                self._db.execute(
                    "UPDATE votes SET stage=?, updated_at=? WHERE chain_id=? AND market=? AND job_id=? AND voter=?",
                    (stage.value, time.time(), rec.chain_id, rec.market, str(rec.job_id), rec.voter),
                )
        rec.stage = stage
        if column and tx:
            setattr(rec, column, tx)

    # --- cursor ----------------------------------------------------------------------
    def cursor(self, chain_id: int, market: str, default: int) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT next_block FROM cursor WHERE chain_id=? AND market=?", (chain_id, market.lower())
            ).fetchone()
        return default if row is None else int(row[0])

    def set_cursor(self, chain_id: int, market: str, next_block: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO cursor VALUES (?,?,?) ON CONFLICT(chain_id, market) DO UPDATE SET next_block=excluded.next_block",
                (chain_id, market.lower(), next_block),
            )

    # --- jobs --------------------------------------------------------------------------
    def job_stage(self, chain_id: int, market: str, job_id: int) -> JobStage | None:
        with self._lock:
            row = self._db.execute(
                "SELECT stage FROM jobs WHERE chain_id=? AND market=? AND job_id=?",
                (chain_id, market.lower(), str(job_id)),
            ).fetchone()
        return None if row is None else JobStage(row[0])

    def set_job(self, chain_id: int, market: str, job_id: int, stage: JobStage,
                report_path: str | None = None, note: str | None = None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs VALUES (?,?,?,?,?,?,?) ON CONFLICT(chain_id, market, job_id) DO UPDATE SET"
                " stage=excluded.stage, report_path=COALESCE(excluded.report_path, jobs.report_path),"
                " note=excluded.note, updated_at=excluded.updated_at",
                (chain_id, market.lower(), str(job_id), stage.value, report_path, note, time.time()),
            )

    def jobs(self, chain_id: int, market: str, stages: tuple[JobStage, ...]) -> list[int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id FROM jobs WHERE chain_id=? AND market=? AND stage IN "
                f"({','.join('?' * len(stages))})",
                (chain_id, market.lower(), *[s.value for s in stages]),
            ).fetchall()
        return sorted(int(r[0]) for r in rows)

    # --- finished segment checks ----------------------------------------------------------
    def save_segment_check(self, chain_id: int, market: str, job_id: int, check: SegmentCheck) -> None:
        """Remember one finished segment check of ``job_id`` (durable before returning)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO segment_checks VALUES (?,?,?,?,?,?) ON CONFLICT(chain_id, market, job_id, idx)"
                " DO UPDATE SET check_json=excluded.check_json, updated_at=excluded.updated_at",
                (chain_id, market.lower(), str(job_id), check.index, check.model_dump_json(), time.time()),
            )

    def segment_checks(self, chain_id: int, market: str, job_id: int) -> dict[int, SegmentCheck]:
        """The finished segment checks of ``job_id`` by segment index (rows an older version
        wrote that no longer parse are left out: those segments are checked again)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT idx, check_json FROM segment_checks WHERE chain_id=? AND market=? AND job_id=?",
                (chain_id, market.lower(), str(job_id)),
            ).fetchall()
        out: dict[int, SegmentCheck] = {}
        for idx, raw in rows:
            try:
                out[int(idx)] = SegmentCheck.model_validate_json(raw)
            except ValidationError as exc:
                log.warning("job %d: journaled check of segment %d is unreadable (%s); checking it again",
                            job_id, idx, str(exc).splitlines()[0])
        return out
