"""greenproof.merkle (Python, the worker's side) against JobMarket (Vyper, snekmate's verifier).

Vectors: same leaf bytes (seals included); trees of several shapes (odd last
nodes carried up) whose proofs the contract accepts in real openings; a proof for
another index, a proof of the wrong length and a short end proof are handled as
specified; the seal accumulator and the vote commitment agree with VerifierCourt.
"""

from __future__ import annotations

import ape
import pytest
from eth_abi import encode
from eth_utils import keccak
from job_market_helpers import (
    DETERMINISM,
    PROVIDER_STAKE,
    RESULT_URI,
    draw,
    fund,
    make_run,
    post,
    seat,
    unique,
)

from greenproof.merkle import (
    leaf,
    proof_length,
    seal,
    seal_accumulator,
    short_end_proof,
    vote_commitment,
)

VECTORS = [
    (1, 0, b"\x00" * 32, 0, 0, seal(1, 0, b"\x00" * 32)),
    (7, 3, keccak(b"state 3"), 123_456_789, 987_654_321, seal(7, 3, keccak(b"losses"))),
    (2**256 - 1, 2**32 - 1, b"\xff" * 32, 2**256 - 1, 2**256 - 1, b"\xff" * 32),
]


@pytest.fixture(scope="module")
def s(system, requester, provider, verifier, verifier2, verifier3):
    fund(system, requester)
    fund(system, provider, stake=PROVIDER_STAKE)
    seat(system, verifier, verifier2, verifier3)
    return system


@pytest.mark.parametrize(("job_id", "k", "state_hash", "energy", "move", "seal_k"), VECTORS)
def test_leaf_hash_matches(system, job_id, k, state_hash, energy, move, seal_k):
    expected = keccak(keccak(encode(
        ["uint256", "uint32", "bytes32", "uint256", "uint256", "bytes32"], [job_id, k, state_hash, energy, move, seal_k]
    )))
    assert leaf(job_id, k, state_hash, energy, move, seal_k) == expected
    assert system.rules.leaf_hash(job_id, k, state_hash, energy, move, seal_k) == expected


@pytest.mark.parametrize("digests", [[], [b"\x01" * 32], [keccak(b"w%d" % i) for i in range(64)]])
def test_vote_commitment_matches(court, verifier, digests):
    for fraud in (False, True):
        expected = vote_commitment(9, str(verifier.address), fraud, b"\x42" * 32, digests)
        assert court.vote_commitment(9, verifier, fraud, b"\x42" * 32, digests) == expected


@pytest.mark.parametrize("num_segments", [1, 2, 5, 12, 33])
def test_python_proofs_open_on_chain(s, chain, requester, provider, num_segments):
    """Every audited segment opens with the Python proofs (odd trees included), full and short."""
    m = s.market
    job = post(m, requester, chain, num_segments=num_segments, audit_samples=min(num_segments, 16))
    run = make_run(job, num_segments)
    m.accept_job(job, DETERMINISM, sender=provider)
    m.commit_result(job, run.tree.root, run.final_hash, run.energy, run.move, RESULT_URI, sender=provider)
    indices = unique(draw(m, chain, job, requester, run))
    openings = []
    for n, i in enumerate(indices):
        o = list(run.opening(i))
        if n % 2:  # every other opening with a short end proof
            o[10] = short_end_proof(o[9], o[10])
        openings.append(o)
    m.open_segments(job, openings, sender=provider)
    assert m.job_state(job) == 5  # VOTING: every sample satisfied
    assert m.get_job(job).next_open_index == indices[-1] + 1
    assert m.get_job(job).seal_acc == seal_accumulator([run.seals[i + 1] for i in indices])


def test_proof_of_another_index_is_rejected(s, chain, requester, provider):
    m = s.market
    job = post(m, requester, chain, num_segments=16, audit_samples=1)
    run = make_run(job, 16)
    m.accept_job(job, DETERMINISM, sender=provider)
    m.commit_result(job, run.tree.root, run.final_hash, run.energy, run.move, RESULT_URI, sender=provider)
    (i,) = draw(m, chain, job, requester, run)
    other = (i + 4) % 16  # same proof length (a full tree of 16 + 1 leaves: depth 5 except the last)
    o = list(run.opening(i))
    wrong = list(run.opening(other))
    with ape.reverts("audit: invalid start proof"):
        m.open_segments(job, [tuple(o[:9] + [wrong[9], o[10]])], sender=provider)
    # the end proof of another leaf of the same proof length (leaf 16, the odd one carried
    # up, has no such twin: then the same leaf's proof in another job's tree)
    foreign = make_run(job + 1, 16)
    twins = [k for k in range(17) if k != i + 1 and proof_length(k, 17) == proof_length(i + 1, 17)]
    end_wrong = run.tree.proof(twins[0]) if twins else foreign.tree.proof(i + 1)
    with ape.reverts("audit: invalid end proof"):
        m.open_segments(job, [tuple(o[:10] + [end_wrong])], sender=provider)
    # the leaf of another job with the same state is not in this tree
    with ape.reverts("audit: invalid start proof"):
        m.open_segments(job, [tuple(o[:9] + [foreign.tree.proof(i), o[10]])], sender=provider)
    m.open_segments(job, [tuple(o)], sender=provider)
