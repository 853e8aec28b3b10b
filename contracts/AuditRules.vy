# pragma version ~=0.4.3
# pragma optimize codesize
"""
@title AuditRules
@custom:contract-name AuditRules
@license GNU Affero General Public License v3.0 only
@notice The audit's rules, stateless: how a job's samples are drawn from its
        seed and how a provider's segment openings are checked against its
        commitment (docs/protocol.md §2.3, §3). JobMarket keeps the job and
        its money and asks this contract, by static call, whether openings
        are valid; split from JobMarket by concern so both stay well under
        the EIP-170 size limit.

        Draw: sample `j` of `s` is `r_j = uint256(keccak256(abi_encode(seed,
        job_id, j)))` (`bytes32, uint256, uint256`). The first
        `h = ceil(s / 2)` samples are uniform over segments (`r_j %
        num_segments`); the others are uniform over the committed movement
        (`u_j = r_j % move_total`), and are satisfied by opening the segment
        `k` with `move_k <= u_j < move_{k+1}`. When `move_total == 0` all `s`
        samples are uniform over segments.

        Leaf `k`: `keccak256(keccak256(abi_encode(job_id uint256, k uint32,
        state_hash bytes32, energy_mj uint256, move uint256, seal bytes32)))`.
@dev Pure functions only; every revert string starts with "audit:".
     A proof must have exactly the length that leaf `k` has in the canonical
     tree of `num_segments + 1` leaves (`greenproof.merkle.MerkleTree.proof`).
     Sorted-pair trees do not bind positions; with the length rule a
     provider cannot hide two different leaves for one boundary without
     dropping another boundary (Kraft inequality), which the audit then
     catches like any broken segment.
"""

from snekmate.utils import merkle_proof_verification


# @dev Hard cap of a job's audit samples (the satisfied set is a 64-bit mask).
MAX_AUDIT_SAMPLES: public(constant(uint256)) = 64
# @dev Most openings in one call (bounds its memory).
MAX_OPENINGS: public(constant(uint256)) = 16
# @dev Longest Merkle proof: `num_segments + 1 <= 2**32` leaves.
MAX_PROOF: constant(uint256) = 32


# @notice One segment opening: the leaves of boundaries `index` and
#         `index + 1` (state hash, cumulative energy, cumulative movement,
#         seal) and their proofs. `end_proof` may leave out its tail where it
#         equals `start_proof`'s tail.
struct Opening:
    index: uint32
    start_hash: bytes32
    start_energy_mj: uint256
    start_move: uint256
    start_seal: bytes32
    end_hash: bytes32
    end_energy_mj: uint256
    end_move: uint256
    end_seal: bytes32
    start_proof: DynArray[bytes32, MAX_PROOF]
    end_proof: DynArray[bytes32, MAX_PROOF]


# @notice What the checks need to know of the job (all committed before the draw).
struct OpenJob:
    job_id: uint256
    root: bytes32
    num_segments: uint256
    samples: uint256
    seed: bytes32
    final_state_hash: bytes32
    energy_mj: uint256
    move_total: uint256


# @notice The job's opening progress: `mask` (bit `j` set once sample `j`
#         is satisfied), `next_index` (least segment the next opening may
#         have), `move_floor` (least start movement it may claim),
#         `seal_acc` (the end seals of the opened segments, chained) and
#         `last_leaf` (the leaf of boundary `next_index`, the last opening's
#         end; zero before the first).
struct OpenState:
    mask: uint256
    next_index: uint256
    move_floor: uint256
    seal_acc: bytes32
    last_leaf: bytes32


@pure
@external
def check_openings(job: OpenJob, state: OpenState, openings: DynArray[Opening, MAX_OPENINGS]) -> OpenState:
    """
    @notice Checks openings against a job's commitment and returns its
            opening progress with them folded in; reverts on the first bad one.
    @dev Per opening: `index` is at least `next_index` (openings come in
         strictly ascending order across calls) and satisfies at least one
         sample; `end_move >= start_move >= move_floor`; `end_energy_mj >=
         start_energy_mj`; boundary 0 has energy 0, movement 0 and seal
         `keccak256(abi_encode(job_id, uint32(0), bytes32(0)))`; both leaves
         verify against `root` with proofs of the canonical length; an
         opening that starts where the previous one ended reveals the same
         leaf for that boundary; the last segment ends at
         `final_state_hash`, `energy_mj` and `move_total`. Each opening
         extends `seal_acc = keccak256(concat(seal_acc, end_seal))`.
    @param job The job's commitment and draw.
    @param state The progress so far.
    @param openings 1 to 16 openings, ascending.
    @return OpenState The progress after them.
    """
    assert len(openings) > 0, "audit: no openings"
    draws: DynArray[uint256, MAX_AUDIT_SAMPLES] = self._draws(job.seed, job.job_id, job.num_segments, job.samples, job.move_total)
    h: uint256 = self._uniform_count(job.samples, job.move_total)
    out: OpenState = state
    for o: Opening in openings:
        index: uint256 = convert(o.index, uint256)
        assert index >= out.next_index, "audit: openings not ascending"
        assert o.end_move >= o.start_move and o.start_move >= out.move_floor, "audit: movement not monotone"
        bits: uint256 = 0
        for j: uint256 in range(job.samples, bound=MAX_AUDIT_SAMPLES):
            d: uint256 = draws[j]
            if (j < h and d == index) or (j >= h and o.start_move <= d and d < o.end_move):
                bits |= 1 << j
        assert bits != 0, "audit: segment not audited"
        assert o.end_energy_mj >= o.start_energy_mj, "audit: energy not monotone"
        if index == 0:
            assert o.start_energy_mj == 0 and o.start_move == 0, "audit: boundary 0 not zero"
            assert o.start_seal == keccak256(abi_encode(job.job_id, convert(0, uint32), empty(bytes32))), "audit: bad seal at boundary 0"
        start_leaf: bytes32 = self._leaf(job.job_id, o.index, o.start_hash, o.start_energy_mj, o.start_move, o.start_seal)
        end_leaf: bytes32 = self._leaf(job.job_id, o.index + 1, o.end_hash, o.end_energy_mj, o.end_move, o.end_seal)
        if index == out.next_index and out.last_leaf != empty(bytes32):
            assert start_leaf == out.last_leaf, "audit: shared boundary differs"
        self._check_proofs(job, o, start_leaf, end_leaf)
        if index + 1 == job.num_segments:
            assert o.end_hash == job.final_state_hash, "audit: final state mismatch"
            assert o.end_energy_mj == job.energy_mj, "audit: final energy mismatch"
            assert o.end_move == job.move_total, "audit: final movement mismatch"
        out.mask |= bits
        out.next_index = index + 1
        out.move_floor = o.end_move
        out.seal_acc = keccak256(concat(out.seal_acc, o.end_seal))
        out.last_leaf = end_leaf
    return out


@pure
@external
def draws(seed: bytes32, job_id: uint256, num_segments: uint256, samples: uint256, move_total: uint256) -> (DynArray[uint32, MAX_AUDIT_SAMPLES], DynArray[uint256, MAX_AUDIT_SAMPLES]):
    """
    @notice A job's samples: the uniform segment indices and the movement
            targets, in draw order (duplicates allowed).
    @param seed The audit seed (hash of the seed block).
    @param job_id The job.
    @param num_segments Segments of the run, > 0.
    @param samples Audit samples, at most 64.
    @param move_total The committed total movement.
    @return DynArray[uint32, 64] The uniform indices (`ceil(s/2)`, or `s` when `move_total == 0`).
    @return DynArray[uint256, 64] The movement targets.
    """
    assert num_segments > 0 and samples <= MAX_AUDIT_SAMPLES, "audit: bad draw"
    d: DynArray[uint256, MAX_AUDIT_SAMPLES] = self._draws(seed, job_id, num_segments, samples, move_total)
    h: uint256 = self._uniform_count(samples, move_total)
    indices: DynArray[uint32, MAX_AUDIT_SAMPLES] = []
    targets: DynArray[uint256, MAX_AUDIT_SAMPLES] = []
    for j: uint256 in range(samples, bound=MAX_AUDIT_SAMPLES):
        if j < h:
            indices.append(convert(d[j], uint32))
        else:
            targets.append(d[j])
    return indices, targets


@pure
@external
def leaf_hash(job_id: uint256, k: uint32, state_hash: bytes32, energy_mj: uint256, move: uint256, seal: bytes32) -> bytes32:
    """
    @notice Leaf `k` of the commitment tree (docs/protocol.md §3).
    @param job_id The job.
    @param k The boundary, `0 <= k <= num_segments`.
    @param state_hash state_hash at boundary `k`.
    @param energy_mj Cumulative energy at boundary `k`.
    @param move Cumulative movement `move_k` at boundary `k`.
    @param seal seal at boundary `k`: `keccak256(abi_encode(job_id, k, w_k))`.
    @return bytes32 The leaf.
    """
    return self._leaf(job_id, k, state_hash, energy_mj, move, seal)


@pure
@internal
def _check_proofs(job: OpenJob, o: Opening, start_leaf: bytes32, end_leaf: bytes32):
    """
    @dev Completes `end_proof` from `start_proof`'s tail (the siblings the
         two paths share above the level where leaves `index` and
         `index + 1` meet) and verifies both leaves with canonical lengths.
    """
    index: uint256 = convert(o.index, uint256)
    start_len: uint256 = len(o.start_proof)
    assert start_len == self._proof_length(index, job.num_segments + 1), "audit: bad start proof length"
    end_len: uint256 = self._proof_length(index + 1, job.num_segments + 1)
    assert len(o.end_proof) <= end_len and end_len - len(o.end_proof) <= start_len, "audit: bad end proof length"
    full_end: DynArray[bytes32, MAX_PROOF] = o.end_proof
    for j: uint256 in range(start_len - (end_len - len(o.end_proof)), start_len, bound=MAX_PROOF):
        full_end.append(o.start_proof[j])
    assert merkle_proof_verification._verify(o.start_proof, job.root, start_leaf), "audit: invalid start proof"
    assert merkle_proof_verification._verify(full_end, job.root, end_leaf), "audit: invalid end proof"


@pure
@internal
def _uniform_count(samples: uint256, move_total: uint256) -> uint256:
    if move_total == 0:
        return samples
    return (samples + 1) // 2


@pure
@internal
def _draws(seed: bytes32, job_id: uint256, num_segments: uint256, samples: uint256, move_total: uint256) -> DynArray[uint256, MAX_AUDIT_SAMPLES]:
    out: DynArray[uint256, MAX_AUDIT_SAMPLES] = []
    h: uint256 = self._uniform_count(samples, move_total)
    for j: uint256 in range(samples, bound=MAX_AUDIT_SAMPLES):
        r: uint256 = convert(keccak256(abi_encode(seed, job_id, j)), uint256)
        if j < h:
            out.append(r % num_segments)
        else:
            out.append(r % move_total)
    return out


@pure
@internal
def _leaf(job_id: uint256, k: uint32, state_hash: bytes32, energy_mj: uint256, move: uint256, seal: bytes32) -> bytes32:
    return keccak256(keccak256(abi_encode(job_id, k, state_hash, energy_mj, move, seal)))


@pure
@internal
def _proof_length(k: uint256, num_leaves: uint256) -> uint256:
    i: uint256 = k
    n: uint256 = num_leaves
    d: uint256 = 0
    for _: uint256 in range(MAX_PROOF + 1):
        if n <= 1:
            break
        if i ^ 1 < n:
            d += 1
        i >>= 1
        n = (n + 1) >> 1
    return d
