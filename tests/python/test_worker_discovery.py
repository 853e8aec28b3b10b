"""The worker's discovery against an in-memory market: one posted job never stops the next.

Stories: a job whose class has no court (its verifier pool is too small) is skipped
with that reason; of four jobs posted in a row, one whose on-chain view reverts, one with
an unreadable spec and one whose accept reverts are each skipped with their
reason, and the fourth is still accepted and queued for the device; a node that
goes away mid-scan stops the scan before the cursor moves, and the same events
are read again (and decided once) when it is back; an accept a crash left
unresolved is resolved from on-chain state.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from fake_gateway import MIN_CLASS_STAKE, PROVIDER, FakeGateway, FixedClock

from greenproof.chain.errors import ChainError
from greenproof.chain.models import JobState
from greenproof.chain.retries import JobRetries
from greenproof.spec import parse_spec
from worker.config import WorkerConfig
from worker.discovery import Discovery
from worker.journal import Journal, Phase
from worker.trainer import Throughput

SPEC = parse_spec({
    "task": "mlp", "model": {"hidden": 16, "depth": 1}, "dataset": {"uri": "builtin://digits"},
    "batch_size": 32, "total_steps": 8, "segment_steps": 2,
})
SPEC_URI = "data:application/json;base64," + base64.b64encode(SPEC.canonical_json()).decode()
BROKEN_URI = "data:application/json;base64," + base64.b64encode(b"{not json").decode()


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FixedClock()
        self.market = FakeGateway(self.clock)
        self.journal = Journal(tmp_path / "journal.sqlite")
        self.queued = 0
        self.discovery = Discovery(
            self.market, self.journal, WorkerConfig(data_dir=tmp_path), self.clock,  # type: ignore[arg-type]
            Throughput(self.journal), JobRetries(1.0, 30.0, clock=lambda: 0.0),
            from_block=10, on_queued=self.count_queued,
        )

    def count_queued(self) -> None:
        self.queued += 1

    def post(self, job_id: int, uri: str = SPEC_URI, block: int = 11) -> None:
        self.market.post(job_id, uri, block, spec_hash=SPEC.spec_hash(),
                         num_segments=SPEC.num_segments)

    def phase(self, job_id: int) -> tuple[Phase, str]:
        row = self.journal.job(job_id)
        assert row is not None
        return row.phase, row.reason


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_jobs_that_cannot_be_taken_are_skipped_with_their_reason_and_the_next_is_accepted(
    world: World,
) -> None:
    for job_id in (1, 2, 3, 4):
        world.post(job_id, BROKEN_URI if job_id == 2 else SPEC_URI)
    world.market.unreadable.add(1)
    world.market.reverts[(3, "accept_job")] = "market: not enough free stake"

    world.discovery.step(head=12)

    assert world.phase(1) == (Phase.SKIPPED, "cannot evaluate: get_job failed: panic 0x32")
    phase, reason = world.phase(2)
    assert phase is Phase.SKIPPED and reason.startswith("spec unusable: cannot parse spec")
    assert world.phase(3) == (Phase.SKIPPED, "accept failed: market: not enough free stake")
    assert world.phase(4) == (Phase.QUEUED, "")
    assert world.market.state(4) is JobState.ACCEPTED and world.market.jobs[4]["provider"] == PROVIDER
    assert world.queued == 1
    assert world.journal.cursor == 12


def test_a_node_gone_mid_scan_keeps_the_cursor_and_the_events_are_read_again(world: World) -> None:
    world.post(1)
    world.market.node_down = True

    with pytest.raises(ChainError, match="unreachable"):
        world.discovery.step(head=12)

    assert world.journal.cursor is None and world.journal.job(1) is None
    world.market.node_down = False
    world.discovery.step(head=12)
    world.discovery.step(head=13)
    assert world.phase(1) == (Phase.QUEUED, "")
    assert world.market.tries("accept_job", 1) == 1


def test_an_accept_a_crash_left_unresolved_is_resolved_from_the_chain(world: World) -> None:
    for job_id in (1, 2, 3):
        world.post(job_id)
        world.journal.begin_accept(job_id, spec_json=SPEC.canonical_json().decode(),
                                   spec_hash=SPEC.spec_hash(), determinism_class=b"\1" * 32,
                                   deadline=world.clock.now() + 3_600, num_segments=SPEC.num_segments,
                                   posted_block=11)
    world.journal.set_cursor(11)
    world.market.jobs[1].update(provider=PROVIDER, state=JobState.ACCEPTED)  # landed before the crash
    world.market.jobs[3].update(provider="0x" + "33" * 20, state=JobState.ACCEPTED)  # someone else's

    world.discovery.step(head=12)

    assert world.phase(1) == (Phase.QUEUED, "")
    assert world.phase(2) == (Phase.QUEUED, "")  # sent again: it had not landed
    assert world.phase(3) == (Phase.SKIPPED, "taken or gone (ACCEPTED)")
    assert world.market.tries("accept_job", 1) == 0 and world.market.tries("accept_job", 2) == 1


def test_a_job_is_skipped_when_no_court_can_judge_our_class(world: World) -> None:
    """A class whose verifier pool holds less than ``min_class_stake`` cannot be accepted
    (the contract would revert): skipped with the reason, no transaction sent."""
    from greenproof import engine

    dclass = engine.determinism_class(SPEC, world.discovery.config.device)
    world.market.pool_stakes[dclass] = MIN_CLASS_STAKE - 1
    world.post(1)

    world.discovery.step(head=12)

    phase, reason = world.phase(1)
    assert phase is Phase.SKIPPED and reason.startswith("no court for our determinism class")
    assert f"holds {MIN_CLASS_STAKE - 1} of the {MIN_CLASS_STAKE} stake" in reason
    assert "greenproof verifier join" in reason
    assert world.market.tries("accept_job", 1) == 0
