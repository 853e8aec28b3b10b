"""Commitment formats shared by the worker, the verifier, JobMarket and VerifierCourt.

docs/protocol.md §3 and docs/court.md:

* work digest ``w_k`` = ``keccak256`` of segment ``k - 1``'s per-step losses as
  float32 little-endian (``w_0 = 0``); seal ``seal_k`` = ``keccak256(abi_encode(
  job_id uint256, k uint32, w_k bytes32))``;
* leaf ``k`` = ``keccak256(keccak256(abi_encode(job_id uint256, k uint32,
  state_hash_k bytes32, energy_mj_k uint256, move_k uint256, seal_k bytes32)))``;
  ``energy_mj_k`` is the cumulative energy up to boundary ``k`` and ``move_k``
  the cumulative committed movement (``greenproof.movement``), both 0 at ``k = 0``;
* the tree has ``num_segments + 1`` leaves in index order; each level pairs
  neighbours ``(0,1), (2,3), …`` into ``keccak256(min(a,b) ‖ max(a,b))``
  and an odd last node is carried up unchanged.

Sorted pairs are what snekmate's ``merkle_proof_verification.verify`` expects,
so a proof is just the list of siblings from the leaf up; levels where the node
was carried up contribute no sibling.

Proof of replay (the court): JobMarket chains the end seals of the opened
segments, ``seal_acc = keccak256(seal_acc ‖ end_seal)`` from 32 zero bytes, in
ascending segment order; an ok vote reveals the work digests of the distinct
audited segments, from which :func:`replay_accumulator` rebuilds the same
chain. The vote commitment is :func:`vote_commitment`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from eth_abi import encode as abi_encode
from eth_utils import keccak

UINT32_MAX = 2**32 - 1
UINT256_MAX = 2**256 - 1
ZERO32 = b"\x00" * 32


class CommitmentError(ValueError):
    """A value that cannot be committed to (wrong width, out of range)."""


def _check_boundary(job_id: int, k: int) -> None:
    if not 0 <= job_id <= UINT256_MAX:
        raise CommitmentError(f"job_id out of uint256 range: {job_id}")
    if not 0 <= k <= UINT32_MAX:
        raise CommitmentError(f"boundary index out of uint32 range: {k}")


def _check_word(name: str, value: bytes) -> None:
    if len(value) != 32:
        raise CommitmentError(f"{name} must be 32 bytes, got {len(value)}")


def work_digest(losses: Sequence[float]) -> bytes:
    """``w_k``: keccak256 of a segment's per-step losses as float32 little-endian."""
    return keccak(struct.pack(f"<{len(losses)}f", *losses))


def seal(job_id: int, k: int, digest: bytes) -> bytes:
    """``seal_k = keccak256(abi_encode(job_id uint256, k uint32, w_k bytes32))``."""
    _check_boundary(job_id, k)
    _check_word("work digest", digest)
    return keccak(abi_encode(["uint256", "uint32", "bytes32"], [job_id, k, digest]))


def boundary0_seal(job_id: int) -> bytes:
    """The seal boundary 0 must carry: ``seal(job_id, 0, bytes32(0))`` (JobMarket checks it)."""
    return seal(job_id, 0, ZERO32)


def leaf(job_id: int, k: int, state_hash: bytes, energy_mj: int, move: int, seal_k: bytes) -> bytes:
    """The Merkle leaf for boundary ``k`` of job ``job_id`` (``energy_mj`` and ``move``
    cumulative up to boundary ``k``)."""
    _check_boundary(job_id, k)
    _check_word("state_hash", state_hash)
    _check_word("seal", seal_k)
    if not 0 <= energy_mj <= UINT256_MAX:
        raise CommitmentError(f"energy_mj out of uint256 range: {energy_mj}")
    if not 0 <= move <= UINT256_MAX:
        raise CommitmentError(f"move out of uint256 range: {move}")
    inner = keccak(
        abi_encode(
            ["uint256", "uint32", "bytes32", "uint256", "uint256", "bytes32"],
            [job_id, k, state_hash, energy_mj, move, seal_k],
        )
    )
    return keccak(inner)


def seal_accumulator(end_seals: Sequence[bytes]) -> bytes:
    """JobMarket's ``seal_acc`` after opening segments whose end seals are
    ``end_seals``, in ascending segment order."""
    acc = ZERO32
    for s in end_seals:
        _check_word("seal", s)
        acc = keccak(acc + s)
    return acc


def replay_accumulator(job_id: int, segments: Sequence[int], digests: Sequence[bytes]) -> bytes:
    """What VerifierCourt rebuilds from an ok vote: ``digests[j]`` is ``w_{k_j + 1}``
    of the ``j``-th distinct audited segment ``k_j`` in ascending order."""
    ks = sorted(set(int(k) for k in segments))
    if len(ks) != len(digests):
        raise CommitmentError(f"{len(ks)} distinct audited segments but {len(digests)} digests")
    return seal_accumulator([seal(job_id, k + 1, d) for k, d in zip(ks, digests, strict=True)])


def digests_hash(digests: Sequence[bytes]) -> bytes:
    """``keccak256(abi_encode(digests bytes32[]))``."""
    for d in digests:
        _check_word("digest", d)
    return keccak(abi_encode(["bytes32[]"], [list(digests)]))


def vote_commitment(job_id: int, voter: str, fraud: bool, salt: bytes, digests: Sequence[bytes]) -> bytes:
    """VerifierCourt's ``commitment = keccak256(abi_encode(job_id uint256, voter address,
    fraud bool, salt bytes32, digests_hash bytes32))``."""
    _check_word("salt", salt)
    return keccak(
        abi_encode(
            ["uint256", "address", "bool", "bytes32", "bytes32"],
            [job_id, voter, fraud, salt, digests_hash(digests)],
        )
    )


def hash_pair(a: bytes, b: bytes) -> bytes:
    """``keccak256(min(a,b) ‖ max(a,b))``, bytes compared as big-endian integers."""
    return keccak(a + b) if a <= b else keccak(b + a)


@dataclass(frozen=True)
class MerkleTree:
    """A sorted-pair Merkle tree over leaves given in index order."""

    levels: tuple[tuple[bytes, ...], ...]

    @classmethod
    def build(cls, leaves: Sequence[bytes]) -> MerkleTree:
        if not leaves:
            raise CommitmentError("a Merkle tree needs at least one leaf")
        for i, node in enumerate(leaves):
            if len(node) != 32:
                raise CommitmentError(f"leaf {i} must be 32 bytes, got {len(node)}")
        levels = [tuple(leaves)]
        while len(levels[-1]) > 1:
            cur = levels[-1]
            nxt = [hash_pair(cur[i], cur[i + 1]) for i in range(0, len(cur) - 1, 2)]
            if len(cur) % 2:
                nxt.append(cur[-1])
            levels.append(tuple(nxt))
        return cls(tuple(levels))

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    @property
    def num_leaves(self) -> int:
        return len(self.levels[0])

    def proof(self, index: int) -> list[bytes]:
        """Siblings from leaf ``index`` up to the root."""
        if not 0 <= index < self.num_leaves:
            raise CommitmentError(f"leaf index {index} outside 0..{self.num_leaves - 1}")
        out: list[bytes] = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                out.append(level[sibling])
            index //= 2
        return out

    def segment_proofs(self, index: int) -> tuple[list[bytes], list[bytes]]:
        """Proofs for opening segment ``index``: leaf ``index`` and a short proof of leaf ``index + 1``.

        The end proof leaves out the tail it shares with the start proof (the two
        leaves meet at some level and share every sibling above it); JobMarket
        completes it from the start proof. Calldata is most of an opening's gas.
        """
        start, end = self.proof(index), self.proof(index + 1)
        return start, short_end_proof(start, end)


def short_end_proof(start_proof: Sequence[bytes], end_proof: Sequence[bytes]) -> list[bytes]:
    """``end_proof`` without the siblings it shares, at its top, with ``start_proof``."""
    shared = 0
    while (
        shared < min(len(start_proof), len(end_proof))
        and start_proof[-1 - shared] == end_proof[-1 - shared]
    ):
        shared += 1
    return list(end_proof[: len(end_proof) - shared])


def proof_length(k: int, num_leaves: int) -> int:
    """Siblings on leaf ``k``'s path in a tree of ``num_leaves`` (JobMarket's ``_proof_length``)."""
    depth = 0
    while num_leaves > 1:
        if k ^ 1 < num_leaves:
            depth += 1
        k >>= 1
        num_leaves = (num_leaves + 1) >> 1
    return depth


def complete_end_proof(
    start_proof: Sequence[bytes], end_proof: Sequence[bytes], index: int, num_leaves: int
) -> list[bytes]:
    """What JobMarket does with a (possibly short) end proof of segment ``index``.

    The missing siblings are the tail of the start proof; a proof longer than
    the leaf's canonical length, or one missing more than the start proof has,
    is rejected as the contract rejects it.
    """
    missing = proof_length(index + 1, num_leaves) - len(end_proof)
    if missing < 0 or missing > len(start_proof):
        raise CommitmentError(f"bad end proof length {len(end_proof)} for leaf {index + 1}")
    return [*end_proof, *start_proof[len(start_proof) - missing :]]


def verify(proof: Sequence[bytes], root: bytes, node: bytes) -> bool:
    """Python twin of snekmate's ``merkle_proof_verification.verify``."""
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node == root


def commitment_tree(
    job_id: int,
    state_hashes: Sequence[bytes],
    energies_mj: Sequence[int],
    moves: Sequence[int],
    seals: Sequence[bytes],
) -> MerkleTree:
    """The job's tree: one leaf per boundary ``k = 0 … num_segments``.

    ``seals[k]`` is ``seal(job_id, k, w_k)``; ``seals[0]`` must be
    :func:`boundary0_seal` (JobMarket refuses any other at boundary 0).
    """
    if len(state_hashes) != len(energies_mj):
        raise CommitmentError(
            f"{len(state_hashes)} state hashes but {len(energies_mj)} energy readings"
        )
    if len(seals) != len(state_hashes):
        raise CommitmentError(f"{len(state_hashes)} state hashes but {len(seals)} seals")
    if len(moves) != len(state_hashes):
        raise CommitmentError(f"{len(state_hashes)} state hashes but {len(moves)} movements")
    if moves and moves[0] != 0:
        raise CommitmentError(f"movement at boundary 0 must be 0, got {moves[0]}")
    for k in range(1, len(moves)):
        if moves[k] < moves[k - 1]:
            raise CommitmentError(f"cumulative movement decreases at boundary {k}: {moves[k - 1]} -> {moves[k]}")
    if energies_mj and energies_mj[0] != 0:
        raise CommitmentError(f"energy at boundary 0 must be 0, got {energies_mj[0]}")
    if seals and seals[0] != boundary0_seal(job_id):
        raise CommitmentError("seal at boundary 0 must be seal(job_id, 0, bytes32(0))")
    for k in range(1, len(energies_mj)):
        if energies_mj[k] < energies_mj[k - 1]:
            raise CommitmentError(
                f"cumulative energy decreases at boundary {k}: {energies_mj[k - 1]} -> {energies_mj[k]}"
            )
    return MerkleTree.build(
        [
            leaf(job_id, k, h, e, m, s)
            for k, (h, e, m, s) in enumerate(zip(state_hashes, energies_mj, moves, seals, strict=True))
        ]
    )
