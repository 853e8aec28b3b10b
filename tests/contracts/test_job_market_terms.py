"""Fair terms (issue 13): each measured failure of the version-1 contracts pinned by a test.

- re-roll by not drawing: a seed out of reach slashes the job as undrawn; nothing re-arms
  it; the draw window closes it in time too; the EIP-2935 history serves 8 191 blocks;
- every parameter changed under a running job: the job keeps the terms it was accepted
  under (market windows, share, lookahead; the court's windows, committee, rounds and
  penalties);
- bait jobs due at once; OPEN jobs nobody takes expire by anyone; no job outlives the
  unbonding period;
- green money: the premium is escrowed, paid by the green share in force at commit and
  refunded on every other end; self-dealt jobs draw nothing from the pool without an
  allowance, at most the allowance with one, and nothing when no committee judged them;
- edges: seat tallies cannot overflow into each other; carbon in milligrams;
- the movement brackets an opening must satisfy (issue 12).

The in-process chain (ape's py-evm) has no EIP-2935 history contract: its draws read
``BLOCKHASH`` (256 blocks) unless a test puts code at ``HISTORY``. anvil 1.7.1 (this
project's node, default hardfork ``Bpo1``, i.e. after Prague) has the genuine contract at
genesis (``EIP2935_CODE`` below, read with ``eth_getCode``) and answers the hash of every
block of the last 8 191, reverting otherwise; ``anvil --hardfork cancun`` has no code
there. Every test first moves the chain a day ahead of the wall clock (``ahead``): py-evm
stamps a block ``max(wall clock, parent + 1)``, so from then on boundaries are exact.
"""

from __future__ import annotations

import re
from pathlib import Path

import ape
import pytest
from eth_abi import encode
from eth_utils import keccak
from job_market_helpers import (
    ACCEPTED,
    AUDITING,
    CANCELLED,
    COLLATERAL,
    COMMITTED,
    DETERMINISM,
    EXPIRED,
    FEE,
    HISTORY,
    NO_DECISION,
    OPEN,
    OUTCOME_FRAUD,
    OUTCOME_OK,
    PAID,
    PAYMENT,
    PROVIDER_STAKE,
    RESULT_URI,
    SEAT,
    SLASHED,
    TOKEN,
    VOTING,
    accept_and_commit,
    allow,
    attest,
    decide,
    draw,
    fraud,
    fund,
    make_run,
    no_show,
    ok,
    post,
    salt_of,
    seat,
    seats_of,
    set_code,
    to_voting,
    unique,
    vote,
    warp,
    warp_to,
)

from greenproof.merkle import MerkleTree, leaf, vote_commitment

ROOT = Path(__file__).resolve().parents[2]
DAY = 86_400
BPS = 10_000
PREMIUM = 50 * TOKEN + 7  # odd: the provider's share rounds down, the requester gets the rest
SHARE = 5_000  # default requester_share_bps
REQUESTER_SHARE = COLLATERAL * SHARE // BPS
SELF_PAYMENT = 1_000 * TOKEN  # the self-dealer's jobs (issue 13: five jobs, a 10 000 pool)
POOL = 10_000 * TOKEN
LIVE = {OPEN, ACCEPTED, COMMITTED, AUDITING, VOTING}
# The EIP-2935 history contract's runtime code, as anvil 1.7.1 serves it at genesis.
EIP2935_CODE = bytes.fromhex(
    "3373fffffffffffffffffffffffffffffffffffffffe14604657602036036042575f35600143038111604257"
    "611fff81430311604257611fff9006545f5260205ff35b5f5ffd5b5f35611fff60014303065500"
)
# The court's default terms (VerifierCourt.current_terms at deployment).
DEFAULT_COURT = {"committee_size": 3, "max_rounds": 3, "commit_window": 3_600, "reveal_window": 3_600,
                 "voter_slash_bps": 1_000, "noshow_slash_bps": 2_000}


@pytest.fixture(scope="module")
def s(system, requester, provider, provider2, verifier, verifier2, verifier3, stranger):
    fund(system, requester, stranger)
    fund(system, provider, stake=PROVIDER_STAKE)
    fund(system, provider2, stake=SELF_PAYMENT)  # the requester's second identity (self-dealing)
    seat(system, verifier, verifier2, verifier3)  # one seat each: every committee of 3 is all of them
    return system


@pytest.fixture(scope="module")
def trio(verifier, verifier2, verifier3):
    return [verifier, verifier2, verifier3]


@pytest.fixture(scope="module")
def allocator(accounts):
    return accounts[9]  # no other role


# ------------------------------------------------------------------ helpers


def ahead(chain) -> None:
    """A day ahead of the wall clock: every block from here is its parent + 1 s unless warped."""
    warp(chain, DAY)


def at(chain, t: int) -> None:
    """The next transaction executes at exactly ``t`` (on this chain a reverted transaction is
    mined too, one second later than the one before it)."""
    assert chain.pending_timestamp <= t
    if chain.pending_timestamp < t:
        warp_to(chain, t - 1)
    assert chain.pending_timestamp == t


def mine_to(chain, number: int) -> None:
    """Mine until the head is block ``number`` (the next transaction lands in ``number + 1``)."""
    assert chain.blocks.head.number <= number
    if chain.blocks.head.number < number:
        chain.mine(number - chain.blocks.head.number)


def runtime(contract_container) -> bytes:
    return bytes.fromhex(contract_container.contract_type.runtime_bytecode.bytecode[2:])


def mock_history_hash(n: int) -> bytes:
    """What ``MockBlockHistory`` answers for block ``n``."""
    return keccak(b"history" + n.to_bytes(32, "big"))


def decode_court_terms(word: int) -> dict:
    return {
        "committee_size": word & 0xFF,
        "max_rounds": (word >> 8) & 0xFF,
        "commit_window": (word >> 16) & 0xFFFFFFFF,
        "reveal_window": (word >> 48) & 0xFFFFFFFF,
        "voter_slash_bps": (word >> 80) & 0xFFFF,
        "noshow_slash_bps": (word >> 96) & 0xFFFF,
    }


def settle_all(s, job, voters, rnd=0) -> dict:
    return {v: s.court.settle(job, rnd, v, sender=v).events.filter(s.court.SeatSettled)[0] for v in voters}


def assert_conserved(s, accounts, jobs) -> None:
    """The market holds exactly what it owes: claimables, pots, escrow of live jobs."""
    m = s.market
    owed = sum(m.claimable(a) for a in accounts)
    pots = escrow = 0
    for j in jobs:
        g = m.get_job(j)
        pots += g.pot
        if g.state in LIVE:
            escrow += g.payment + g.verifier_fee + g.green_premium
    assert s.token.balanceOf(m) == owed + pots + escrow
    assert s.token.balanceOf(s.court) == 0


def commit(m, provider, job, run, **kw):
    args = {"root": run.tree.root, "final": run.final_hash, "energy": run.energy, "move": run.move}
    args.update(kw)
    return m.commit_result(job, args["root"], args["final"], args["energy"], args["move"], RESULT_URI, sender=provider)


# ------------------------------------------------------------------ re-roll by not drawing


def test_a_provider_that_never_draws_cannot_reroll_the_seed(s, chain, requester, provider, stranger):
    """Issue 13: a provider saw the seed block's hash, did not draw, waited past 256 blocks so
    that draw_audit re-armed a new seed, and repeated until a sample missed its fakes. Now the
    seed block never moves: past BLOCKHASH's reach the draw reverts and anyone slashes the job."""
    m, reg = s.market, s.green_registry
    assert chain.provider.get_code(HISTORY) == b""  # in-process chain: BLOCKHASH only
    ahead(chain)
    job = post(m, requester, chain, green_premium=PREMIUM)
    run = make_run(job, 8)
    accept_and_commit(m, provider, job, run)
    j = m.get_job(job)
    with ape.reverts("market: draw still possible"):  # the seed block is not even mined
        m.slash_undrawn(job, sender=stranger)
    mine_to(chain, j.seed_block)
    with ape.reverts("market: draw still possible"):
        m.slash_undrawn(job, sender=stranger)
    mine_to(chain, j.seed_block + 255)  # a draw now is 256 blocks after the seed block: the last chance
    snap = chain.snapshot()  # the provider looks at the sample it would get ...
    assert m.draw_audit(job, sender=provider).block_number == j.seed_block + 256
    chain.restore(snap)  # ... dislikes it, and does not draw
    chain.mine(1)
    for _ in range(3):  # and cannot re-roll: however long it waits, the seed block stays
        with ape.reverts("market: seed out of reach"):
            m.draw_audit(job, sender=provider)
        chain.mine(100)
        assert m.get_job(job).seed_block == j.seed_block and m.job_state(job) == COMMITTED
    assert chain.blocks.head.timestamp < j.draw_deadline  # out of reach, not out of time
    pool = reg.pool()
    tx = m.slash_undrawn(job, sender=stranger)
    slashed = tx.events.filter(m.ProviderSlashed)[0]
    assert (slashed["provider"], slashed.amount, slashed.reason) == (provider.address, COLLATERAL, "undrawn")
    assert m.job_state(job) == SLASHED
    assert m.claimable(requester) == PAYMENT + FEE + PREMIUM + REQUESTER_SHARE
    assert reg.pool() == pool + COLLATERAL - REQUESTER_SHARE  # no committee judged it
    assert s.stake_manager.locked(provider) == 0
    for call in (m.draw_audit, m.slash_undrawn):
        with ape.reverts("market: job not committed"):
            call(job, sender=stranger)


def test_a_job_not_drawn_within_its_draw_window_is_slashed_undrawn(
    s, chain, accounts, requester, provider, stranger
):
    """A COMMITTED job had no deadline at all: now it must be drawn before commit time +
    draw_window, even while its seed block's hash is still in reach."""
    m = s.market
    ahead(chain)
    job = post(m, requester, chain)
    run = make_run(job, 8)
    m.accept_job(job, DETERMINISM, sender=provider)
    tx = commit(m, provider, job, run)
    j = m.get_job(job)
    assert j.draw_deadline == tx.timestamp + m.draw_window() == tx.timestamp + 3_600
    assert tx.events.filter(m.ResultCommitted)[0].draw_deadline == j.draw_deadline
    mine_to(chain, j.seed_block)
    at(chain, j.draw_deadline - 1)
    with ape.reverts("market: draw still possible"):
        m.slash_undrawn(job, sender=stranger)  # (a reverted transaction is mined too: 1 s later)
    assert chain.pending_timestamp == j.draw_deadline
    assert chain.blocks.head.number + 1 - j.seed_block <= 256  # the hash is still there
    with ape.reverts("market: draw window passed"):
        m.draw_audit(job, sender=provider)
    tx = m.slash_undrawn(job, sender=stranger)
    assert tx.events.filter(m.ProviderSlashed)[0].reason == "undrawn"
    assert m.job_state(job) == SLASHED
    assert m.claimable(requester) == PAYMENT + FEE + REQUESTER_SHARE
    assert_conserved(s, accounts, [job])
    other = post(m, requester, chain)  # only a committed job can be undrawn
    with ape.reverts("market: job not committed"):
        m.slash_undrawn(other, sender=stranger)


# ------------------------------------------------------------------ EIP-2935 history


def test_a_draw_300_blocks_late_reads_the_eip2935_history(s, project, chain, requester, provider, stranger):
    """With a history contract at the EIP-2935 address (here a mock that answers hashes the test
    knows), the seed is read from it: 300 blocks after the seed block, past BLOCKHASH's 256."""
    m = s.market
    set_code(chain, HISTORY, runtime(project.MockBlockHistory))
    ahead(chain)
    job = post(m, requester, chain)
    run = make_run(job, 8)
    accept_and_commit(m, provider, job, run)
    seed_block = m.get_job(job).seed_block
    mine_to(chain, seed_block + 299)
    tx = m.draw_audit(job, sender=stranger)
    assert tx.block_number - seed_block == 300
    seed = mock_history_hash(seed_block)
    assert seed != chain.provider.get_block(seed_block).hash  # not BLOCKHASH's
    assert m.get_job(job).seed == seed and tx.events.filter(m.AuditDrawn)[0].seed == seed
    assert s.court.case_of(job).seed == keccak(encode(["bytes32", "uint256"], [seed, job]))
    assert m.job_state(job) == AUDITING


def test_beyond_the_history_window_the_job_is_undrawn(
    s, project, chain, owner, requester, provider, stranger
):
    """The history serves 8 191 blocks: a draw 8 191 blocks after the seed block succeeds, one
    block later the job can only be slashed as undrawn. (8 192 blocks take 8 192 s on this
    chain: the job gets a one-day draw window so that only the history's reach counts.)"""
    m = s.market
    m.set_draw_window(DAY, sender=owner)
    set_code(chain, HISTORY, runtime(project.MockBlockHistory))
    ahead(chain)
    job = post(m, requester, chain)
    run = make_run(job, 8)
    accept_and_commit(m, provider, job, run)
    j = m.get_job(job)
    mine_to(chain, j.seed_block + 8_190)
    snap = chain.snapshot()
    tx = m.draw_audit(job, sender=stranger)
    assert tx.block_number - j.seed_block == 8_191
    assert m.get_job(job).seed == mock_history_hash(j.seed_block)
    chain.restore(snap)
    with ape.reverts("market: draw still possible"):
        m.slash_undrawn(job, sender=stranger)
    chain.mine(1)
    assert chain.blocks.head.timestamp < j.draw_deadline
    with ape.reverts("market: seed out of reach"):
        m.draw_audit(job, sender=provider)
    tx = m.slash_undrawn(job, sender=stranger)
    assert tx.events.filter(m.ProviderSlashed)[0].reason == "undrawn"
    assert m.job_state(job) == SLASHED


def test_a_history_contract_that_has_not_recorded_the_block_falls_back_to_blockhash(
    s, chain, requester, provider, stranger
):
    """The genuine EIP-2935 code answers 0 for a block it never recorded (deployed before its
    fork activates, or on a chain that never fills it; py-evm's mining never fills it). A zero
    answer is no answer: the seed comes from BLOCKHASH while that reaches, else the job is undrawn."""
    from eth.vm.forks.prague.constants import HISTORY_STORAGE_CONTRACT_CODE

    m = s.market
    assert EIP2935_CODE == HISTORY_STORAGE_CONTRACT_CODE  # anvil 1.7.1's code is py-evm's
    set_code(chain, HISTORY, EIP2935_CODE)  # (no chain.restore past this: py-evm's import would fill it)
    ahead(chain)
    a, b = post(m, requester, chain), post(m, requester, chain)
    run_a, run_b = make_run(a, 8), make_run(b, 8)
    accept_and_commit(m, provider, a, run_a)
    accept_and_commit(m, provider, b, run_b)
    seed_a, seed_b = m.get_job(a).seed_block, m.get_job(b).seed_block
    mine_to(chain, seed_b + 10)
    for n in (seed_a, seed_b):  # the history has no record of either seed block
        answer = chain.provider.web3.eth.call({"to": HISTORY, "data": n.to_bytes(32, "big")})
        assert bytes(answer) == b"\0" * 32
    m.draw_audit(a, sender=stranger)
    assert m.get_job(a).seed == chain.provider.get_block(seed_a).hash  # BLOCKHASH's
    mine_to(chain, seed_b + 256)  # past BLOCKHASH too: undrawn
    with ape.reverts("market: seed out of reach"):
        m.draw_audit(b, sender=stranger)
    m.slash_undrawn(b, sender=stranger)
    assert m.job_state(b) == SLASHED


# ------------------------------------------------------------------ terms fixed at acceptance


def test_open_window_shortened_after_acceptance_or_the_draw(
    s, chain, owner, requester, provider, stranger
):
    """Issue 13: the owner shortened open_window after the draw and an honest provider was
    slashed 60 s into its 3 600 s window. Jobs keep the window they were accepted with."""
    m = s.market
    ahead(chain)
    a, b = post(m, requester, chain), post(m, requester, chain)
    run_a, run_b = make_run(a, 8), make_run(b, 8)
    accept_and_commit(m, provider, a, run_a)
    accept_and_commit(m, provider, b, run_b)
    m.set_open_window(10, sender=owner)  # after acceptance, before the draw
    indices = draw(m, chain, a, stranger, run_a)
    drawn_a = chain.blocks.head.timestamp
    draw(m, chain, b, stranger, run_b)
    drawn_b = chain.blocks.head.timestamp
    m.set_open_window(20, sender=owner)  # and again after the draw
    at(chain, drawn_b + 60)
    for job in (a, b):  # 60 s into the window
        with ape.reverts("market: open window not passed"):
            m.slash_unopened(job, sender=stranger)
    ja, jb = m.get_job(a), m.get_job(b)
    assert (ja.open_window, jb.open_window) == (3_600, 3_600)
    assert (ja.open_deadline, jb.open_deadline) == (drawn_a + 3_600, drawn_b + 3_600)
    at(chain, ja.open_deadline - 2)
    with ape.reverts("market: open window not passed"):
        m.slash_unopened(a, sender=stranger)  # (a reverted transaction is mined too: 1 s later)
    tx = m.open_segments(a, [run_a.opening(i) for i in unique(indices)], sender=provider)
    assert tx.timestamp == ja.open_deadline - 1 and m.job_state(a) == VOTING  # the honest provider made it
    at(chain, jb.open_deadline - 1)
    with ape.reverts("market: open window not passed"):
        m.slash_unopened(b, sender=stranger)
    assert m.slash_unopened(b, sender=stranger).timestamp == jb.open_deadline  # the job's window, not 20 s
    later = post(m, requester, chain)
    m.accept_job(later, DETERMINISM, sender=provider)
    assert m.get_job(later).open_window == 20  # a later job gets the new window


def test_requester_share_changed_after_acceptance(
    s, chain, accounts, owner, requester, provider, stranger, trio
):
    """Issue 13: requester_share_bps changed after acceptance moved the payouts. A fraud
    decision and an expiry both split the collateral by the share fixed at acceptance."""
    m = s.market
    ahead(chain)
    a = post(m, requester, chain, deadline=chain.pending_timestamp + DAY)
    m.accept_job(a, DETERMINISM, sender=provider)
    b = post(m, requester, chain)
    run = make_run(b, 8)
    m.accept_job(b, DETERMINISM, sender=provider)
    assert m.get_job(a).requester_share_bps == m.get_job(b).requester_share_bps == SHARE
    m.set_requester_share_bps(0, sender=owner)
    commit(m, provider, b, run)
    indices = draw(m, chain, b, stranger, run)
    m.open_segments(b, [run.opening(i) for i in unique(indices)], sender=provider)
    vote(s.court, chain, b, {v: fraud() for v in trio})
    tx = decide(m, s.court, chain, b, stranger)
    assert m.job_state(b) == SLASHED
    assert m.claimable(requester) == PAYMENT + FEE + REQUESTER_SHARE  # 50 %, not 0 %
    assert m.get_job(b).pot == COLLATERAL - REQUESTER_SHARE
    assert tx.events.filter(s.court.PotFixed)[0].pot == COLLATERAL - REQUESTER_SHARE
    settle_all(s, b, trio)
    m.set_requester_share_bps(10_000, sender=owner)
    before, pool = m.claimable(requester), s.green_registry.pool()
    at(chain, m.get_job(a).deadline)
    m.expire_job(a, sender=stranger)
    assert m.claimable(requester) == before + PAYMENT + FEE + REQUESTER_SHARE  # 50 %, not 100 %
    assert s.green_registry.pool() == pool + COLLATERAL - REQUESTER_SHARE
    assert_conserved(s, accounts, [a, b])


def test_seed_lookahead_and_draw_window_changed_after_acceptance(
    s, chain, owner, requester, provider, stranger
):
    m = s.market
    ahead(chain)
    job = post(m, requester, chain)
    run = make_run(job, 8)
    m.accept_job(job, DETERMINISM, sender=provider)
    m.set_seed_lookahead(64, sender=owner)
    with ape.reverts("market: draw window too short for the lookahead"):
        m.set_draw_window(64 * 24 - 1, sender=owner)  # the seed block could come after the window
    m.set_draw_window(64 * 24, sender=owner)
    j = m.get_job(job)
    assert (j.seed_lookahead, j.draw_window) == (2, 3_600)
    tx = commit(m, provider, job, run)
    ev = tx.events.filter(m.ResultCommitted)[0]
    assert ev.seed_block == tx.block_number + 2  # not 64
    assert ev.draw_deadline == tx.timestamp + 3_600  # not 1 536
    mine_to(chain, ev.seed_block)
    at(chain, tx.timestamp + 1_600)  # past the new 1 536 s, inside the job's 3 600 s
    with ape.reverts("market: draw still possible"):
        m.slash_undrawn(job, sender=stranger)
    draw(m, chain, job, stranger, run)
    assert m.job_state(job) == AUDITING
    later = post(m, requester, chain)
    m.accept_job(later, DETERMINISM, sender=provider)
    assert (m.get_job(later).seed_lookahead, m.get_job(later).draw_window) == (64, 64 * 24)
    m.set_draw_window(3_600, sender=owner)
    m.set_seed_lookahead(2, sender=owner)


def test_court_terms_are_fixed_at_acceptance(
    s, chain, owner, requester, provider, stranger, verifier, verifier2, verifier3
):
    """Issue 13: the owner shortened the vote windows and a voter became a no-show; lengthened
    the commit window after reveals were public and a new vote was committed; changed the
    penalties after acceptance and the payouts moved. Every court parameter changed between
    acceptance and the draw (and some again mid-vote) leaves the job's case as accepted."""
    m, c = s.market, s.court
    ahead(chain)
    a = post(m, requester, chain)
    b = post(m, requester, chain, deadline=chain.pending_timestamp + DAY)
    run_a, run_b = make_run(a, 8), make_run(b, 8)
    m.accept_job(a, DETERMINISM, sender=provider)
    m.accept_job(b, DETERMINISM, sender=provider)
    assert decode_court_terms(m.get_job(a).court_terms) == DEFAULT_COURT
    # the owner changes every parameter of the court
    c.set_commit_window(10, sender=owner)
    c.set_reveal_window(10, sender=owner)
    c.set_max_rounds(1, sender=owner)
    c.set_committee_size(1, sender=owner)
    c.set_noshow_slash_bps(5_000, sender=owner)
    c.set_voter_slash_bps(4_000, sender=owner)
    assert decode_court_terms(c.current_terms()) != DEFAULT_COURT
    assert decode_court_terms(m.get_job(a).court_terms) == DEFAULT_COURT

    # job a: its case opens with the terms of its acceptance
    commit(m, provider, a, run_a)
    indices = draw(m, chain, a, stranger, run_a)
    case = c.case_of(a)
    assert {k: getattr(case, k) for k in DEFAULT_COURT} == DEFAULT_COURT
    assert case.drawn_seats == 3  # not 1
    tx = m.open_segments(a, [run_a.opening(i) for i in unique(indices)], sender=provider)
    started = tx.events.filter(c.VotingStarted)[0]
    assert (started.commit_end, started.reveal_end) == (tx.timestamp + 3_600, tx.timestamp + 7_200)
    at(chain, tx.timestamp + 1_800)  # the new 10 s window would have closed long ago
    ballots = {verifier: ok(run_a, indices), verifier2: ok(run_a, indices), verifier3: fraud()}
    for v, bal in ballots.items():
        c.commit_vote(a, vote_commitment(a, str(v.address), bal.fraud, salt_of(v, a), bal.digests), sender=v)
    at(chain, started.commit_end + 1_800)  # reveals long after a 10 s reveal window
    for v, bal in ballots.items():
        c.reveal_vote(a, bal.fraud, salt_of(v, a), bal.digests, bal.segments, sender=v)
    assert (c.case_of(a).ok_seats, c.case_of(a).fraud_seats) == (2, 1)  # every vote counted
    decide(m, c, chain, a, stranger)
    assert m.job_state(a) == PAID
    loser = c.settle(a, 0, verifier3, sender=stranger).events.filter(c.SeatSettled)[0]
    assert loser.penalty == SEAT * 1_000 // BPS  # the loser's penalty at acceptance, not 4 000 bps
    settle_all(s, a, [verifier, verifier2])
    seat(s, verifier3)  # its penalised seat left the pool: back with a fresh one

    # job b: a no-show pays the no-show penalty of its acceptance; and once reveals are
    # public, a commit window lengthened by the owner lets no new vote in
    commit(m, provider, b, run_b)
    indices = draw(m, chain, b, stranger, run_b)
    m.open_segments(b, [run_b.opening(i) for i in unique(indices)], sender=provider)
    vote(c, chain, b, {verifier: ok(run_b, indices), verifier2: ok(run_b, indices), verifier3: no_show()})
    c.set_commit_window(4 * 3_600, sender=owner)
    with ape.reverts("court: commit window closed"):
        c.commit_vote(b, vote_commitment(b, str(verifier3.address), False, salt_of(verifier3, b),
                                         run_b.replay(indices)), sender=verifier3)
    decide(m, c, chain, b, stranger)
    no_show_ = c.settle(b, 0, verifier3, sender=stranger).events.filter(c.SeatSettled)[0]
    assert no_show_.penalty == SEAT * 2_000 // BPS  # not 5 000 bps
    assert c.case_of(b).max_rounds == 3
    settle_all(s, b, [verifier, verifier2])
    seat(s, verifier3)
    # a job accepted now gets the new terms
    later = post(m, requester, chain)
    m.accept_job(later, DETERMINISM, sender=provider)
    assert decode_court_terms(m.get_job(later).court_terms)["committee_size"] == 1


def test_a_committee_size_raised_after_acceptance_does_not_grow_the_case(
    s, chain, owner, requester, provider, stranger, verifier
):
    """The other direction: a committee raised after acceptance (with seats enough in the pool)
    still seats the job's three; max_rounds lowered after acceptance still gives it three rounds."""
    m, c = s.market, s.court
    seat(s, verifier, seats=4)  # 7 seats in the pool
    ahead(chain)
    job = post(m, requester, chain)
    run = make_run(job, 8)
    m.accept_job(job, DETERMINISM, sender=provider)
    c.set_max_rounds(1, sender=owner)
    c.set_committee_size(7, sender=owner)
    commit(m, provider, job, run)
    indices = draw(m, chain, job, stranger, run)
    assert (c.case_of(job).committee_size, c.case_of(job).drawn_seats) == (3, 3)
    m.open_segments(job, [run.opening(i) for i in unique(indices)], sender=provider)
    warp_to(chain, c.case_of(job).reveal_end)
    m.finalize(job, sender=stranger)  # nobody voted: a second round, as the job's terms allow
    assert m.job_state(job) == VOTING and c.case_of(job).round == 1


# ------------------------------------------------------------------ deadlines


def test_a_bait_job_due_at_once_is_refused(s, chain, requester):
    """Issue 13: a job due 1 s after posting baited a slash. The deadline must leave
    min_job_duration (300 s by default)."""
    m = s.market
    ahead(chain)
    before = s.token.balanceOf(requester)
    now = chain.pending_timestamp
    for too_soon in (now + 1, now + m.min_job_duration() - 1):
        with ape.reverts("market: deadline too soon"):
            post(m, requester, chain, deadline=too_soon)
    assert s.token.balanceOf(requester) == before
    job = post(m, requester, chain, deadline=chain.pending_timestamp + 300)
    assert m.get_job(job).deadline - chain.blocks.head.timestamp == 300


def test_min_job_duration_bounds_and_max(s, chain, owner, requester, stranger):
    m = s.market
    assert m.min_job_duration() == 300
    with ape.reverts("ownable: caller is not the owner"):
        m.set_min_job_duration(600, sender=stranger)
    for bad in (59, 7 * DAY + 1):
        with ape.reverts("market: parameter out of bounds"):
            m.set_min_job_duration(bad, sender=owner)
    m.set_max_job_duration(DAY, sender=owner)
    with ape.reverts("market: min above max job duration"):
        m.set_min_job_duration(DAY + 1, sender=owner)
    tx = m.set_min_job_duration(DAY, sender=owner)
    ev = tx.events.filter(m.ParameterSet)[0]
    assert (ev["name"], ev.old_value, ev.new_value) == ("min_job_duration", 300, DAY)
    with ape.reverts("market: max below min job duration"):
        m.set_max_job_duration(DAY - 1, sender=owner)
    ahead(chain)  # min == max: exactly one deadline can be posted
    with ape.reverts("market: deadline too soon"):
        post(m, requester, chain, deadline=chain.pending_timestamp + DAY - 1)
    with ape.reverts("market: deadline too far"):
        post(m, requester, chain, deadline=chain.pending_timestamp + DAY + 1)
    post(m, requester, chain, deadline=chain.pending_timestamp + DAY)
    m.set_min_job_duration(60, sender=owner)


def test_an_open_job_past_its_deadline_expires_by_anyone(s, chain, accounts, requester, provider, stranger):
    """An OPEN job nobody took waited forever (only its requester could end it): now anyone
    ends it at its deadline and the requester is refunded in full."""
    m = s.market
    ahead(chain)
    job = post(m, requester, chain, green_premium=PREMIUM)
    deadline = m.get_job(job).deadline
    at(chain, deadline - 1)
    with ape.reverts("market: deadline not passed"):
        m.expire_job(job, sender=stranger)
    at(chain, deadline)
    tx = m.expire_job(job, sender=stranger)
    assert tx.events.filter(m.JobExpired)[0].slashed == 0 and not tx.events.filter(m.ProviderSlashed)
    assert m.job_state(job) == EXPIRED
    assert m.claimable(requester) == PAYMENT + FEE + PREMIUM
    for call in (lambda: m.accept_job(job, DETERMINISM, sender=provider),
                 lambda: m.cancel_job(job, sender=requester)):
        with ape.reverts("market: job not open"):
            call()
    with ape.reverts("market: job not open or accepted"):
        m.expire_job(job, sender=stranger)
    assert_conserved(s, accounts, [job])
    m.withdraw(sender=requester)
    assert s.token.balanceOf(m) == 0


def test_a_job_that_would_outlive_the_unbonding_period_is_refused(s, chain, owner, requester, provider):
    """A job posted under a long max_job_duration, accepted after the owner shortened it and
    lengthened a window, would hold stake past the unbonding period: accept refuses it."""
    m, sm = s.market, s.stake_manager
    job = post(m, requester, chain, deadline=chain.pending_timestamp + 7 * DAY)
    m.set_max_job_duration(DAY, sender=owner)
    m.set_open_window(7 * DAY, sender=owner)  # the formula now counts one day of duration
    assert m.max_job_lifetime() == DAY + 3_600 + 7 * DAY + 6 * 3_600 + 3_600 < sm.unbonding_period()
    with ape.reverts("market: job outlives unbonding"):
        m.accept_job(job, DETERMINISM, sender=provider)


def test_max_job_lifetime_covers_the_longest_lock_any_job_got(s, chain, owner, requester, provider):
    m, sm = s.market, s.stake_manager
    ahead(chain)
    job = post(m, requester, chain, deadline=chain.pending_timestamp + 7 * DAY)
    tx = m.accept_job(job, DETERMINISM, sender=provider)
    # deadline - now + draw + open + every round of the court + margin
    lock = m.get_job(job).deadline - tx.timestamp + 3_600 + 3_600 + 3 * 2 * 3_600 + 3_600
    assert lock == 637_199 and m.max_job_lifetime() == 637_200
    m.set_max_job_duration(DAY, sender=owner)  # the formula drops to 118 800 s; the job does not
    assert m.max_job_lifetime() == lock
    with ape.reverts("stake: unbonding period too short"):
        sm.set_unbonding_period(lock, sender=owner)
    sm.set_unbonding_period(lock + 1, sender=owner)


# ------------------------------------------------------------------ green money


def self_deal(s, chain, requester, provider2, stranger, trio, ballots="ok", premium=0):
    """One self-dealt job: the requester posts a one-segment job without a verifier fee and
    its own second identity ``provider2`` runs it honestly. ``ballots``: the committee votes
    "ok" (its seats are settled after), or nobody votes (NO_DECISION). Returns JobFinalized."""
    m, c = s.market, s.court
    job = post(m, requester, chain, num_segments=1, audit_samples=1, payment=SELF_PAYMENT,
               verifier_fee=0, collateral=SELF_PAYMENT, green_premium=premium)
    run = make_run(job, 1)
    indices = to_voting(m, chain, provider2, job, run, stranger)
    vote(c, chain, job, {v: ok(run, indices) if ballots == "ok" else no_show() for v in trio})
    tx = decide(m, c, chain, job, stranger)
    assert m.job_state(job) == PAID
    decided = tx.events.filter(c.CaseDecided)[0].outcome
    assert decided == (OUTCOME_OK if ballots == "ok" else NO_DECISION)
    if ballots == "ok":  # (no-shows would leave the pool once settled)
        settle_all(s, job, trio)
    return tx.events.filter(m.JobFinalized)[0]


@pytest.fixture
def self_dealer(s, chain, owner, attestor, requester, provider2, stranger):
    """A 10 000-token pool (a donation), and the requester's own provider identity attested
    100 % green: a 20 % bonus per job on the version-1 pool."""
    s.green_registry.fund_pool(POOL, sender=stranger)
    attest(s, chain, owner, attestor, provider2, green_bps=10_000)
    full = SELF_PAYMENT * s.green_registry.max_bonus_bps() // BPS
    assert full == 200 * TOKEN
    return full


def test_self_dealt_jobs_without_an_allowance_draw_no_bonus(
    s, chain, accounts, self_dealer, requester, provider2, stranger, trio
):
    """Issue 13: a requester that was also the provider posted five one-segment jobs with no
    verifier fee and drained 1 000 from a 10 000 pool. Without an allowance, even jobs a
    committee judged ok draw nothing."""
    m, reg = s.market, s.green_registry
    assert reg.allowance_of(requester) == 0
    for _ in range(5):
        ev = self_deal(s, chain, requester, provider2, stranger, trio)
        assert (ev.paid, ev.bonus) == (SELF_PAYMENT, 0)
    assert reg.pool() == POOL
    assert m.claimable(provider2) == 5 * SELF_PAYMENT
    assert s.token.balanceOf(m) == sum(m.claimable(a) for a in accounts)


def test_an_allowance_caps_what_self_dealt_jobs_draw(
    s, chain, self_dealer, owner, allocator, requester, provider2, stranger, trio
):
    m, reg = s.market, s.green_registry
    full = self_dealer
    allow(s, owner, allocator, requester, 300 * TOKEN)
    bonuses = [self_deal(s, chain, requester, provider2, stranger, trio).bonus for _ in range(5)]
    assert bonuses == [full, 300 * TOKEN - full, 0, 0, 0]
    assert sum(bonuses) == 300 * TOKEN  # never more than the allowance
    assert reg.allowance_of(requester) == 0 and reg.allocator_of(requester) == allocator.address
    assert reg.pool() == POOL - 300 * TOKEN
    assert m.claimable(provider2) == 5 * SELF_PAYMENT + 300 * TOKEN


def test_a_job_no_committee_judged_draws_no_bonus(
    s, chain, self_dealer, owner, allocator, requester, provider2, stranger, trio
):
    """Paid optimistically (no majority after the last round) is no judgement: no bonus, even
    with an allowance; the premium still pays by the green share. A job the committee judged ok
    draws the bonus."""
    m, reg, c = s.market, s.green_registry, s.court
    full = self_dealer
    allow(s, owner, allocator, requester, 1_000 * TOKEN)
    c.set_max_rounds(1, sender=owner)
    ev = self_deal(s, chain, requester, provider2, stranger, trio)
    assert ev.bonus == full
    assert reg.allowance_of(requester) == 1_000 * TOKEN - full and reg.pool() == POOL - full
    ev = self_deal(s, chain, requester, provider2, stranger, trio, ballots="none", premium=PREMIUM)
    assert (ev.paid, ev.bonus, ev.premium) == (SELF_PAYMENT, 0, PREMIUM)  # 100 % green
    assert reg.allowance_of(requester) == 1_000 * TOKEN - full and reg.pool() == POOL - full
    assert m.claimable(provider2) == 2 * SELF_PAYMENT + full + PREMIUM


def test_the_premium_pays_by_the_green_share_at_commit(
    s, chain, accounts, owner, attestor, requester, provider, stranger, trio
):
    m, c = s.market, s.court
    attest(s, chain, owner, attestor, provider, green_bps=6_000)
    job = post(m, requester, chain, green_premium=PREMIUM)
    assert s.token.balanceOf(m) == PAYMENT + FEE + PREMIUM  # escrowed at post
    run = make_run(job, 8)
    m.accept_job(job, DETERMINISM, sender=provider)
    tx = commit(m, provider, job, run)
    assert tx.events.filter(m.ResultCommitted)[0].green_bps == m.get_job(job).green_bps == 6_000
    attest(s, chain, owner, attestor, provider, green_bps=10_000)  # after the commit: not the job's
    indices = draw(m, chain, job, stranger, run)
    m.open_segments(job, [run.opening(i) for i in unique(indices)], sender=provider)
    vote(c, chain, job, {v: ok(run, indices) for v in trio})
    ev = decide(m, c, chain, job, stranger).events.filter(m.JobFinalized)[0]
    earned = PREMIUM * 6_000 // BPS
    assert earned == 30 * TOKEN + 4  # 60 %, rounded down
    assert (ev.outcome, ev.paid, ev.bonus, ev.premium) == (PAID, PAYMENT, 0, earned)
    assert m.claimable(provider) == PAYMENT + earned
    assert m.claimable(requester) == PREMIUM - earned + FEE % 3  # 40 % back, and the fee's rest
    assert_conserved(s, accounts, [job])
    settle_all(s, job, trio)
    assert_conserved(s, accounts, [job])


@pytest.mark.parametrize("end", ["cancel", "open expiry", "accepted expiry", "undrawn", "unopened", "fraud"])
def test_the_premium_is_refunded_in_full_on_every_other_end(
    s, chain, accounts, owner, attestor, requester, provider, stranger, trio, end
):
    m, c = s.market, s.court
    attest(s, chain, owner, attestor, provider, green_bps=6_000)  # a share that would show
    ahead(chain)
    wallet = s.token.balanceOf(requester)
    job = post(m, requester, chain, green_premium=PREMIUM)
    run = make_run(job, 8)
    deadline = m.get_job(job).deadline
    slashed = COLLATERAL
    if end == "cancel":
        assert m.cancel_job(job, sender=requester).events.filter(m.JobCancelled)[0].refund == (
            PAYMENT + FEE + PREMIUM)
        assert s.token.balanceOf(requester) == wallet and m.job_state(job) == CANCELLED
        assert s.token.balanceOf(m) == 0
        return
    if end == "open expiry":
        slashed = 0
        at(chain, deadline)
        m.expire_job(job, sender=stranger)
    elif end == "accepted expiry":
        m.accept_job(job, DETERMINISM, sender=provider)
        at(chain, deadline)
        m.expire_job(job, sender=stranger)
    else:
        accept_and_commit(m, provider, job, run)
        if end == "undrawn":
            at(chain, m.get_job(job).draw_deadline)
            m.slash_undrawn(job, sender=stranger)
        else:
            indices = draw(m, chain, job, stranger, run)
            if end == "unopened":
                at(chain, m.get_job(job).open_deadline)
                m.slash_unopened(job, sender=stranger)
            else:
                m.open_segments(job, [run.opening(i) for i in unique(indices)], sender=provider)
                vote(c, chain, job, {v: fraud() for v in trio})
                decide(m, c, chain, job, stranger)
    g = m.get_job(job)
    assert g.state == (EXPIRED if "expiry" in end else SLASHED)
    share = slashed * SHARE // BPS
    pot_rest = 0
    if end == "fraud":
        pot_rest = (COLLATERAL - share) % 3  # the fraud seats' rounding rest
        assert g.pot == COLLATERAL - share - pot_rest
    assert m.claimable(requester) == PAYMENT + FEE + PREMIUM + share + pot_rest
    assert m.claimable(provider) == 0
    assert_conserved(s, accounts, [job])
    if end == "fraud":
        settle_all(s, job, trio)
        assert m.get_job(job).pot == 0
        assert_conserved(s, accounts, [job])


# ------------------------------------------------------------------ tallies and carbon


def court_constants() -> dict[str, int]:
    src = (ROOT / "contracts" / "VerifierCourt.vy").read_text()
    pattern = r"^(\w+): (?:public\()?constant\(uint256\)\)? = ([0-9_]+)\s*(?:#.*)?$"
    return {name: int(value.replace("_", "")) for name, value in re.findall(pattern, src, re.M)}


def test_seat_tallies_fit_their_fields_for_every_reachable_committee(court):
    """Issue 13: with max_vote_stake at its bound, two votes overflowed a stake tally into the
    other side. Tallies are seat counts now; a static check of the bounds (driving every
    combination through the chain is slow; the next test drives the largest): the largest
    round any (committee_size, max_rounds) the setters accept can seat fits COUNT_BITS, and
    the drawn / ok / fraud fields do not overlap."""
    k = court_constants()
    assert (court.MAX_COMMITTEE(), court.MAX_ROUNDS()) == (k["MAX_COMMITTEE"], k["MAX_ROUNDS"]) == (31, 5)
    largest = max(
        ((size + 1) << r) - 1  # round r of a case with committee `size` (r = 0 .. rounds - 1)
        for size in range(1, k["MAX_COMMITTEE"] + 1)
        for rounds in range(1, k["MAX_ROUNDS"] + 1)
        if ((size + 1) << (rounds - 1)) - 1 <= k["MAX_COMMITTEE"]  # the setters' last-round rule
        for r in range(rounds)
    )
    assert largest == k["MAX_COMMITTEE"] == 31
    assert largest < 2 ** k["COUNT_BITS"]  # a round's tally, even all on one side
    assert largest < 2 ** k["SEATS_BITS"]  # one member's seats in a round
    fields = [k["DRAWN_AT"], k["OK_AT"], k["FRAUD_AT"], k["OUTCOME_AT"]]
    assert all(b - a >= k["COUNT_BITS"] for a, b in zip(fields, fields[1:], strict=False))
    assert k["STATUS_AT"] - k["SEATS_AT"] >= k["SEATS_BITS"]


def test_the_largest_committee_counts_ok_and_fraud_apart(
    s, chain, owner, requester, provider, stranger, verifier, verifier2, verifier3
):
    """Drives the largest reachable round: 31 seats, one verifier holding most of them votes
    fraud, the others ok; each side's count is exactly its seats."""
    m, c = s.market, s.court
    seat(s, verifier, seats=20)
    seat(s, verifier2, seats=10)  # 21 + 11 + 1 = 33 seats
    c.set_max_rounds(1, sender=owner)
    c.set_committee_size(31, sender=owner)
    job = post(m, requester, chain)
    run = make_run(job, 8)
    indices = to_voting(m, chain, provider, job, run, stranger)
    seated = seats_of(c, job, [verifier, verifier2, verifier3])
    assert sum(seated.values()) == c.case_of(job).drawn_seats == 31
    ballots = {v: fraud() if v == verifier else ok(run, indices) for v in seated}
    vote(c, chain, job, ballots)
    case = c.case_of(job)
    assert case.fraud_seats == seated[verifier]
    assert case.ok_seats == 31 - seated[verifier]
    tx = decide(m, c, chain, job, stranger)
    decided = tx.events.filter(c.CaseDecided)[0]
    assert (decided.drawn_seats, decided.ok_seats, decided.fraud_seats) == (31, case.ok_seats, case.fraud_seats)
    assert decided.outcome == (OUTCOME_FRAUD if seated[verifier] > 15 else OUTCOME_OK)


def test_carbon_is_reported_in_milligrams(s, chain, requester, provider, stranger, trio):
    """Issue 13: carbon on chain was whole grams, so every demo job reported 0. One watt-hour
    (3.6e6 mJ) at the default 400 g/kWh is 400 mg."""
    m, c = s.market, s.court
    assert s.green_registry.carbon_intensity_of(provider) == 400
    job = post(m, requester, chain, num_segments=1, audit_samples=1)
    run = make_run(job, 1, energy_step=3_600_000)
    indices = to_voting(m, chain, provider, job, run, stranger)
    vote(c, chain, job, {v: ok(run, indices) for v in trio})
    ev = decide(m, c, chain, job, stranger).events.filter(m.JobFinalized)[0]
    assert (ev.energy_mj, ev.carbon_mg) == (3_600_000, 400)


# ------------------------------------------------------------------ movement brackets (issue 12)


def test_a_segment_whose_bracket_holds_no_sample_is_not_audited(s, chain, requester, provider, stranger):
    """Segment 0 claims all the movement: every movement sample lands in its bracket, and a
    segment with an empty bracket (no movement) is audited only if a uniform sample names it."""
    m = s.market
    job = post(m, requester, chain, num_segments=64, audit_samples=2)  # 1 uniform + 1 movement sample
    moves = [0] + [10**6] * 64
    run = make_run(job, 64, moves=moves)
    accept_and_commit(m, provider, job, run)
    mine_to(chain, m.get_job(job).seed_block)
    ev = m.draw_audit(job, sender=stranger).events.filter(m.AuditDrawn)[0]
    assert len(ev.indices) == 1 and len(ev.targets) == 1 and 0 <= ev.targets[0] < 10**6
    uniform = int(ev.indices[0])
    idle = next(k for k in range(1, 64) if k != uniform)  # bracket [10**6, 10**6): empty
    with ape.reverts("audit: segment not audited"):
        m.open_segments(job, [run.opening(idle)], sender=provider)
    m.open_segments(job, [run.opening(k) for k in sorted({0, uniform})], sender=provider)
    assert m.job_state(job) == VOTING


def test_movement_may_not_fall_between_two_openings(s, chain, requester, provider, stranger):
    """A tree whose committed movement falls (boundary 2 at 10**6, boundary 3 at 5): each segment
    alone may look monotone, but an opening must not start below where the previous one ended."""
    m = s.market
    job = post(m, requester, chain, num_segments=4, audit_samples=2)
    run = make_run(job, 4)
    big = 10**6
    run.moves = [0, big, big, 5, big]  # the Python side refuses this tree; build it leaf by leaf
    run.tree = MerkleTree.build(
        [leaf(job, k, run.hashes[k], run.energies[k], run.moves[k], run.seals[k]) for k in range(5)]
    )
    accept_and_commit(m, provider, job, run)
    mine_to(chain, m.get_job(job).seed_block)
    m.draw_audit(job, sender=stranger)
    # [0, 10**6) holds the movement sample; segment 3 then starts at 5, below 10**6. In one
    # batch, so the outcome does not depend on where the drawn uniform sample fell.
    with ape.reverts("audit: movement not monotone"):
        m.open_segments(job, [run.opening(0), run.opening(3)], sender=provider)
    assert m.get_job(job).next_open_index == 0


def test_the_final_movement_must_equal_move_total(s, chain, requester, provider, stranger):
    m = s.market
    for claimed in (1, -1):
        job = post(m, requester, chain, num_segments=1, audit_samples=1)  # one uniform sample: segment 0
        run = make_run(job, 1)
        m.accept_job(job, DETERMINISM, sender=provider)
        commit(m, provider, job, run, move=run.move + claimed)
        assert draw(m, chain, job, stranger, run) == [0]
        with ape.reverts("audit: final movement mismatch"):
            m.open_segments(job, [run.opening(0)], sender=provider)


def test_without_movement_every_sample_is_uniform(s, chain, requester, provider, stranger):
    m = s.market
    job = post(m, requester, chain, num_segments=8, audit_samples=5)
    run = make_run(job, 8, move_step=0)
    accept_and_commit(m, provider, job, run)
    assert m.get_job(job).move_total == 0
    mine_to(chain, m.get_job(job).seed_block)
    ev = m.draw_audit(job, sender=stranger).events.filter(m.AuditDrawn)[0]
    assert len(ev.indices) == 5 and list(ev.targets) == []
    seed = m.get_job(job).seed
    assert [len(x) for x in s.rules.draws(seed, job, 8, 5, 1_000)] == [3, 2]  # with movement: ceil(s/2) uniform
    m.open_segments(job, [run.opening(i) for i in unique(ev.indices)], sender=provider)
    assert m.job_state(job) == VOTING
