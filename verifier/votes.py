"""The verifier's durable journal: its court seats and votes, the event cursor, job progress,
finished segment checks.

A commit-reveal vote is lost if its salt is: the seat is then a no-show and
loses ``noshow_slash_bps`` of its stake. So the salt and the vote it hides (the
side and the replayed work digests) are written to sqlite with
``synchronous=FULL`` and committed BEFORE the ``commit_vote`` transaction is
sent; after a crash the daemon finds the row and reveals (or, if the commit
never landed, commits again with the same salt and digests).

One row per seat holding: ``(job, round)`` where the court drew this account
(``SeatsDrawn``; ``seats`` is how many seats it holds in that round, all voted
by one vote), from drawn to settled (:class:`SeatStage`).

Every segment check an audit finishes (ok or fraud; an abstention may change
once the requester's dataset comes back) is written as it finishes, so a
restarted daemon resumes an audit with the segments still to do
(:mod:`verifier.auditor`).

One database per data dir: ``{data_dir}/verifier.sqlite``. Rows are keyed by
``(chain_id, market, job_id, round, voter)`` so one data dir can serve several
deployments and accounts.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import threading
import time
from enum import StrEnum
from pathlib import Path

from eth_utils import to_checksum_address
from pydantic import BaseModel, Field, ValidationError

from greenproof.merkle import vote_commitment
from verifier.evidence import AuditReport, SegmentCheck

log = logging.getLogger("greenproof.verifier")

SCHEMA = """
CREATE TABLE IF NOT EXISTS seats (
    chain_id INTEGER NOT NULL,
    market TEXT NOT NULL,
    job_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    voter TEXT NOT NULL,
    seats INTEGER NOT NULL,
    stage TEXT NOT NULL,
    fraud INTEGER,
    salt BLOB,
    digests TEXT,
    segments TEXT,
    commitment BLOB,
    commit_tx TEXT,
    reveal_tx TEXT,
    settle_tx TEXT,
    note TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (chain_id, market, job_id, round, voter)
);
CREATE TABLE IF NOT EXISTS cursor (
    chain_id INTEGER NOT NULL,
    market TEXT NOT NULL,
    next_block INTEGER NOT NULL,
    PRIMARY KEY (chain_id, market)
);
CREATE TABLE IF NOT EXISTS identity (
    chain_id INTEGER NOT NULL,
    market TEXT NOT NULL,
    identity TEXT NOT NULL,
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


class SeatStage(StrEnum):
    SEATED = "seated"  # drawn; nothing sent yet
    PREPARED = "prepared"  # salt and digests on disk, commit tx not yet confirmed
    COMMITTED = "committed"
    REVEALED = "revealed"
    ABSTAINED = "abstained"  # no vote this round (the note says why): a no-show
    MISSED = "missed"  # a window passed before we could act: a no-show
    SETTLED = "settled"


#: seats still waiting for something from us or from the court
OPEN_SEATS = (SeatStage.SEATED, SeatStage.PREPARED, SeatStage.COMMITTED, SeatStage.REVEALED,
              SeatStage.ABSTAINED, SeatStage.MISSED)


class JobStage(StrEnum):
    SEEN = "seen"  # seated on its case: followed until every seat of ours is settled
    AUDITED = "audited"  # the audit's report holds a vote (ok or fraud)
    DONE = "done"  # decided and our seats settled (or it closed without a case)


class Ballot(BaseModel):
    """What one vote says: the side and, for ok, the work digests of the distinct audited
    segments in ascending order and those segments (the court's proof of replay)."""

    fraud: bool
    digests: list[bytes]
    segments: list[int] = Field(default_factory=list)


class Abstention(BaseModel):
    """No vote: why."""

    reason: str


def ballot_of(report: AuditReport) -> Ballot | Abstention:
    """The vote a concluded report supports.

    Fraud: a fraud vote with no digests (it counts without them). Ok: only with the
    replay's work digest of every distinct audited segment, each replayed in the
    provider's determinism class; a replay in another class cannot reproduce the
    digests the provider's seals commit to, so its ok would be counted as a no-show:
    abstain instead. An abstaining report abstains.
    """
    if report.fraud:
        return Ballot(fraud=True, digests=[], segments=[])
    if report.abstain:
        return Abstention(reason="; ".join(report.abstentions) or "the audit abstained")
    checks = {c.index: c for c in report.segments}
    digests: list[bytes] = []
    segments = sorted(set(report.audit_indices))
    for i in segments:
        check = checks.get(i)
        if check is None or check.work_digest is None:
            return Abstention(reason=f"segment {i} has no replayed work digest: an ok vote cannot prove the replay")
        if not check.same_class:
            return Abstention(reason=(
                f"segment {i} was replayed in determinism class {check.replay_class}, not the provider's "
                f"{report.provider_class}: the replay cannot reproduce the work digests an ok vote must reveal"))
        digests.append(bytes.fromhex(check.work_digest.removeprefix("0x")))
    return Ballot(fraud=False, digests=digests, segments=segments)


class SeatRecord(BaseModel):
    """Our seats in one round of one job's case, and the vote cast with them."""

    chain_id: int
    market: str
    job_id: int
    round: int
    voter: str
    seats: int
    stage: SeatStage
    fraud: bool | None = None
    salt: bytes | None = None
    digests: list[bytes] = Field(default_factory=list)
    segments: list[int] = Field(default_factory=list)
    commitment: bytes | None = None
    commit_tx: str | None = None
    reveal_tx: str | None = None
    settle_tx: str | None = None
    note: str | None = None

    @property
    def ballot(self) -> Ballot:
        """The prepared vote (``ValueError`` before :meth:`VoteJournal.prepare_vote`)."""
        if self.fraud is None or self.salt is None:
            raise ValueError(f"votes: job {self.job_id} round {self.round}: no vote prepared")
        return Ballot(fraud=self.fraud, digests=self.digests, segments=self.segments)


_COLUMNS = ("chain_id, market, job_id, round, voter, seats, stage, fraud, salt, digests, commitment,"
            " commit_tx, reveal_tx, settle_tx, note, segments")
_KEY = "chain_id=? AND market=? AND job_id=? AND round=? AND voter=?"


def _record(row: tuple) -> SeatRecord:
    return SeatRecord(
        chain_id=row[0], market=row[1], job_id=int(row[2]), round=int(row[3]), voter=row[4], seats=row[5],
        stage=SeatStage(row[6]), fraud=None if row[7] is None else bool(row[7]), salt=row[8],
        digests=[bytes.fromhex(d) for d in json.loads(row[9] or "[]")], commitment=row[10],
        commit_tx=row[11], reveal_tx=row[12], settle_tx=row[13], note=row[14],
        segments=[int(k) for k in json.loads(row[15] or "[]")],
    )


class VoteJournalError(RuntimeError):
    """The journal cannot be used here (it belongs to another chain)."""


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
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(seats)")}
        if "segments" not in columns:  # a journal from before the court took the segments at reveal
            self._db.execute("ALTER TABLE seats ADD COLUMN segments TEXT")
            log.warning("votes: %s: seats gained the segments column; an ok vote prepared before it "
                        "reveals without segments (a no-show)", self.path)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- seats and votes ------------------------------------------------------------
    def add_seat(self, chain_id: int, market: str, job_id: int, round: int, voter: str,
                 seats: int) -> SeatRecord:
        """Record that ``voter`` holds ``seats`` seats in ``round`` (kept if already recorded)."""
        with self._lock:
            self._db.execute(
                f"INSERT INTO seats ({_COLUMNS}, updated_at) VALUES (?,?,?,?,?,?,?,NULL,NULL,NULL,NULL,"
                "NULL,NULL,NULL,NULL,NULL,?) ON CONFLICT DO NOTHING",
                (chain_id, market.lower(), str(job_id), round, voter.lower(), seats, SeatStage.SEATED.value,
                 time.time()),
            )
        rec = self.seat(chain_id, market, job_id, round, voter)
        if rec is None:
            raise sqlite3.DatabaseError(f"votes: job {job_id} round {round}: the seat was not recorded")
        return rec

    def seat(self, chain_id: int, market: str, job_id: int, round: int, voter: str) -> SeatRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM seats WHERE {_KEY}",
                                   (chain_id, market.lower(), str(job_id), round, voter.lower())).fetchone()
        return None if row is None else _record(row)

    def seats_of(self, chain_id: int, market: str, job_id: int, voter: str) -> list[SeatRecord]:
        """``voter``'s seats on ``job_id``, by round."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM seats WHERE chain_id=? AND market=? AND job_id=? AND voter=?"
                " ORDER BY round", (chain_id, market.lower(), str(job_id), voter.lower())).fetchall()
        return [_record(r) for r in rows]

    def seats(self, chain_id: int, market: str, voter: str, stages: tuple[SeatStage, ...]) -> list[SeatRecord]:
        """``voter``'s seats in ``stages``, on every job."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM seats WHERE chain_id=? AND market=? AND voter=? AND stage IN "
                f"({','.join('?' * len(stages))}) ORDER BY CAST(job_id AS INTEGER), round",
                (chain_id, market.lower(), voter.lower(), *[s.value for s in stages]),
            ).fetchall()
        return [_record(r) for r in rows]

    def prepare_vote(self, rec: SeatRecord, ballot: Ballot) -> SeatRecord:
        """The durable vote of this seat: the one already prepared (same salt, so a retried
        commit matches) or, if none was or the ballot changed before anything was sent, a new
        one with a fresh salt, written (salt, side, digests, commitment) before returning."""
        if rec.stage not in (SeatStage.SEATED, SeatStage.PREPARED):
            return rec
        if rec.stage is SeatStage.PREPARED and rec.ballot == ballot:
            return rec
        salt = secrets.token_bytes(32)
        commitment = vote_commitment(rec.job_id, to_checksum_address(rec.voter), ballot.fraud, salt,
                                     ballot.digests)
        with self._lock:
            self._db.execute(
                f"UPDATE seats SET stage=?, fraud=?, salt=?, digests=?, segments=?, commitment=?, updated_at=? "
                f"WHERE {_KEY}",
                (SeatStage.PREPARED.value, int(ballot.fraud), salt, json.dumps([d.hex() for d in ballot.digests]),
                 json.dumps(list(ballot.segments)), commitment, time.time(), rec.chain_id, rec.market,
                 str(rec.job_id), rec.round, rec.voter),
            )
        return rec.model_copy(update={"stage": SeatStage.PREPARED, "fraud": ballot.fraud, "salt": salt,
                                      "digests": list(ballot.digests), "segments": list(ballot.segments),
                                      "commitment": commitment})

    def set_seat_stage(self, rec: SeatRecord, stage: SeatStage, tx: str | None = None,
                       note: str | None = None) -> None:
        """Move ``rec`` (in place) to ``stage``, with the transaction that did it or a note."""
        column = {SeatStage.COMMITTED: "commit_tx", SeatStage.REVEALED: "reveal_tx",
                  SeatStage.SETTLED: "settle_tx"}.get(stage)
        sets, values = ["stage=?", "updated_at=?"], [stage.value, time.time()]
        if column and tx:
            sets.append(f"{column}=?")
            values.append(tx)
        if note is not None:
            sets.append("note=?")
            values.append(note[:1000])
        with self._lock:
            self._db.execute(f"UPDATE seats SET {', '.join(sets)} WHERE {_KEY}",
                             (*values, rec.chain_id, rec.market, str(rec.job_id), rec.round, rec.voter))
        rec.stage = stage
        if column and tx:
            setattr(rec, column, tx)
        if note is not None:
            rec.note = note[:1000]

    # --- cursor ----------------------------------------------------------------------
    def bind(self, chain_id: int, market: str, identity: str) -> None:
        """Tie this journal's rows of ``(chain_id, market)`` to the chain's genesis and
        deployment block (:meth:`greenproof.chain.Chain.identity`): a chain that was reset and
        redeployed at the same addresses must not resume the old cursor and seats."""
        with self._lock:
            row = self._db.execute("SELECT identity FROM identity WHERE chain_id=? AND market=?",
                                   (chain_id, market.lower())).fetchone()
            if row is None:
                self._db.execute("INSERT INTO identity VALUES (?,?,?)", (chain_id, market.lower(), identity))
                return
        if row[0] != identity:
            raise VoteJournalError(
                f"votes: {self.path} was written on another chain with the same id and market address "
                f"(genesis and deployment block: {row[0]}; this chain: {identity}): the chain was reset "
                "or redeployed. Its cursor and seats mean nothing here: move the data directory away "
                "(or use another --data-dir) and start again")

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
