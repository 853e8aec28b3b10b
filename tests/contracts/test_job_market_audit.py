"""JobMarket: commit, expire, draw, open (with seals, in ascending order), unopened
slash: every rule and its revert reason."""

from __future__ import annotations

import ape
import pytest
from eth_utils import keccak
from job_market_helpers import (
    AUDITING,
    COLLATERAL,
    COMMITTED,
    DETERMINISM,
    FEE,
    PAYMENT,
    PROVIDER_STAKE,
    RESULT_URI,
    VOTING,
    accept_and_commit,
    draw,
    fund,
    make_run,
    post,
    seat,
    unique,
    warp,
)

from greenproof.merkle import MerkleTree, leaf, seal, seal_accumulator


@pytest.fixture(scope="module")
def s(system, requester, provider, provider2, verifier, verifier2, verifier3):
    fund(system, requester)
    fund(system, provider, provider2, stake=PROVIDER_STAKE)
    seat(system, verifier, verifier2, verifier3)
    return system


@pytest.fixture
def accepted(s, chain, requester, provider):
    job = post(s.market, requester, chain, num_segments=64, audit_samples=8)
    s.market.accept_job(job, DETERMINISM, sender=provider)
    return job, make_run(job, 64)


@pytest.fixture
def auditing(s, chain, provider, provider2, accepted):
    job, run = accepted
    s.market.commit_result(job, run.tree.root, run.final_hash, run.energy, run.move, RESULT_URI, sender=provider)
    indices = draw(s.market, chain, job, provider2, run)
    return job, run, unique(indices)


def test_commit_rules(s, chain, provider, provider2, accepted):
    m = s.market
    job, run = accepted
    args = (job, run.tree.root, run.final_hash, run.energy, run.move, RESULT_URI)
    with ape.reverts("market: caller is not the provider"):
        m.commit_result(*args, sender=provider2)
    with ape.reverts("market: empty root"):
        m.commit_result(job, b"\0" * 32, run.final_hash, run.energy, run.move, RESULT_URI, sender=provider)
    with ape.reverts("market: energy or movement too large"):
        m.commit_result(job, run.tree.root, run.final_hash, 2**128, run.move, RESULT_URI, sender=provider)
    with ape.reverts("market: energy or movement too large"):
        m.commit_result(job, run.tree.root, run.final_hash, run.energy, 2**128, RESULT_URI, sender=provider)
    with ape.reverts("market: job not accepted"):
        m.commit_result(job + 1, *args[1:], sender=provider)
    tx = m.commit_result(*args, sender=provider)
    ev = tx.events.filter(m.ResultCommitted)[0]
    assert ev.result_uri == RESULT_URI and ev.root == run.tree.root and ev.energy_mj == run.energy
    assert ev.move_total == run.move and ev.green_bps == 0
    assert ev.seed_block == tx.block_number + m.seed_lookahead()
    assert ev.draw_deadline == tx.timestamp + m.draw_window()
    j = m.get_job(job)
    assert (j.state, j.root, j.final_state_hash, j.energy_mj) == (COMMITTED, run.tree.root, run.final_hash, run.energy)
    with ape.reverts("market: job not accepted"):
        m.commit_result(*args, sender=provider)
    with ape.reverts("market: job not open or accepted"):
        m.expire_job(job, sender=provider2)


def test_commit_after_deadline_reverts(s, chain, provider, accepted):
    job, run = accepted
    warp(chain, 3_600)
    with ape.reverts("market: deadline passed"):
        s.market.commit_result(job, run.tree.root, run.final_hash, run.energy, run.move, RESULT_URI, sender=provider)


def test_draw_rules_and_indices(s, chain, provider, provider2, accepted):
    m = s.market
    job, run = accepted
    with ape.reverts("market: job not committed"):
        m.draw_audit(job, sender=provider2)
    m.commit_result(job, run.tree.root, run.final_hash, run.energy, run.move, RESULT_URI, sender=provider)
    with ape.reverts("market: seed block not reached"):
        m.draw_audit(job, sender=provider2)
    indices = draw(m, chain, job, provider2, run)
    j = m.get_job(job)
    assert j.state == AUDITING and j.open_deadline == chain.blocks.head.timestamp + m.open_window()
    assert j.seed == chain.provider.get_block(j.seed_block).hash
    from eth_abi import encode

    r = [int.from_bytes(keccak(encode(["bytes32", "uint256", "uint256"], [j.seed, job, k])), "big") for k in range(8)]
    # 4 uniform samples over the 64 segments, 4 over the committed movement (1000 per segment)
    assert indices == [x % 64 for x in r[:4]] + [(x % run.move) // 1_000 for x in r[4:]]
    assert list(s.rules.draws(j.seed, job, 64, 8, run.move)[1]) == [x % run.move for x in r[4:]]
    # the court's case opened with the draw: round 0's committee is seated
    case = s.court.case_of(job)
    assert case.dclass == DETERMINISM and case.drawn_seats == 3 and case.voting_start == 0
    assert case.seed == keccak(encode(["bytes32", "uint256"], [j.seed, job]))
    with ape.reverts("market: job not committed"):
        m.draw_audit(job, sender=provider2)


def test_open_rules(s, chain, provider, provider2, auditing):
    m = s.market
    job, run, indices = auditing
    i = indices[0]
    not_audited = next(k for k in range(64) if k not in indices)
    with ape.reverts("market: caller is not the provider"):
        m.open_segments(job, [tuple(run.opening(i))], sender=provider2)
    with ape.reverts("audit: no openings"):
        m.open_segments(job, [], sender=provider)
    with ape.reverts("audit: segment not audited"):
        m.open_segments(job, [tuple(run.opening(not_audited))], sender=provider)
    o = list(run.opening(i))
    # (index, start_hash, start_energy, start_move, start_seal, end_hash, end_energy, end_move,
    #  end_seal, start_proof, end_proof)
    with ape.reverts("audit: energy not monotone"):
        m.open_segments(job, [tuple(o[:2] + [o[6] + 1] + o[3:])], sender=provider)
    with ape.reverts("audit: movement not monotone"):
        m.open_segments(job, [tuple(o[:3] + [o[7] + 1] + o[4:])], sender=provider)
    with ape.reverts("audit: bad start proof length"):
        m.open_segments(job, [tuple(o[:9] + [o[9][:-1], o[10]])], sender=provider)
    with ape.reverts("audit: bad end proof length"):
        m.open_segments(job, [tuple(o[:10] + [o[10] + [o[10][0]]])], sender=provider)
    with ape.reverts("audit: invalid start proof"):
        m.open_segments(job, [tuple(o[:1] + [b"\x13" * 32] + o[2:])], sender=provider)
    # the movement is in the leaf (boundary 0's is fixed at 0 and checked before the proof)
    with ape.reverts("audit: boundary 0 not zero" if i == 0 else "audit: invalid start proof"):
        m.open_segments(job, [tuple(o[:3] + [o[3] + 1] + o[4:])], sender=provider)
    # the seal is in the leaf (boundary 0's seal is fixed and checked before the proof)
    with ape.reverts("audit: bad seal at boundary 0" if i == 0 else "audit: invalid start proof"):
        m.open_segments(job, [tuple(o[:4] + [b"\x13" * 32] + o[5:])], sender=provider)
    with ape.reverts("audit: invalid end proof"):
        m.open_segments(job, [tuple(o[:5] + [b"\x13" * 32] + o[6:])], sender=provider)
    with ape.reverts("audit: invalid end proof"):
        m.open_segments(job, [tuple(o[:7] + [o[7] - 1] + o[8:])], sender=provider)
    with ape.reverts("audit: invalid end proof"):
        m.open_segments(job, [tuple(o[:8] + [b"\x13" * 32] + o[9:])], sender=provider)
    tx = m.open_segments(job, [tuple(o)], sender=provider)
    ev = tx.events.filter(m.SegmentOpened)[0]
    assert (ev.index, ev.start_hash, ev.end_hash) == (i, run.hashes[i], run.hashes[i + 1])
    assert (ev.start_energy_mj, ev.end_energy_mj) == (run.energies[i], run.energies[i + 1])
    assert (ev.start_seal, ev.end_seal) == (run.seals[i], run.seals[i + 1])
    assert (ev.start_move, ev.end_move) == (run.moves[i], run.moves[i + 1])
    assert m.get_job(job).next_open_index == i + 1
    assert m.get_job(job).seal_acc == seal_accumulator([run.seals[i + 1]])
    with ape.reverts("audit: openings not ascending"):  # already opened
        m.open_segments(job, [tuple(o)], sender=provider)
    with ape.reverts("audit: segment not audited"):
        m.open_segments(job, [run.opening(not_audited_above(indices, 64))], sender=provider)
    if len(indices) > 2:  # out of order inside one batch
        with ape.reverts("audit: openings not ascending"):
            m.open_segments(job, [run.opening(k) for k in reversed(indices[1:])], sender=provider)
    tx = m.open_segments(job, [run.opening(k) for k in indices[1:]], sender=provider)
    assert len(tx.events.filter(m.SegmentOpened)) == len(indices) - 1
    assert m.job_state(job) == VOTING
    assert m.get_job(job).voting_start == tx.timestamp
    acc = seal_accumulator([run.seals[k + 1] for k in indices])
    assert m.get_job(job).seal_acc == acc
    started = tx.events.filter(s.court.VotingStarted)[0]
    assert (started.round, started.commit_end) == (0, tx.timestamp + s.court.commit_window())
    assert s.court.case_of(job).seal_acc == acc
    with ape.reverts("market: job not auditing"):
        m.open_segments(job, [tuple(o)], sender=provider)
    with ape.reverts("market: job not auditing"):
        m.slash_unopened(job, sender=provider2)


def not_audited_above(indices, n):
    return next(k for k in range(indices[0] + 1, n) if k not in indices)


def test_openings_must_ascend_across_calls(s, chain, provider, provider2, auditing):
    """Openings come in strictly ascending order across calls (the worker sorts them)."""
    m = s.market
    job, run, indices = auditing
    if len(indices) < 2:
        pytest.skip("one distinct audited segment")
    m.open_segments(job, [tuple(run.opening(indices[-1]))], sender=provider)
    with ape.reverts("audit: openings not ascending"):
        m.open_segments(job, [tuple(run.opening(indices[0]))], sender=provider)
    warp(chain, m.open_window())
    m.slash_unopened(job, sender=provider2)  # it can never complete: slashed


def test_boundary_zero_must_carry_the_zero_seal(s, chain, requester, provider, provider2):
    m = s.market
    job = post(m, requester, chain, num_segments=1, audit_samples=1)
    run = make_run(job, 1)
    bad = seal(job, 0, b"\x01" * 32)  # a tree whose leaf 0 has another seal
    run.tree = MerkleTree.build(
        [leaf(job, 0, run.hashes[0], 0, 0, bad), leaf(job, 1, run.hashes[1], run.energies[1], run.moves[1], run.seals[1])]
    )
    run.seals = [bad, run.seals[1]]
    accept_and_commit(m, provider, job, run)
    draw(m, chain, job, provider2, run)
    with ape.reverts("audit: bad seal at boundary 0"):
        m.open_segments(job, [tuple(run.opening(0))], sender=provider)


def test_last_segment_binds_to_final_state_and_energy(s, chain, requester, provider, provider2):
    m = s.market
    job = post(m, requester, chain, num_segments=1, audit_samples=1)
    run = make_run(job, 1)
    liar = make_run(job, 1, salt=b"other")  # the tree's last leaf differs from the committed final hash
    m.accept_job(job, DETERMINISM, sender=provider)
    m.commit_result(job, liar.tree.root, run.final_hash, liar.energy, liar.move, RESULT_URI, sender=provider)
    assert draw(m, chain, job, provider2, liar) == [0]
    with ape.reverts("audit: final state mismatch"):
        m.open_segments(job, [tuple(liar.opening(0))], sender=provider)

    job2 = post(m, requester, chain, num_segments=1, audit_samples=1)
    run2 = make_run(job2, 1)
    m.accept_job(job2, DETERMINISM, sender=provider)
    m.commit_result(job2, run2.tree.root, run2.final_hash, run2.energy + 1, run2.move, RESULT_URI, sender=provider)
    draw(m, chain, job2, provider2, run2)
    with ape.reverts("audit: final energy mismatch"):
        m.open_segments(job2, [tuple(run2.opening(0))], sender=provider)


def test_segment_zero_starts_at_zero_energy(s, chain, requester, provider, provider2):
    m = s.market
    job = post(m, requester, chain, num_segments=1, audit_samples=1)
    run = make_run(job, 1)
    run.energies = [5, 10]  # the Python side refuses this tree; build it leaf by leaf
    run.tree = MerkleTree.build([leaf(job, k, run.hashes[k], run.energies[k], run.moves[k], run.seals[k]) for k in (0, 1)])
    m.accept_job(job, DETERMINISM, sender=provider)
    m.commit_result(job, run.tree.root, run.final_hash, run.energy, run.move, RESULT_URI, sender=provider)
    draw(m, chain, job, provider2, run)
    with ape.reverts("audit: boundary 0 not zero"):
        m.open_segments(job, [tuple(run.opening(0))], sender=provider)


def test_commit_during_open_window_only(s, chain, provider, provider2, auditing):
    job, run, indices = auditing
    warp(chain, s.market.open_window())
    with ape.reverts("market: open window passed"):
        s.market.open_segments(job, [tuple(run.opening(indices[0]))], sender=provider)


def test_expire_only_after_deadline_and_only_accepted(s, chain, requester, provider, provider2):
    m = s.market
    job = post(m, requester, chain)
    with ape.reverts("market: deadline not passed"):  # an OPEN job expires at its deadline too
        m.expire_job(job, sender=provider2)
    m.accept_job(job, DETERMINISM, sender=provider)
    with ape.reverts("market: deadline not passed"):
        m.expire_job(job, sender=provider2)
    assert s.token.balanceOf(m) == PAYMENT + FEE and s.stake_manager.locked(provider) == COLLATERAL


def test_slash_unopened_needs_auditing(s, chain, requester, provider, provider2):
    m = s.market
    job = post(m, requester, chain)
    accept_and_commit(m, provider, job, make_run(job, 8))
    with ape.reverts("market: job not auditing"):
        m.slash_unopened(job, sender=provider2)
