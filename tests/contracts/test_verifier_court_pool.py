"""VerifierCourt pools: join, leave, seats drawn by stake from the sum tree.

The draw is checked seat by seat against a Python model of docs/court.md (seat
``j`` is the member whose cumulative free-seat interval holds
``keccak256(abi_encode(seed_r, j)) % free_seats``), so any change to the walk
or to the order of the members' intervals fails here.
"""

from __future__ import annotations

from pathlib import Path

import ape
import pytest
from eth_abi import encode
from eth_utils import keccak
from job_market_helpers import (
    DETERMINISM,
    OTHER_CLASS,
    PROVIDER_STAKE,
    SEAT,
    accept_and_commit,
    draw,
    fund,
    make_run,
    post,
    seats_of,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def s(system, requester, provider, verifier, verifier2, verifier3, stranger):
    fund(system, requester, stranger)
    fund(system, provider, stake=PROVIDER_STAKE)
    fund(system, verifier, verifier2, verifier3, stake=10 * SEAT)
    return system


def test_join_locks_seat_stake_and_emits(s, verifier):
    c, sm = s.court, s.stake_manager
    tx = c.join(DETERMINISM, 3, sender=verifier)
    ev = tx.events.filter(c.PoolJoined)[0]
    assert (ev.dclass, ev.member, ev.seats, ev.member_seats, ev.pool_seats) == (DETERMINISM, verifier.address, 3, 3, 3)
    assert sm.locked(verifier) == 3 * SEAT and sm.free_stake(verifier) == 7 * SEAT
    assert c.member_of(DETERMINISM, verifier) == (3, 0)
    assert c.pool_of(DETERMINISM) == (1, 3, 0, 3 * SEAT)
    assert c.pool_stake(DETERMINISM) == 3 * SEAT
    c.join(DETERMINISM, 2, sender=verifier)  # more seats, same member
    assert c.member_of(DETERMINISM, verifier) == (5, 0)
    assert c.pool_of(DETERMINISM).members == 1
    c.join(OTHER_CLASS, 1, sender=verifier)  # one stake, several classes
    assert c.pool_stake(OTHER_CLASS) == SEAT and sm.locked(verifier) == 6 * SEAT


def test_join_rules(s, verifier, stranger):
    c = s.court
    with ape.reverts("court: empty class"):
        c.join(b"\x00" * 32, 1, sender=verifier)
    with ape.reverts("court: zero seats"):
        c.join(DETERMINISM, 0, sender=verifier)
    with ape.reverts("stake: amount exceeds free stake"):
        c.join(DETERMINISM, 11, sender=verifier)
    with ape.reverts("stake: amount exceeds free stake"):
        c.join(DETERMINISM, 1, sender=stranger)  # tokens, but no stake
    c.join(DETERMINISM, 1, sender=verifier)
    with ape.reverts("court: too many seats"):
        c.join(DETERMINISM, 2**32 - 1, sender=verifier)


def test_leave_unlocks_at_once_and_recycles_the_leaf(s, verifier, verifier2, verifier3):
    c, sm = s.court, s.stake_manager
    c.join(DETERMINISM, 2, sender=verifier)
    c.join(DETERMINISM, 1, sender=verifier2)
    with ape.reverts("court: zero seats"):
        c.leave(DETERMINISM, 0, sender=verifier)
    with ape.reverts("court: not a member"):
        c.leave(DETERMINISM, 1, sender=verifier3)
    with ape.reverts("court: seats not free"):
        c.leave(DETERMINISM, 3, sender=verifier)
    tx = c.leave(DETERMINISM, 1, sender=verifier)
    ev = tx.events.filter(c.PoolLeft)[0]
    assert (ev.seats, ev.member_seats, ev.pool_seats) == (1, 1, 2)
    assert sm.locked(verifier) == SEAT
    c.leave(DETERMINISM, 1, sender=verifier)  # its last seat: the member is gone
    assert c.member_of(DETERMINISM, verifier) == (0, 0)
    assert c.pool_of(DETERMINISM) == (1, 1, 0, SEAT)
    assert sm.locked(verifier) == 0
    # the freed stake unbonds through the StakeManager as usual
    sm.request_unstake(10 * SEAT, sender=verifier)
    c.join(DETERMINISM, 4, sender=verifier3)  # takes the vacated leaf
    assert c.pool_of(DETERMINISM) == (2, 5, 0, 5 * SEAT)
    with ape.reverts("court: not a member"):
        c.leave(DETERMINISM, 1, sender=verifier)


def model_draw(seed: bytes, size: int, members: list[tuple[str, int]]) -> list[str]:
    """docs/court.md's draw over ``(member, free seats)`` in leaf order."""
    free = dict(members)
    order = [m for m, _ in members]
    out = []
    for j in range(size):
        total = sum(free.values())
        if total == 0:
            break
        target = int.from_bytes(keccak(encode(["bytes32", "uint256"], [seed, j])), "big") % total
        for m in order:
            if target < free[m]:
                break
            target -= free[m]
        free[m] -= 1
        out.append(m)
    return out


def test_seats_are_drawn_in_proportion_to_free_seats_as_specified(
    s, chain, owner, requester, provider, stranger, verifier, verifier2, verifier3
):
    m, c = s.market, s.court
    c.join(DETERMINISM, 1, sender=verifier)
    c.join(DETERMINISM, 5, sender=verifier2)
    c.join(DETERMINISM, 3, sender=verifier3)
    c.set_committee_size(7, sender=owner)
    c.set_max_rounds(1, sender=owner)
    job = post(m, requester, chain)
    accept_and_commit(m, provider, job, make_run(job, 8))
    chain.mine(m.seed_lookahead())
    tx = m.draw_audit(job, sender=stranger)
    seed0 = keccak(encode(["bytes32", "uint256"], [m.get_job(job).seed, job]))
    assert c.case_of(job).seed == seed0
    expected = model_draw(seed0, 7, [(verifier.address, 1), (verifier2.address, 5), (verifier3.address, 3)])
    (ev,) = tx.events.filter(c.SeatsDrawn)
    assert (ev.job_id, ev.round, list(ev.voters)) == (job, 0, expected)
    seated = seats_of(c, job, [verifier, verifier2, verifier3])
    assert {v.address: n for v, n in seated.items()} == {a: expected.count(a) for a in set(expected)}
    for v in (verifier, verifier2, verifier3):  # busy seats count in the pool, not as free
        assert c.member_of(DETERMINISM, v).busy_seats == seated.get(v, 0)
    assert c.pool_of(DETERMINISM) == (3, 2, 7, 9 * SEAT)
    busy = next(v for v, n in seated.items() if n)
    free = c.member_of(DETERMINISM, busy).free_seats
    with ape.reverts("court: seats not free"):  # busy seats cannot leave
        c.leave(DETERMINISM, free + 1, sender=busy)


def test_a_round_is_drawn_short_when_the_pool_runs_out(
    s, chain, owner, requester, provider, stranger, verifier, verifier2, verifier3
):
    m, c = s.market, s.court
    for v in (verifier, verifier2, verifier3):
        c.join(DETERMINISM, 1, sender=v)
    c.set_committee_size(7, sender=owner)
    c.set_max_rounds(1, sender=owner)
    job = post(m, requester, chain)
    run = make_run(job, 8)
    accept_and_commit(m, provider, job, run)
    draw(m, chain, job, stranger, run)
    assert c.case_of(job).drawn_seats == 3  # all the pool had
    assert c.pool_of(DETERMINISM).free_seats == 0


def test_a_pool_holds_at_most_max_pool_members():
    """1 024 members fill a class pool; the next is refused, and a leaving member's
    leaf goes to the next joiner (titanoboa: ape's chain is too slow for 1 025 accounts)."""
    import boa

    contracts = ROOT / "contracts"
    with boa.env.anchor():
        boa.env.enable_fast_mode()
        owner = boa.env.generate_address("court owner")
        with boa.env.prank(owner):
            token = boa.load(contracts / "mocks" / "MockToken.vy", "T", "T", 18)
            stake = boa.load(contracts / "StakeManager.vy", token.address, 30 * 86_400)
            court = boa.load(contracts / "VerifierCourt.vy", stake.address, 1)
            stake.set_court(court.address)
        assert court.MAX_POOL_MEMBERS() == 1024
        members = [boa.env.generate_address(f"member {i}") for i in range(1025)]
        for a in members:
            token.mint(a, 1, sender=a)
            token.approve(stake.address, 1, sender=a)
            stake.stake(1, sender=a)
        for a in members[:1024]:
            court.join(DETERMINISM, 1, sender=a)
        assert court.pool_of(DETERMINISM)[:2] == (1024, 1024)
        with boa.reverts("court: pool full"):
            court.join(DETERMINISM, 1, sender=members[1024])
        court.leave(DETERMINISM, 1, sender=members[5])
        court.join(DETERMINISM, 1, sender=members[1024])
        assert court.pool_of(DETERMINISM)[:2] == (1024, 1024)
        assert court.member_of(DETERMINISM, members[1024]) == (1, 0)
