"""The commitment format of docs/protocol.md §3, checked against an independent
re-derivation (hand-written ABI encoding, a naive tree) and its own edge cases.
The contract side of these vectors is checked in tests/contracts."""

from __future__ import annotations

import hashlib

import pytest
from eth_utils import keccak

from greenproof.merkle import (
    CommitmentError,
    MerkleTree,
    commitment_tree,
    complete_end_proof,
    hash_pair,
    leaf,
    proof_length,
    verify,
)


def _manual_leaf(job_id: int, k: int, state_hash: bytes, energy: int) -> bytes:
    # abi.encode of static types: each value left-padded to 32 bytes, big-endian.
    encoded = (
        job_id.to_bytes(32, "big") + k.to_bytes(32, "big") + state_hash + energy.to_bytes(32, "big")
    )
    return keccak(keccak(encoded))


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
    assert leaf(7, 3, h, 123_456) == _manual_leaf(7, 3, h, 123_456)


def test_leaf_binds_every_field():
    h = _hashes(2)
    base = leaf(1, 0, h[0], 0)
    assert leaf(2, 0, h[0], 0) != base
    assert leaf(1, 1, h[0], 0) != base
    assert leaf(1, 0, h[1], 0) != base
    assert leaf(1, 0, h[0], 1) != base


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 17, 64, 65])
def test_root_and_every_proof(n: int):
    leaves = [leaf(9, k, s, k * 10) for k, s in enumerate(_hashes(n))]
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


def test_commitment_tree_checks_energy_and_lengths():
    hs = _hashes(3)
    tree = commitment_tree(5, hs, [0, 10, 25])
    assert tree.num_leaves == 3
    with pytest.raises(CommitmentError, match="decreases at boundary 2"):
        commitment_tree(5, hs, [0, 10, 5])
    with pytest.raises(CommitmentError, match="boundary 0 must be 0"):
        commitment_tree(5, hs, [1, 10, 25])
    with pytest.raises(CommitmentError, match="3 state hashes but 2 energy"):
        commitment_tree(5, hs, [0, 10])


def test_bad_inputs_are_rejected():
    with pytest.raises(CommitmentError, match="32 bytes"):
        leaf(1, 0, b"short", 0)
    with pytest.raises(CommitmentError, match="uint32"):
        leaf(1, 2**32, b"\x00" * 32, 0)
    with pytest.raises(CommitmentError, match="at least one leaf"):
        MerkleTree.build([])
    with pytest.raises(CommitmentError, match="outside"):
        MerkleTree.build([b"\x00" * 32]).proof(1)


@pytest.mark.parametrize("n", [2, 3, 5, 9, 33])
def test_short_end_proof_completes_from_the_start_proof(n: int):
    """What JobMarket does with a short end proof: append the start proof's shared tail."""
    tree = MerkleTree.build([leaf(1, k, s, k) for k, s in enumerate(_hashes(n))])
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
