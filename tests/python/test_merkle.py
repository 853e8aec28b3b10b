"""The commitment format of docs/protocol.md §3, checked against an independent
re-derivation (hand-written ABI encoding, a naive tree) and its own edge cases.
The contract side of these vectors is checked in tests/contracts."""

from __future__ import annotations

import hashlib
import struct

import pytest
from eth_utils import keccak

from greenproof.merkle import (
    CommitmentError,
    MerkleTree,
    boundary0_seal,
    commitment_tree,
    complete_end_proof,
    digests_hash,
    hash_pair,
    leaf,
    proof_length,
    replay_accumulator,
    seal,
    seal_accumulator,
    verify,
    vote_commitment,
    work_digest,
)

S = b"\x5e" * 32  # a seal, where its value does not matter


def _manual_leaf(job_id: int, k: int, state_hash: bytes, energy: int, move: int, seal_k: bytes) -> bytes:
    # abi.encode of static types: each value left-padded to 32 bytes, big-endian.
    encoded = (
        job_id.to_bytes(32, "big") + k.to_bytes(32, "big") + state_hash + energy.to_bytes(32, "big")
        + move.to_bytes(32, "big") + seal_k
    )
    return keccak(keccak(encoded))


def _seals(job_id: int, n: int) -> list[bytes]:
    return [boundary0_seal(job_id)] + [seal(job_id, k, keccak(b"w%d" % k)) for k in range(1, n)]


def _naive_root(nodes: list[bytes]) -> bytes:
    while len(nodes) > 1:
        nxt = []
        for i in range(0, len(nodes), 2):
            if i + 1 < len(nodes):
                a, b = sorted((nodes[i], nodes[i + 1]))
                nxt.append(keccak(a + b))
            else:
                nxt.append(nodes[i])
        nodes = nxt
    return nodes[0]


def _hashes(n: int) -> list[bytes]:
    return [hashlib.sha256(f"state-{i}".encode()).digest() for i in range(n)]


def test_leaf_matches_manual_abi_encoding():
    h = bytes.fromhex("11" * 32)
    assert leaf(7, 3, h, 123_456, 2**40 + 7, S) == _manual_leaf(7, 3, h, 123_456, 2**40 + 7, S)


def test_leaf_binds_every_field():
    h = _hashes(2)
    base = leaf(1, 0, h[0], 0, 0, S)
    assert leaf(2, 0, h[0], 0, 0, S) != base
    assert leaf(1, 1, h[0], 0, 0, S) != base
    assert leaf(1, 0, h[1], 0, 0, S) != base
    assert leaf(1, 0, h[0], 1, 0, S) != base
    assert leaf(1, 0, h[0], 0, 1, S) != base
    assert leaf(1, 0, h[0], 1, 0, S) != leaf(1, 0, h[0], 0, 1, S)  # energy and movement are not interchangeable
    assert leaf(1, 0, h[0], 0, 0, b"\x00" * 32) != base


def test_work_digest_and_seal_match_manual_encoding():
    losses = [2.5, 1.25, 0.75]
    w = work_digest(losses)
    assert w == keccak(struct.pack("<3f", *losses))
    assert len(w) == 32
    manual = keccak((9).to_bytes(32, "big") + (4).to_bytes(32, "big") + w)
    assert seal(9, 4, w) == manual
    assert boundary0_seal(9) == keccak((9).to_bytes(32, "big") + b"\x00" * 64)


def test_replay_accumulator_rebuilds_the_seal_chain():
    """The chain the court rebuilds from ok digests equals the chain JobMarket builds
    from the end seals of the openings (distinct segments, ascending)."""
    job = 3
    w = {k: keccak(b"loss%d" % k) for k in range(1, 9)}
    audited = [5, 1, 5, 3]  # with a duplicate, out of order
    end_seals = [seal(job, k + 1, w[k + 1]) for k in sorted(set(audited))]
    acc = seal_accumulator(end_seals)
    manual = b"\x00" * 32
    for s_ in end_seals:
        manual = keccak(manual + s_)
    assert acc == manual
    assert replay_accumulator(job, audited, [w[2], w[4], w[6]]) == acc
    assert replay_accumulator(job, audited, [w[2], w[6], w[4]]) != acc  # order matters
    with pytest.raises(CommitmentError, match="3 distinct audited segments but 2 digests"):
        replay_accumulator(job, audited, [w[2], w[4]])


def test_vote_commitment_matches_manual_encoding():
    voter = "0x" + "ab" * 20
    salt, digests = b"\x07" * 32, [b"\x01" * 32, b"\x02" * 32]
    # abi_encode(bytes32[]): offset 0x20, length, elements
    encoded_digests = (32).to_bytes(32, "big") + (2).to_bytes(32, "big") + b"".join(digests)
    assert digests_hash(digests) == keccak(encoded_digests)
    manual = keccak(
        (5).to_bytes(32, "big") + bytes(12) + bytes.fromhex("ab" * 20) + (1).to_bytes(32, "big")
        + salt + keccak(encoded_digests)
    )
    assert vote_commitment(5, voter, True, salt, digests) == manual
    assert vote_commitment(5, voter, False, salt, digests) != manual
    assert digests_hash([]) == keccak((32).to_bytes(32, "big") + bytes(32))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 17, 64, 65])
def test_root_and_every_proof(n: int):
    leaves = [leaf(9, k, s, k * 10, k * 3, S) for k, s in enumerate(_hashes(n))]
    tree = MerkleTree.build(leaves)
    assert tree.root == _naive_root(list(leaves))
    for i, node in enumerate(leaves):
        proof = tree.proof(i)
        assert verify(proof, tree.root, node)
        assert len(proof) <= max(1, (n - 1).bit_length())
        if n > 1:
            other = leaves[(i + 1) % n]
            assert not verify(proof, tree.root, other)


def test_hash_pair_is_order_independent_and_big_endian_sorted():
    a, b = b"\x00" + b"\xff" * 31, b"\x01" + b"\x00" * 31
    assert hash_pair(a, b) == hash_pair(b, a) == keccak(a + b)


def test_commitment_tree_checks_energy_movement_seals_and_lengths():
    hs, seals, moves = _hashes(3), _seals(5, 3), [0, 7, 7]
    tree = commitment_tree(5, hs, [0, 10, 25], moves, seals)
    assert tree.num_leaves == 3
    assert tree.levels[0][1] == leaf(5, 1, hs[1], 10, 7, seals[1])
    with pytest.raises(CommitmentError, match="decreases at boundary 2"):
        commitment_tree(5, hs, [0, 10, 5], moves, seals)
    with pytest.raises(CommitmentError, match="boundary 0 must be 0"):
        commitment_tree(5, hs, [1, 10, 25], moves, seals)
    with pytest.raises(CommitmentError, match="movement at boundary 0 must be 0"):
        commitment_tree(5, hs, [0, 10, 25], [1, 7, 7], seals)
    with pytest.raises(CommitmentError, match="cumulative movement decreases at boundary 2"):
        commitment_tree(5, hs, [0, 10, 25], [0, 7, 6], seals)
    with pytest.raises(CommitmentError, match="3 state hashes but 2 movements"):
        commitment_tree(5, hs, [0, 10, 25], [0, 7], seals)
    with pytest.raises(CommitmentError, match="3 state hashes but 2 energy"):
        commitment_tree(5, hs, [0, 10], moves, seals)
    with pytest.raises(CommitmentError, match="3 state hashes but 2 seals"):
        commitment_tree(5, hs, [0, 10, 25], moves, seals[:2])
    with pytest.raises(CommitmentError, match="seal at boundary 0"):
        commitment_tree(5, hs, [0, 10, 25], moves, [seals[1], *seals[1:]])


def test_bad_inputs_are_rejected():
    with pytest.raises(CommitmentError, match="32 bytes"):
        leaf(1, 0, b"short", 0, 0, S)
    with pytest.raises(CommitmentError, match="seal must be 32 bytes"):
        leaf(1, 0, b"\x00" * 32, 0, 0, b"short")
    with pytest.raises(CommitmentError, match="uint32"):
        leaf(1, 2**32, b"\x00" * 32, 0, 0, S)
    with pytest.raises(CommitmentError, match="move out of uint256"):
        leaf(1, 0, b"\x00" * 32, 0, -1, S)
    with pytest.raises(CommitmentError, match="work digest must be 32 bytes"):
        seal(1, 1, b"short")
    with pytest.raises(CommitmentError, match="at least one leaf"):
        MerkleTree.build([])
    with pytest.raises(CommitmentError, match="outside"):
        MerkleTree.build([b"\x00" * 32]).proof(1)


@pytest.mark.parametrize("n", [2, 3, 5, 9, 33])
def test_short_end_proof_completes_from_the_start_proof(n: int):
    """What JobMarket does with a short end proof: append the start proof's shared tail."""
    tree = MerkleTree.build([leaf(1, k, s, k, k, S) for k, s in enumerate(_hashes(n))])
    for i in range(n - 1):
        start, short = tree.segment_proofs(i)
        full = tree.proof(i + 1)
        assert len(short) <= len(full) == proof_length(i + 1, n)
        assert len(start) == proof_length(i, n)
        assert complete_end_proof(start, short, i, n) == full
        assert complete_end_proof(start, full, i, n) == full  # full proofs are accepted too
        assert verify(complete_end_proof(start, short, i, n), tree.root, tree.levels[0][i + 1])
    with pytest.raises(CommitmentError, match="bad end proof length"):
        complete_end_proof([], tree.proof(1) + [b"\x00" * 32], 0, n)
