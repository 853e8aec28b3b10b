"""VerifierCourt: cases, commit-reveal with proof of replay, rounds, settlement:
every rule and its revert reason."""

from __future__ import annotations

import ape
import pytest
from eth_abi import encode
from eth_utils import keccak
from job_market_helpers import (
    AUDITING,
    COMMITTED_VOTE,
    DETERMINISM,
    NO_PROOF,
    OUTCOME_OK,
    PROVIDER_STAKE,
    REVEALED_FRAUD,
    REVEALED_OK,
    SEAT,
    SEATED,
    Ballot,
    accept_and_commit,
    decide,
    draw,
    fund,
    make_run,
    no_show,
    ok,
    post,
    salt_of,
    seat,
    to_decide,
    to_reveal,
    to_voting,
    unique,
    vote,
)

from greenproof.merkle import vote_commitment


@pytest.fixture(scope="module")
def s(system, requester, provider, verifier, verifier2, verifier3, stranger):
    fund(system, requester, stranger)
    fund(system, provider, stake=PROVIDER_STAKE)
    seat(system, verifier, verifier2, verifier3)  # every committee of 3 is all of them
    return system


@pytest.fixture
def voting(s, chain, requester, provider, stranger):
    """A job in VOTING with 8 audit samples over 64 segments: ``(job, run, indices)``."""
    job = post(s.market, requester, chain, num_segments=64, audit_samples=8)
    run = make_run(job, 64)
    indices = to_voting(s.market, chain, provider, job, run, stranger)
    return job, run, indices


def commitment(job, voter, fraud, digests, rnd=0):
    return vote_commitment(job, str(voter.address), fraud, salt_of(voter, job, rnd), digests)


def test_only_the_market_drives_cases(s, stranger):
    c = s.court
    for call in (
        lambda: c.open_case(1, DETERMINISM, b"\x01" * 32, c.current_terms(), sender=stranger),
        lambda: c.start_voting(1, b"\x01" * 32, sender=stranger),
        lambda: c.drop_case(1, sender=stranger),
        lambda: c.decide(1, sender=stranger),
        lambda: c.set_pot(1, 0, sender=stranger),
    ):
        with ape.reverts("court: caller is not the market"):
            call()


def test_commit_rules(s, chain, requester, provider, stranger, verifier, verifier2):
    m, c = s.market, s.court
    job = post(m, requester, chain)
    run = make_run(job, 8)
    accept_and_commit(m, provider, job, run)
    indices = draw(m, chain, job, stranger, run)
    assert m.job_state(job) == AUDITING and c.seat_of(job, 0, verifier).seats == 1
    digests = run.replay(indices)
    with ape.reverts("court: case not voting"):  # seated, but the openings are not in yet
        c.commit_vote(job, commitment(job, verifier, False, digests), sender=verifier)
    with ape.reverts("court: case not voting"):  # no case at all
        c.commit_vote(job + 1, commitment(job, verifier, False, digests), sender=verifier)
    m.open_segments(job, [run.opening(i) for i in sorted(set(indices))], sender=provider)
    with ape.reverts("court: not seated"):
        c.commit_vote(job, commitment(job, stranger, False, []), sender=stranger)
    with ape.reverts("court: empty commitment"):
        c.commit_vote(job, b"\x00" * 32, sender=verifier)
    tx = c.commit_vote(job, commitment(job, verifier, False, digests), sender=verifier)
    ev = tx.events.filter(c.VoteCommitted)[0]
    assert (ev.job_id, ev.voter, ev.round, ev.seats) == (job, verifier.address, 0, 1)
    seat_ = c.seat_of(job, 0, verifier)
    assert (seat_.commitment, seat_.seats, seat_.status, seat_.settled) == (
        commitment(job, verifier, False, digests), 1, COMMITTED_VOTE, False)
    with ape.reverts("court: already committed"):
        c.commit_vote(job, commitment(job, verifier, True, []), sender=verifier)
    to_reveal(c, chain, job)
    with ape.reverts("court: commit window closed"):
        c.commit_vote(job, commitment(job, verifier2, False, digests), sender=verifier2)


def test_reveal_rules(s, chain, voting, verifier, verifier2, verifier3, stranger):
    c = s.court
    job, run, indices = voting
    digests = run.replay(indices)
    segs = unique(indices)
    c.commit_vote(job, commitment(job, verifier, False, digests), sender=verifier)
    c.commit_vote(job, commitment(job, verifier2, True, []), sender=verifier2)
    salt = salt_of(verifier, job, 0)
    with ape.reverts("court: reveal window not open"):
        c.reveal_vote(job, False, salt, digests, segs, sender=verifier)
    to_reveal(c, chain, job)
    with ape.reverts("court: no vote committed"):
        c.reveal_vote(job, False, salt_of(verifier3, job, 0), digests, segs, sender=verifier3)  # seated, silent
    with ape.reverts("court: no vote committed"):
        c.reveal_vote(job, False, salt_of(stranger, job, 0), digests, segs, sender=stranger)  # not seated
    with ape.reverts("court: commitment mismatch"):
        c.reveal_vote(job, True, salt, digests, segs, sender=verifier)
    with ape.reverts("court: commitment mismatch"):
        c.reveal_vote(job, False, salt_of(verifier2, job, 0), digests, segs, sender=verifier)
    with ape.reverts("court: commitment mismatch"):
        c.reveal_vote(job, False, salt, digests[:-1], segs[:-1], sender=verifier)
    tx = c.reveal_vote(job, False, salt, digests, segs, sender=verifier)
    ev = tx.events.filter(c.VoteRevealed)[0]
    assert (ev.round, ev.fraud, ev.counted, ev.seats) == (0, False, True, 1)
    with ape.reverts("court: already revealed"):
        c.reveal_vote(job, False, salt, digests, segs, sender=verifier)
    c.reveal_vote(job, True, salt_of(verifier2, job, 0), [], [], sender=verifier2)
    assert c.seat_of(job, 0, verifier).status == REVEALED_OK
    assert c.seat_of(job, 0, verifier2).status == REVEALED_FRAUD
    assert c.seat_of(job, 0, verifier3).status == SEATED
    case = c.case_of(job)
    assert (case.drawn_seats, case.ok_seats, case.fraud_seats) == (3, 1, 1)
    with ape.reverts("court: round not over"):
        s.market.finalize(job, sender=stranger)
    to_decide(c, chain, job)
    with ape.reverts("court: reveal window closed"):
        c.reveal_vote(job, False, salt, digests, segs, sender=verifier)


@pytest.mark.parametrize("forge", ["reordered", "one missing", "one extra", "one wrong", "other segments"])
def test_an_ok_vote_needs_every_replayed_digest_in_order(s, chain, voting, verifier, forge):
    c = s.court
    job, run, indices = voting
    digests, segs = run.replay(indices), unique(indices)
    assert len(digests) >= 2
    forged, segments = {
        "reordered": (digests[1:] + digests[:1], segs),
        "one missing": (digests[:-1], segs[:-1]),
        "one extra": (digests + [digests[0]], segs + [segs[-1] + 1]),
        "one wrong": (digests[:-1] + [keccak(b"guess")], segs),
        "other segments": (digests, [k + 1 for k in segs]),  # the digests, bound to the wrong segments
    }[forge]
    vote(c, chain, job, {verifier: Ballot(False, forged, segments)})
    assert c.seat_of(job, 0, verifier).status == NO_PROOF
    assert c.case_of(job).ok_seats == 0


def test_a_fraud_vote_counts_whatever_its_digests(s, chain, voting, verifier):
    c = s.court
    job, _, _ = voting
    vote(c, chain, job, {verifier: Ballot(True, [keccak(b"anything")])})
    assert c.seat_of(job, 0, verifier).status == REVEALED_FRAUD
    assert c.case_of(job).fraud_seats == 1


def test_terms_are_fixed_when_the_case_opens(s, chain, owner, voting, verifier, verifier2, verifier3, stranger):
    """Changing the court's parameters mid-case moves neither its windows nor its penalties."""
    m, c = s.market, s.court
    job, run, indices = voting
    before = c.case_of(job)
    c.set_commit_window(10, sender=owner)
    c.set_noshow_slash_bps(5_000, sender=owner)
    c.set_committee_size(1, sender=owner)
    case = c.case_of(job)
    assert (case.commit_window, case.noshow_slash_bps, case.committee_size) == (3_600, 2_000, 3)
    assert case.commit_end == before.commit_end
    vote(c, chain, job, {verifier: ok(run, indices), verifier2: ok(run, indices), verifier3: no_show()})
    decide(m, c, chain, job, stranger)
    ev = c.settle(job, 0, verifier3, sender=stranger).events.filter(c.SeatSettled)[0]
    assert ev.penalty == SEAT * 2_000 // 10_000


def test_the_next_round_seed_mixes_the_previous_block_hash(
    s, chain, voting, verifier, verifier2, verifier3, stranger
):
    m, c = s.market, s.court
    job, run, indices = voting
    vote(c, chain, job, {v: no_show() for v in (verifier, verifier2, verifier3)})
    seed0 = c.case_of(job).seed
    tx = decide(m, c, chain, job, stranger)
    parent = chain.provider.get_block(tx.block_number - 1).hash
    assert c.case_of(job).seed == keccak(encode(["bytes32", "bytes32"], [seed0, parent]))
    started = tx.events.filter(c.VotingStarted)[0]
    assert (started.round, started.commit_end) == (1, tx.timestamp + 3_600)
    assert c.case_of(job).drawn_seats == 0  # every seat of the pool is busy in round 0


def test_settle_rules(s, chain, voting, verifier, verifier2, verifier3, stranger):
    m, c = s.market, s.court
    job, run, indices = voting
    with ape.reverts("court: case not decided"):
        c.settle(job, 0, verifier, sender=stranger)
    vote(c, chain, job, {v: ok(run, indices) for v in (verifier, verifier2, verifier3)})
    tx = decide(m, c, chain, job, stranger)
    assert tx.events.filter(c.CaseDecided)[0].outcome == OUTCOME_OK
    with ape.reverts("court: no such round"):
        c.settle(job, 1, verifier, sender=stranger)
    with ape.reverts("court: no seat"):
        c.settle(job, 0, stranger, sender=stranger)
    c.settle(job, 0, verifier, sender=stranger)
    assert c.seat_of(job, 0, verifier).settled
    with ape.reverts("court: seat already settled"):
        c.settle(job, 0, verifier, sender=verifier)
    with ape.reverts("market: job not voting"):
        m.finalize(job, sender=stranger)


def test_a_member_whose_last_seat_is_penalised_leaves_the_pool(
    s, chain, voting, verifier, verifier2, verifier3, stranger
):
    m, c, sm = s.market, s.court, s.stake_manager
    job, run, indices = voting
    vote(c, chain, job, {verifier: ok(run, indices), verifier2: ok(run, indices), verifier3: no_show()})
    decide(m, c, chain, job, stranger)
    assert c.pool_of(DETERMINISM) == (3, 0, 3, 3 * SEAT)
    c.settle(job, 0, verifier3, sender=stranger)
    assert c.pool_of(DETERMINISM) == (2, 0, 2, 2 * SEAT)
    assert sm.locked(verifier3) == 0
    c.settle(job, 0, verifier, sender=stranger)
    assert c.pool_of(DETERMINISM) == (2, 1, 1, 2 * SEAT)
