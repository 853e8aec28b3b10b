"""The contracts' one gateway on a real anvil: typed reads, one method per transaction,
events as models (the market's and the court's), openings batched by ``MAX_OPENINGS``,
the court's pools and seats, and renamed fields that fail loudly."""

from __future__ import annotations

import copy

import pytest
from eth_abi import encode
from eth_utils import keccak
from pydantic import ValidationError

from greenproof.chain.client import Chain
from greenproof.chain.connection import make_web3
from greenproof.chain.errors import TxError
from greenproof.chain.gateway import Gateway
from greenproof.chain.models import (
    COURT_EVENTS,
    MARKET_EVENTS,
    AuditDrawn,
    CaseOpened,
    CaseOutcome,
    CourtVotingStarted,
    JobAccepted,
    JobPosted,
    JobState,
    OnchainJob,
    Opening,
    PoolJoined,
    PoolLeft,
    ResultCommitted,
    SeatsDrawn,
    SeatStatus,
    SegmentOpened,
)
from greenproof.merkle import boundary0_seal, commitment_tree, seal
from verifier.sampling import audited_segments

TOKEN = 10**18
PAYMENT, FEE, COLLATERAL = 100 * TOKEN, 10 * TOKEN, 150 * TOKEN
CPU = keccak(b"cpu")


def post(requester: Gateway, num_segments: int = 8, audit_samples: int = 4, spec: bytes = b"spec") -> int:
    job_id, _ = requester.post_job(
        spec_hash=keccak(spec), spec_uri=f"ipfs://{spec.decode()}", num_segments=num_segments,
        audit_samples=audit_samples, payment=PAYMENT, verifier_fee=FEE, collateral=COLLATERAL,
        deadline=requester.chain.timestamp() + 3_600, min_green_bps=0,
    )
    return job_id


@pytest.fixture
def cpu_pool(seat_verifiers) -> bytes:
    """Three verifiers with one seat each in the pool of class ``CPU`` (so jobs can be accepted in it)."""
    return seat_verifiers("verifier", "verifier2", "verifier3", seats=1, dclass=CPU)


def test_typed_reads_after_post_and_accept(gateway_for, cpu_pool):
    requester, provider = gateway_for("requester"), gateway_for("provider")
    provider.stake(2 * COLLATERAL)
    first = requester.next_job_id()
    balance = requester.token_balance()

    job_id = post(requester, num_segments=8, audit_samples=4)
    assert job_id == first and requester.next_job_id() == first + 1
    assert requester.token_balance() == balance - PAYMENT - FEE
    job = requester.job(job_id)
    assert isinstance(job, OnchainJob) and job.exists
    assert (job.state, job.requester, job.num_segments, job.audit_samples) == (
        JobState.OPEN, requester.address, 8, 4)
    assert (job.payment, job.verifier_fee, job.collateral, job.spec_hash) == (
        PAYMENT, FEE, COLLATERAL, keccak(b"spec"))

    provider.accept_job(job_id, CPU)
    job = provider.job(job_id)
    assert job.state is JobState.ACCEPTED and job.provider == provider.address
    assert provider.locked_stake() == COLLATERAL
    assert provider.free_stake() == provider.staked() - COLLATERAL
    assert provider.audit_indices(job_id) == [] and provider.next_open_index(job_id) == 0

    assert job.determinism_class == CPU
    case = requester.case_of(job_id)  # no case before the audit draw
    assert not case.exists and not case.voting and case.outcome is CaseOutcome.NONE
    seat = requester.seat_of(job_id, 0, requester.address)
    assert (seat.seats, seat.status, seat.settled) == (0, SeatStatus.SEATED, False) and not seat.seated
    assert requester.job(10**9).state is JobState.NONE and not requester.job(10**9).exists
    assert requester.param("max_audit_samples") == requester.params()["max_audit_samples"]
    assert requester.claimable() == 0


def test_a_revert_carries_the_contracts_reason_and_the_job(gateway_for):
    with pytest.raises(TxError, match="market: job not open") as err:
        gateway_for("provider").accept_job(424_242, CPU)
    assert err.value.context == {"job": 424_242}
    with pytest.raises(TxError, match="market: nothing to withdraw"):
        gateway_for("outsider").withdraw()


def test_events_come_back_as_models_filtered_by_job(gateway_for, cpu_pool):
    requester, provider = gateway_for("requester"), gateway_for("provider")
    provider.stake(2 * COLLATERAL)
    start = requester.chain.block_number() + 1
    one = post(requester, spec=b"one")
    two = post(requester, spec=b"two")
    receipt = provider.accept_job(two, CPU)

    posted = requester.events(JobPosted, start)
    assert [(e.job_id, e.spec_uri) for e in posted] == [(one, "ipfs://one"), (two, "ipfs://two")]
    assert all(isinstance(e, JobPosted) and e.requester == requester.address for e in posted)
    assert posted[1].spec_hash == keccak(b"two") and posted[1].num_segments == 8
    (mine,) = requester.events(JobPosted, start, job_id=two)
    assert mine == posted[1]

    (accepted,) = provider.events(JobAccepted, start, job_id=two)
    assert (accepted.provider, accepted.determinism_class, accepted.collateral) == (
        provider.address, CPU, COLLATERAL)
    assert accepted.block_number == receipt["blockNumber"]
    assert accepted.tx_hash == receipt["transactionHash"].to_0x_hex()
    assert provider.receipt_events(JobAccepted, receipt) == [accepted]
    assert provider.events(JobAccepted, start, job_id=one) == []

    every = requester.market_events(start)
    assert [type(e).__name__ for e in every] == ["JobPosted", "JobPosted", "JobAccepted"]
    assert all(type(e) is MARKET_EVENTS[type(e).__name__] for e in every)


def test_openings_beyond_max_openings_go_through_in_batches(anvil, gateway_for, test_params, cpu_pool):
    """64 segments, 32 samples: ~25 distinct audited segments, more than one transaction holds."""
    requester, provider = gateway_for("requester"), gateway_for("provider")
    provider.stake(2 * COLLATERAL)
    segments, samples = 64, 32
    job_id = post(requester, num_segments=segments, audit_samples=samples)
    hashes = [keccak(encode(["uint256", "uint256"], [job_id, k])) for k in range(segments + 1)]
    energies = [k * 1_000 for k in range(segments + 1)]
    moves = [k * 500 for k in range(segments + 1)]
    seals = [boundary0_seal(job_id)] + [seal(job_id, k, keccak(b"losses %d" % k)) for k in range(1, segments + 1)]
    tree = commitment_tree(job_id, hashes, energies, moves, seals)
    provider.accept_job(job_id, CPU)
    start = provider.chain.block_number()
    provider.commit_result(job_id, tree.root, hashes[-1], energies[-1], moves[-1], "http://x")
    anvil.mine(test_params["seed_lookahead"] + 1)
    requester.draw_audit(job_id)

    (drawn,) = requester.events(AuditDrawn, start, job_id=job_id)
    # half the samples uniform over the segments, half over the committed movement
    assert drawn.indices == provider.audit_indices(job_id) and len(drawn.indices) == samples // 2
    assert drawn.targets == provider.movement_draws(job_id) and len(drawn.targets) == samples // 2
    (committed,) = requester.events(ResultCommitted, start, job_id=job_id)
    assert (committed.root, committed.energy_mj, committed.move_total) == (tree.root, energies[-1], moves[-1])
    job = provider.job(job_id)
    indices = audited_segments(job.seed, job_id, samples, moves)
    assert set(drawn.indices) <= set(indices) and {u // 500 for u in drawn.targets} <= set(indices)
    assert provider.max_openings == 16 < len(indices)

    openings = [Opening.from_tree(tree, i, hashes, energies, moves, seals) for i in indices]
    receipts = provider.open_segments(job_id, openings)
    assert len(receipts) == -(-len(indices) // 16)
    assert all(r["status"] == 1 for r in receipts)
    assert provider.next_open_index(job_id) == indices[-1] + 1
    assert provider.job(job_id).state is JobState.VOTING
    opened = provider.events(SegmentOpened, start, job_id=job_id)
    assert [(e.index, e.start_hash, e.end_energy_mj) for e in opened] == [
        (i, hashes[i], energies[i + 1]) for i in indices]
    case = provider.case_of(job_id)
    (voting,) = provider.events(CourtVotingStarted, start, job_id=job_id)
    assert (voting.round, voting.commit_end, voting.reveal_end) == (0, case.commit_end, case.reveal_end)
    assert case.voting and provider.voting_ends(job_id) == case.reveal_end
    assert case.commit_end - case.voting_start == test_params["commit_window"]
    (drawn,) = provider.events(SeatsDrawn, start, job_id=job_id)
    assert drawn.round == 0 and len(drawn.voters) == case.drawn_seats == 3
    court = provider.court_events(start)
    assert [type(e) for e in court] == [CaseOpened, SeatsDrawn, CourtVotingStarted]
    assert all(type(e) is COURT_EVENTS[type(e).event_name()] for e in court)


def test_pools_seats_and_the_courts_reads(gateway_for):
    verifier, outsider = gateway_for("verifier"), gateway_for("outsider")
    seat = verifier.seat_stake()
    assert seat > 0 and verifier.court_param("min_class_stake") == verifier.court_params()["min_class_stake"]
    verifier.stake(3 * seat)
    start = verifier.chain.block_number() + 1
    joined = verifier.receipt_events(PoolJoined, verifier.join_pool(CPU, 3))
    assert [(e.dclass, e.member, e.seats, e.member_seats, e.pool_seats) for e in joined] == [
        (CPU, verifier.address, 3, 3, 3)]
    assert verifier.locked_stake() == 3 * seat and verifier.free_stake() == 0
    pool = verifier.pool_of(CPU)
    assert (pool.members, pool.free_seats, pool.busy_seats, pool.stake) == (1, 3, 0, 3 * seat)
    assert verifier.pool_stake(CPU) == 3 * seat and verifier.pool_stake(keccak(b"gpu")) == 0
    member = verifier.member_of(CPU)
    assert (member.free_seats, member.busy_seats, member.seats) == (3, 0, 3)
    assert outsider.member_of(CPU, verifier.address) == member and outsider.member_of(CPU).seats == 0

    (left,) = verifier.receipt_events(PoolLeft, verifier.leave_pool(CPU, 2))
    assert (left.seats, left.member_seats, left.pool_seats) == (2, 1, 1)
    assert verifier.free_stake() == 2 * seat
    assert [type(e) for e in verifier.court_events(start)] == [PoolJoined, PoolLeft]
    with pytest.raises(TxError, match="court: seats not free"):
        verifier.leave_pool(CPU, 2)
    with pytest.raises(TxError, match="court: case not voting"):
        outsider.commit_vote(424_242, keccak(b"vote"))


def test_a_field_the_abi_renames_fails_loudly(anvil, deployment, gateway_for, account_for):
    """A manifest whose ``get_job`` calls ``payment`` something else: the read raises, never 0."""
    requester = gateway_for("requester")
    job_id = post(requester)
    abis = copy.deepcopy(deployment.abis)
    (get_job,) = [i for i in abis["JobMarket"] if i.get("name") == "get_job"]
    for field in get_job["outputs"][0]["components"]:
        if field["name"] == "payment":
            field["name"] = "price"
    stale = Gateway(Chain(make_web3(anvil.rpc_url), account_for("requester"),
                          deployment.model_copy(update={"abis": abis})))
    with pytest.raises(ValidationError, match="payment"):
        stale.job(job_id)


def test_onchain_job_without_a_field_does_not_validate():
    fields = {name: 0 for name in OnchainJob.model_fields}
    fields.update(requester="0x" + "11" * 20, provider="0x" + "22" * 20, spec_hash=b"", root=b"",
                  final_state_hash=b"", seed=b"", determinism_class=b"", seal_acc=b"")
    assert OnchainJob.model_validate(fields).state is JobState.NONE
    del fields["payment"]
    with pytest.raises(ValidationError, match="payment"):
        OnchainJob.model_validate(fields)
