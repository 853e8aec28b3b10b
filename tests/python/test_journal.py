"""The worker's sqlite journal: durable, idempotent, never accepts twice."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from worker.journal import Boundary, Journal, JournalError, Phase, UnsealedBoundaries, moves

H0, H1, H2 = (bytes([i]) * 32 for i in range(3))
W0, W1, W2 = b"\x00" * 32, b"\xa1" * 32, b"\xa2" * 32  # work digests (w_0 is zero)

#: the journal as a schema-2 worker created it (work digests, no movement)
SCHEMA_2 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY, phase TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', spec_json TEXT,
    spec_hash TEXT, determinism_class TEXT, deadline INTEGER NOT NULL DEFAULT 0,
    num_segments INTEGER NOT NULL DEFAULT 0, root TEXT, final_state_hash TEXT, energy_mj INTEGER,
    result_uri TEXT, posted_block INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL
);
CREATE TABLE boundaries (
    job_id TEXT NOT NULL, k INTEGER NOT NULL, state_hash TEXT NOT NULL, energy_mj INTEGER NOT NULL,
    work_digest TEXT, PRIMARY KEY (job_id, k)
);
INSERT INTO meta VALUES ('schema_version', '2');
"""

#: the boundaries table as a schema-1 worker created it (no work digest)
SCHEMA_1_BOUNDARIES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE boundaries (
    job_id TEXT NOT NULL, k INTEGER NOT NULL, state_hash TEXT NOT NULL, energy_mj INTEGER NOT NULL,
    PRIMARY KEY (job_id, k)
);
INSERT INTO meta VALUES ('schema_version', '1');
"""


def accept(j: Journal, job_id: int, deadline: int = 100) -> bool:
    return j.begin_accept(
        job_id,
        spec_json="{}",
        spec_hash=b"\x11" * 32,
        determinism_class=b"\x22" * 32,
        deadline=deadline,
        num_segments=2,
        posted_block=5,
    )


def test_wal_and_full_sync(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    assert j._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_cursor_survives_reopen(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    assert j.cursor is None
    j.set_cursor(41)
    j.close()
    assert Journal(tmp_path / "j.sqlite").cursor == 41


def test_never_accepts_twice(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    assert accept(j, 1)
    assert not accept(j, 1)
    j.set_phase(1, Phase.QUEUED)
    assert not accept(j, 1)
    reopened = Journal(tmp_path / "j.sqlite")
    assert not accept(reopened, 1)
    assert reopened.job(1).phase is Phase.QUEUED


def test_a_skipped_job_may_be_reconsidered_once(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    assert j.record_skip(3, "too cheap")
    assert not j.record_skip(3, "again")
    assert j.job(3).reason == "too cheap"
    assert accept(j, 3)
    assert j.job(3).phase is Phase.ACCEPTING


def test_boundaries_are_idempotent_but_immutable(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    accept(j, 9)
    big = 2**70  # movements are uint256 (kept as decimal text)
    j.record_boundary(9, 0, H0, 0, W0, 0)
    j.record_boundary(9, 1, H1, 50, W1, big)
    j.record_boundary(9, 1, H1, 50, W1, big)  # resumed run replays its last boundary
    with pytest.raises(JournalError, match="boundary 1 already recorded"):
        j.record_boundary(9, 1, H2, 50, W1, big)
    with pytest.raises(JournalError, match="boundary 1 already recorded"):
        j.record_boundary(9, 1, H1, 50, W2, big)  # other losses behind the same state: refused too
    with pytest.raises(JournalError, match="boundary 1 already recorded"):
        j.record_boundary(9, 1, H1, 50, W1, big + 1)  # another movement: refused too
    with pytest.raises(JournalError, match="32 bytes"):
        j.record_boundary(9, 2, H2, 60, b"short", big)
    with pytest.raises(JournalError, match="movement must be >= 0"):
        j.record_boundary(9, 2, H2, 60, W2, -1)
    assert [(b.k, b.state_hash, b.energy_mj, b.work_digest, b.move) for b in j.boundaries(9)] == [
        (0, H0, 0, W0, 0), (1, H1, 50, W1, big)]
    assert j.has_boundary_hash(9, H1) and not j.has_boundary_hash(9, H2)
    assert not j.has_boundary_hash(8, H1)


def test_commit_intent_and_active_jobs(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    accept(j, 1, deadline=300)
    accept(j, 2, deadline=200)
    j.record_skip(3, "no")
    assert [r.job_id for r in j.active_jobs()] == [2, 1]  # earliest deadline first
    j.begin_commit(1, root=H2, final_state_hash=H1, energy_mj=77, move_total=2**80,
                   result_uri="http://x/artifacts/1")
    row = j.job(1)
    assert row.phase is Phase.COMMITTING and row.root == H2 and row.energy_mj == 77 and row.move_total == 2**80
    j.set_phase(2, Phase.ABANDONED, "deadline unreachable")
    assert [r.job_id for r in j.active_jobs()] == [1]
    with pytest.raises(JournalError, match="unknown job"):
        j.set_phase(99, Phase.CLOSED)


def test_opened_segments(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    j.record_opened(4, [3, 1, 3])
    j.record_opened(4, [1, 0])
    assert j.opened(4) == {0, 1, 3}
    assert j.opened(5) == set()


def test_binding_rejects_another_deployment(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite")
    j.bind(31337, "0xAbC", "0xDeF")
    j.bind(31337, "0xabc", "0xdef")
    with pytest.raises(JournalError, match="another --data-dir"):
        j.bind(1, "0xabc", "0xdef")


def test_binding_rejects_a_reset_chain_with_the_same_addresses(tmp_path: Path) -> None:
    """anvil restarted, contracts redeployed at the same addresses: the cursor (block 1 196 on a
    chain now at 104) must not silently hide every new job."""
    j = Journal(tmp_path / "j.sqlite")
    j.bind(31337, "0xabc", "0xdef", "31337:genesis-a:5:block-a")
    j.set_cursor(1_196)
    j.bind(31337, "0xabc", "0xdef", "31337:genesis-a:5:block-a")  # a restart on the same chain
    with pytest.raises(JournalError, match="the chain was reset or redeployed"):
        j.bind(31337, "0xabc", "0xdef", "31337:genesis-b:5:block-b")


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    Journal(path).set_meta("schema_version", "999")
    with pytest.raises(JournalError, match="schema 999"):
        Journal(path)


def test_a_schema_1_journal_is_migrated_and_its_old_boundaries_have_no_digest(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_1_BOUNDARIES)
        db.execute("INSERT INTO boundaries VALUES ('4', 0, ?, 0)", (H0.hex(),))
    j = Journal(path)
    assert j.get_meta("schema_version") == "3"
    assert j.boundaries(4) == [Boundary(0, H0, 0, None, None)]  # never guessed
    with pytest.raises(JournalError, match="already recorded"):
        j.record_boundary(4, 0, H0, 0, W0, 0)  # nor filled in later
    j.record_boundary(5, 0, H0, 0, W0, 0)
    j.close()
    reopened = Journal(path)  # migrating is done once
    assert reopened.boundaries(5) == [Boundary(0, H0, 0, W0, 0)]


def test_a_schema_2_journal_is_migrated_loudly_and_its_jobs_cannot_be_committed(tmp_path: Path, caplog) -> None:
    path = tmp_path / "j.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_2)
        db.execute("INSERT INTO jobs (job_id, phase, updated_at) VALUES ('4', 'trained', 0)")
        db.execute("INSERT INTO boundaries VALUES ('4', 0, ?, 0, ?)", (H0.hex(), W0.hex()))
    with caplog.at_level("WARNING", logger="greenproof.worker"):
        j = Journal(path)
    assert "migrated from schema 2 to 3" in caplog.text and "1 job(s)" in caplog.text
    assert j.get_meta("schema_version") == "3"
    assert j.job(4).phase is Phase.TRAINED and j.job(4).move_total is None
    bounds = j.boundaries(4)
    assert bounds == [Boundary(0, H0, 0, W0, None)]  # the movement is never guessed
    with pytest.raises(UnsealedBoundaries, match="without their movement"):
        moves(4, bounds)
    j.record_boundary(5, 0, H0, 0, W0, 0)
    assert moves(5, j.boundaries(5)) == [0]


def test_rejects_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises((JournalError, sqlite3.DatabaseError)):
        Journal(path)
