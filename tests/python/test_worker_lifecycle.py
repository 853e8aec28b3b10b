"""The worker's on-chain lifecycle against an in-memory market: one job's failure stays that job's.

Stories:

* a job whose ``commit_result`` reverts on every try does not hold back the
  other jobs: they are committed, audited, opened, finalized and paid in the
  same passes, while the failing job is logged with the revert reason and
  retried alone, after its own backoff;
* an audit of 25 distinct segments (more than the contract's MAX_OPENINGS per
  transaction) hands every opening to the gateway, which batches them;
* a node that is away is everybody's problem: the pass stops and the chain
  loop backs off as a whole.

Time is the test's: chain time is a :class:`FixedClock`, the backoff runs on a
counter the test advances; nothing sleeps.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from eth_utils import keccak
from fake_gateway import MAX_OPENINGS, PROVIDER, VOTE_WINDOWS, FakeGateway, FixedClock

from greenproof.chain.errors import ChainError
from greenproof.chain.models import JobState
from greenproof.chain.retries import JobRetries
from worker.journal import Journal, Phase
from worker.lifecycle import Lifecycle, LifecycleError


class Ticker:
    """The retries' monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class World:
    """A journal, the fake market and the lifecycle under test; ``passes(n)`` runs the chain loop's part."""

    def __init__(self, tmp_path: Path) -> None:
        self.clock = FixedClock()
        self.market = FakeGateway(self.clock)
        self.journal = Journal(tmp_path / "journal.sqlite")
        self.ticker = Ticker()
        self.retries = JobRetries(1.0, 30.0, clock=self.ticker)
        self.lifecycle = Lifecycle(self.market, self.journal, self.clock, self.retries,  # type: ignore[arg-type]
                                   result_base="http://worker.test")

    def trained_job(self, job_id: int, segments: int, *, draws: list[int] | None = None) -> None:
        """A job accepted by us on chain with every boundary journaled (phase TRAINED)."""
        self.market.add_job(job_id, num_segments=segments, provider=PROVIDER, state=JobState.ACCEPTED)
        self.market.draws[job_id] = draws if draws is not None else [0, segments - 1]
        self.journal.begin_accept(
            job_id, spec_json="{}", spec_hash=b"\0" * 32, determinism_class=b"\1" * 32,
            deadline=self.clock.now() + 86_400, num_segments=segments, posted_block=1,
        )
        for k in range(segments + 1):
            self.journal.record_boundary(job_id, k, boundary_hash(job_id, k), 10 * k)
        self.journal.set_phase(job_id, Phase.TRAINED)

    def passes(self, n: int) -> None:
        """``n`` passes of the lifecycle, each on a new block (chain time moves only by hand)."""
        for _ in range(n):
            self.market.head += 1
            self.lifecycle.step(self.market.head)

    def vote_windows_pass(self) -> None:
        self.clock.t += VOTE_WINDOWS

    def phase(self, job_id: int) -> Phase:
        row = self.journal.job(job_id)
        assert row is not None
        return row.phase


def boundary_hash(job_id: int, k: int) -> bytes:
    return keccak(f"job {job_id} boundary {k}".encode())


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_a_job_whose_commit_keeps_reverting_does_not_hold_back_the_others(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    market = world.market
    for job_id in (1, 2, 3):
        world.trained_job(job_id, segments=4)
    market.reverts[(1, "commit_result")] = "market: commitment refused"

    with caplog.at_level(logging.INFO, logger="greenproof.worker"):
        world.passes(3)  # commit, draw, open
        world.vote_windows_pass()
        world.passes(2)  # finalize; close and withdraw

    # the two healthy jobs went all the way while job 1 kept failing
    for job_id in (2, 3):
        assert market.state(job_id) is JobState.PAID
        assert world.phase(job_id) is Phase.CLOSED
        assert [m for m, j in market.sent if j == job_id] == [
            "commit_result", "draw_audit", "open_segments", "finalize"]
    assert market.owed == 0 and market.tries("withdraw", 0) == 1
    # job 1: logged with the decoded reason, still ours to commit, and retried only on its own schedule
    assert "job 1: commit result failed: market: commitment refused" in caplog.text
    assert market.state(1) is JobState.ACCEPTED
    assert world.phase(1) is Phase.COMMITTING
    assert market.tries("commit_result", 1) == 1  # its backoff (1 s) has not run out

    world.ticker.t += 1.0  # the backoff passes
    world.passes(1)
    assert market.tries("commit_result", 1) == 2
    assert "failure 2" in caplog.text

    market.reverts.clear()  # whatever it was, it is over: the job goes on like the others
    world.ticker.t += 2.0
    world.passes(3)
    world.vote_windows_pass()
    world.passes(2)
    assert market.state(1) is JobState.PAID
    assert world.phase(1) is Phase.CLOSED
    assert world.retries.failure(1) is None


def test_every_audited_segment_is_handed_to_the_gateway_in_one_call(world: World) -> None:
    draws = [*range(0, 50, 2), 0, 2, 4, 6, 8, 10, 12]  # 32 draws, 25 distinct segments
    assert len(set(draws)) == 25 > MAX_OPENINGS
    world.trained_job(7, segments=50, draws=draws)

    world.passes(3)  # commit, draw, open

    assert world.market.state(7) is JobState.VOTING
    [(job_id, openings)] = world.market.open_calls
    assert job_id == 7
    assert [o.index for o in openings] == sorted(set(draws))
    assert world.journal.opened(7) == set(draws)
    assert world.phase(7) is Phase.AUDITING  # VOTING on the next pass, which finalizes


def test_segments_opened_before_a_crash_are_not_sent_again(world: World) -> None:
    draws = list(range(0, 40, 2))
    world.trained_job(8, segments=40, draws=draws)
    world.passes(2)  # commit, draw
    assert world.market.state(8) is JobState.AUDITING
    world.market.opened[8] = set(draws[:16])  # a first batch landed, the worker died before journaling it

    world.passes(1)

    [(_, openings)] = world.market.open_calls
    assert [o.index for o in openings] == draws[16:]
    assert world.journal.opened(8) == set(draws)
    assert world.market.state(8) is JobState.VOTING


def test_boundaries_that_do_not_give_the_committed_root_are_never_opened(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.trained_job(9, segments=4, draws=[1])
    world.passes(2)  # commit, draw
    row = world.journal.job(9)
    assert row is not None and row.final_state_hash is not None and row.result_uri is not None
    # the journal's commitment no longer matches its boundaries (a corrupted or foreign journal)
    world.journal.begin_commit(9, root=b"\7" * 32, final_state_hash=row.final_state_hash,
                               energy_mj=row.energy_mj or 0, result_uri=row.result_uri)
    world.journal.set_phase(9, Phase.AUDITING)

    with caplog.at_level(logging.WARNING, logger="greenproof.worker"):
        world.passes(1)

    assert world.market.open_calls == []
    assert LifecycleError.__name__ in caplog.text and "refusing to open" in caplog.text
    assert world.retries.failure(9) is not None


def test_a_node_that_is_away_stops_the_pass_for_every_job(world: World) -> None:
    world.trained_job(1, segments=4)
    world.market.node_down = True

    with pytest.raises(ChainError, match="unreachable"):
        world.passes(1)

    assert world.retries.failure(1) is None  # not held against the job: the loop backs off instead
    world.market.node_down = False
    world.passes(1)
    assert world.market.state(1) is JobState.COMMITTED
