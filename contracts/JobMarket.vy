# pragma version ~=0.4.3
# pragma optimize codesize
"""
@title JobMarket
@custom:contract-name JobMarket
@license GNU Affero General Public License v3.0 only
@notice Escrow and state machine of greenproof training jobs (docs/protocol.md §2.3);
        the vote is the VerifierCourt's (docs/court.md). Guarantees:
        - a job's `payment + verifier_fee` sits in escrow from `post_job` until
          the job ends, and is paid out exactly once (cancel, expire, unopened
          slash or finalize);
        - the provider's `collateral` is locked in the StakeManager from
          `accept_job` until the job ends, and is slashed when the provider
          misses the deadline, fails to open an audited segment in time, or
          the court decides FRAUD;
        - a job is accepted only in a determinism class whose court pool holds
          at least the court's `min_class_stake`;
        - audited segments are drawn from a block hash that did not exist when
          the result was committed; openings come in ascending segment order,
          are Merkle-verified against the committed root in the leaf format of
          docs/protocol.md §3 (seals included) and accumulate the end seals
          into `seal_acc`, which the court's ok votes must reproduce;
        - `finalize` is O(1): it never loops over seats; the court settles
          each seat by its own call and only tells the market what to credit;
        - no token is created or lost: every base unit that enters (escrow,
          slashed stake, green bonus) is credited to exactly one claimable
          balance (pull payments, `withdraw`), a job's pot (paid out to the
          winning seats by the court), or the green bonus pool.

        Job states (`job_state`, `Job.state`):
          0 NONE (no such job), 1 OPEN, 2 ACCEPTED, 3 COMMITTED, 4 AUDITING,
          5 VOTING, 6 PAID, 7 SLASHED, 8 CANCELLED, 9 EXPIRED.

        Money rules (all divisions round down; the rounding rest is named):
        - cancel: requester refunded payment + fee.
        - expire / unopened slash: the provider's collateral is slashed
          (`s` = what the StakeManager could take); the requester is credited
          payment + fee + `s * requester_share_bps / 10000`; the rest of `s`
          goes to the GreenRegistry bonus pool (no seat judged the job).
        - finalize, FRAUD: collateral slashed; requester credited payment +
          fee + `rs = s * requester_share_bps / 10000`; the pot of the fraud
          seats is `s - rs`.
        - finalize, OK: provider credited payment + green bonus; the pot of
          the ok seats is the fee.
        - finalize, NO_DECISION: provider credited payment + green bonus; the
          fee goes back to the requester.
        - the court fixes `reward_per_seat = pot // winning_seats`; the
          remainder goes to the requester at once; each winning seat is paid
          from the pot by `credit_from_pot`, each penalty (slashed to this
          contract by the court) is credited to the requester by
          `credit_penalty`.
@dev Storage is packed by hand (Vyper does not pack struct fields): see
     `JobSlots` for the bit layout. `spec_uri` and `result_uri` are only
     emitted, never stored. Ownership is snekmate's 2-step ownership; Merkle
     proofs use snekmate's `merkle_proof_verification`.
     Beyond docs/protocol.md: a proof must have exactly the length that leaf `k`
     has in the canonical tree of `num_segments + 1` leaves
     (`greenproof.merkle.MerkleTree.proof`). Sorted-pair trees do not bind positions; with the length
     rule a provider cannot hide two different leaves for one boundary
     without dropping another boundary (Kraft inequality), which the audit
     then catches like any broken segment.
     Compiled with `optimize codesize` to keep 10 % of the EIP-170 size limit free.
"""


# INTERFACES #

from ethereum.ercs import IERC20

from snekmate.auth import ownable
from snekmate.auth import ownable_2step
from snekmate.utils import merkle_proof_verification

from .interfaces import IGreenRegistry
from .interfaces import IJobMarket
from .interfaces import IStakeManager
from .interfaces import IVerifierCourt

implements: IJobMarket

initializes: ownable
initializes: ownable_2step[ownable := ownable]

exports: (
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
    ownable_2step.renounce_ownership,
)


# EVENTS #

event JobPosted:
    job_id: indexed(uint256)
    requester: indexed(address)
    spec_hash: bytes32
    spec_uri: String[MAX_URI]
    num_segments: uint32
    audit_samples: uint256
    payment: uint256
    verifier_fee: uint256
    collateral: uint256
    deadline: uint256
    min_green_bps: uint256


event JobCancelled:
    job_id: indexed(uint256)
    refund: uint256


event JobAccepted:
    job_id: indexed(uint256)
    provider: indexed(address)
    determinism_class: bytes32
    collateral: uint256


event ResultCommitted:
    job_id: indexed(uint256)
    provider: indexed(address)
    root: bytes32
    final_state_hash: bytes32
    energy_mj: uint256
    result_uri: String[MAX_URI]
    seed_block: uint256


event AuditRearmed:
    job_id: indexed(uint256)
    seed_block: uint256


event AuditDrawn:
    job_id: indexed(uint256)
    seed: bytes32
    indices: DynArray[uint32, MAX_AUDIT_SAMPLES]
    open_deadline: uint256


event SegmentOpened:
    job_id: indexed(uint256)
    index: uint32
    start_hash: bytes32
    start_energy_mj: uint256
    start_seal: bytes32
    end_hash: bytes32
    end_energy_mj: uint256
    end_seal: bytes32


event JobFinalized:
    job_id: indexed(uint256)
    outcome: uint8
    paid: uint256
    bonus: uint256
    energy_mj: uint256
    carbon_g: uint256


event ProviderSlashed:
    job_id: indexed(uint256)
    provider: indexed(address)
    amount: uint256
    reason: String[16]


event JobExpired:
    job_id: indexed(uint256)
    slashed: uint256


event Withdrawn:
    account: indexed(address)
    amount: uint256


event ParameterSet:
    name: String[20]
    old_value: uint256
    new_value: uint256


# CONSTANTS #

# Job states. 0 means "no such job".
STATE_NONE: constant(uint8) = 0
STATE_OPEN: constant(uint8) = 1
STATE_ACCEPTED: constant(uint8) = 2
STATE_COMMITTED: constant(uint8) = 3
STATE_AUDITING: constant(uint8) = 4
STATE_VOTING: constant(uint8) = 5
STATE_PAID: constant(uint8) = 6
STATE_SLASHED: constant(uint8) = 7
STATE_CANCELLED: constant(uint8) = 8
STATE_EXPIRED: constant(uint8) = 9

# @dev `VerifierCourt.decide` outcome that slashes the provider (0: next
#      round drawn, 1: OK, 3: NO_DECISION pay the provider).
OUTCOME_FRAUD: constant(uint8) = 2

# @dev Hard cap of `max_audit_samples` (the opened set is a 64-bit mask).
MAX_AUDIT_SAMPLES: public(constant(uint256)) = 64
# @dev Most openings in one `open_segments` call (bounds its memory). A job
#      with more distinct audited indices opens them in several calls.
MAX_OPENINGS: public(constant(uint256)) = 16
# @dev Longest Merkle proof: `num_segments + 1 <= 2**32` leaves.
MAX_PROOF: constant(uint256) = 32
# @dev Longest `spec_uri` / `result_uri`. URIs are only emitted, never stored, so a
#      spec can travel on chain as a `data:` URI (a few hundred bytes to a few KiB).
MAX_URI: public(constant(uint256)) = 4096
BPS: constant(uint256) = 10_000
# @dev mJ per kWh: carbon_g = energy_mj * g_per_kwh / MJ_PER_KWH.
MJ_PER_KWH: constant(uint256) = 3_600_000_000
# @dev Added to `max_job_lifetime` for the draw (seed lookahead) and slack.
LIFETIME_MARGIN: public(constant(uint256)) = 3600
# @dev Blocks whose hash the EVM still serves.
BLOCKHASH_WINDOW: constant(uint256) = 256

# Hard bounds of the owner-set parameters (inclusive).
MIN_SEED_LOOKAHEAD: constant(uint256) = 1
MAX_SEED_LOOKAHEAD: constant(uint256) = 64
MIN_WINDOW: constant(uint256) = 10
MAX_WINDOW: constant(uint256) = 7 * 86400
MIN_COLLATERAL_BPS_FLOOR: constant(uint256) = 1_000
MIN_COLLATERAL_BPS_CEIL: constant(uint256) = 100_000
MIN_JOB_DURATION: constant(uint256) = 60
MAX_JOB_DURATION: constant(uint256) = 180 * 86400
MAX_AMOUNT: constant(uint256) = 2**128 - 1

# Parameter ids (index into PARAM_MIN / PARAM_MAX).
P_SEED_LOOKAHEAD: constant(uint256) = 0
P_OPEN_WINDOW: constant(uint256) = 1
P_MAX_AUDIT_SAMPLES: constant(uint256) = 2
P_MIN_COLLATERAL_BPS: constant(uint256) = 3
P_REQUESTER_SHARE_BPS: constant(uint256) = 4
P_MAX_JOB_DURATION: constant(uint256) = 5
# @dev Inclusive hard bounds.
PARAM_MIN: constant(uint256[6]) = [MIN_SEED_LOOKAHEAD, MIN_WINDOW, 1, MIN_COLLATERAL_BPS_FLOOR, 0, MIN_JOB_DURATION]
PARAM_MAX: constant(uint256[6]) = [
    MAX_SEED_LOOKAHEAD, MAX_WINDOW, MAX_AUDIT_SAMPLES, MIN_COLLATERAL_BPS_CEIL, BPS, MAX_JOB_DURATION
]
MAX_COLLATERAL: constant(uint256) = 2**112 - 1

MASK16: constant(uint256) = 2**16 - 1
MASK32: constant(uint256) = 2**32 - 1
MASK48: constant(uint256) = 2**48 - 1
MASK64: constant(uint256) = 2**64 - 1
MASK112: constant(uint256) = 2**112 - 1
MASK128: constant(uint256) = 2**128 - 1
MASK160: constant(uint256) = 2**160 - 1


# STRUCTS #

# @dev Storage of one job, packed by hand:
#      head  = requester(0..159) | state(160..167) | audit_samples(168..175)
#              | num_segments(176..207) | deadline(208..255)
#      run   = provider(0..159) | seed_block(160..207) | phase_at(208..255)
#              (phase_at: the draw time in AUDITING, voting start from VOTING)
#      money = payment(0..127) | verifier_fee(128..255)
#      terms = collateral(0..111) | min_green_bps(112..127) | energy_mj(128..255)
#      audit = opened_mask(0..63) | next_index(64..127)
#              (next_index: least segment the next opening may have)
#      seal_acc = keccak256 chain of the opened segments' end seals
#      dclass   = the provider's determinism class (set by `accept_job`)
#      pot   = tokens held for the winning seats, not yet credited
struct JobSlots:
    head: uint256
    run: uint256
    money: uint256
    terms: uint256
    spec_hash: bytes32
    root: bytes32
    final_state_hash: bytes32
    seed: bytes32
    audit: uint256
    seal_acc: bytes32
    dclass: bytes32
    pot: uint256


# @notice A job as `get_job` returns it.
# @dev Fields: `requester`, `provider` (empty until accepted), `state` (see
#      the states above), `spec_hash`, `num_segments`, `audit_samples`,
#      `payment`, `verifier_fee`, `collateral`, `deadline` (unix s),
#      `min_green_bps`, `determinism_class` (set by `accept_job`), `root`,
#      `final_state_hash`, `energy_mj` (set by `commit_result`), `seed_block`
#      (block whose hash seeds the draw), `seed` (set by `draw_audit`),
#      `open_deadline` (end of the open window, AUDITING), `voting_start`
#      (VOTING on: when round 0 of the court started), `opened_mask` (bit `j`
#      set when the `j`-th audited index is open), `seal_acc` (the end seals
#      of the opened segments, chained), `pot` (tokens left for the winning
#      seats once finalized).
struct Job:
    requester: address
    provider: address
    state: uint8
    spec_hash: bytes32
    num_segments: uint32
    audit_samples: uint256
    payment: uint256
    verifier_fee: uint256
    collateral: uint256
    deadline: uint256
    min_green_bps: uint256
    determinism_class: bytes32
    root: bytes32
    final_state_hash: bytes32
    energy_mj: uint256
    seed_block: uint256
    seed: bytes32
    open_deadline: uint256
    voting_start: uint256
    opened_mask: uint256
    seal_acc: bytes32
    pot: uint256


# @notice One segment opening for `open_segments`: the leaves of boundaries
#         `index` and `index + 1` (state hash, cumulative energy, seal) and
#         their proofs.
struct Opening:
    index: uint32
    start_hash: bytes32
    start_energy_mj: uint256
    start_seal: bytes32
    end_hash: bytes32
    end_energy_mj: uint256
    end_seal: bytes32
    start_proof: DynArray[bytes32, MAX_PROOF]
    end_proof: DynArray[bytes32, MAX_PROOF]


# @dev Working state of an `open_segment(s)` call.
struct OpenCtx:
    head: uint256
    run: uint256
    mask: uint256
    next_index: uint256
    seal_acc: bytes32
    num_segments: uint256
    samples: uint256
    root: bytes32
    indices: DynArray[uint32, MAX_AUDIT_SAMPLES]


# STORAGE #

token: public(immutable(IERC20))
stake_manager: public(immutable(IStakeManager))
registry: public(immutable(IGreenRegistry))
# @notice The VerifierCourt that judges every audited job.
court: public(immutable(IVerifierCourt))

# @notice Blocks between `commit_result` and the block whose hash seeds the
#         audit draw. Default 2, bounds [1, 64].
seed_lookahead: public(uint256)
# @notice Seconds after the draw to open every audited segment.
#         Default 3600, bounds [10, 604800].
open_window: public(uint256)
# @notice Most audit samples a job may ask for. Default 32, bounds [1, 64].
max_audit_samples: public(uint256)
# @notice Least collateral, in bps of the payment. Default 10000 (collateral
#         >= payment), bounds [1000, 100000].
min_collateral_bps: public(uint256)
# @notice Share of slashed collateral that goes to the requester. Default
#         5000 (50 %), bounds [0, 10000].
requester_share_bps: public(uint256)
# @notice Longest `deadline - now` at posting. Default 604800 (7 days),
#         bounds [60, 15552000].
max_job_duration: public(uint256)

# @notice Id the next posted job gets (ids start at 1).
next_job_id: public(uint256)
# @notice Tokens an account can `withdraw`.
claimable: public(HashMap[address, uint256])

_jobs: HashMap[uint256, JobSlots]


# CONSTRUCTOR #

@deploy
def __init__(token_: address, stake_manager_: address, registry_: address, court_: address):
    """
    @notice Deploys the market with the default parameters; the deployer
            becomes the owner. Wire it afterwards with
            `StakeManager.set_market`, `GreenRegistry.set_market` and
            `VerifierCourt.set_market`.
    @dev Reverts unless the StakeManager's `unbonding_period` exceeds
         `max_job_lifetime()` at the defaults (7 d + 1 h + the court's
         3 x 2 h + 1 h = 633600 s).
    @param token_ The settlement ERC20 token.
    @param stake_manager_ The StakeManager (same token).
    @param registry_ The GreenRegistry (same token).
    @param court_ The VerifierCourt (same StakeManager).
    """
    assert token_ != empty(address), "market: token is zero address"
    assert staticcall IStakeManager(stake_manager_).token() == token_, "market: stake token mismatch"
    assert staticcall IGreenRegistry(registry_).token() == token_, "market: registry token mismatch"
    assert staticcall IVerifierCourt(court_).stake_manager() == stake_manager_, "market: court stake mismatch"
    ownable.__init__()
    ownable_2step.__init__()
    token = IERC20(token_)
    stake_manager = IStakeManager(stake_manager_)
    registry = IGreenRegistry(registry_)
    court = IVerifierCourt(court_)
    self.seed_lookahead = 2
    self.open_window = 3600
    self.max_audit_samples = 32
    self.min_collateral_bps = 10_000
    self.requester_share_bps = 5_000
    self.max_job_duration = 7 * 86400
    self.next_job_id = 1
    self._check_lifetime()


# EXTERNAL: REQUESTER #

@external
@nonreentrant
def post_job(
    spec_hash: bytes32,
    spec_uri: String[MAX_URI],
    num_segments: uint32,
    audit_samples: uint256,
    payment: uint256,
    verifier_fee: uint256,
    collateral: uint256,
    deadline: uint256,
    min_green_bps: uint256,
) -> uint256:
    """
    @notice Posts a training job and pulls `payment + verifier_fee` into escrow
            (needs an ERC20 approval).
    @param spec_hash keccak256 of the canonical job spec JSON (docs/protocol.md §3).
    @param spec_uri Where the spec can be fetched (emitted only).
    @param num_segments Segments of the run, > 0 (the tree has one more leaf).
    @param audit_samples Segments to audit, `1 <= audit_samples <= max_audit_samples`.
    @param payment Paid to the provider on success, `0 < payment < 2**128`.
    @param verifier_fee Shared by the winning voters (or refunded), `< 2**128`.
    @param collateral Provider stake locked on accept,
           `>= payment * min_collateral_bps / 10000`, `< 2**112`.
    @param deadline Unix time by which the result must be committed,
           `now < deadline <= now + max_job_duration`.
    @param min_green_bps Least green share a provider must have attested, `<= 10000`.
    @return uint256 The new job id.
    """
    assert spec_hash != empty(bytes32), "market: empty spec hash"
    assert num_segments > 0, "market: zero segments"
    assert audit_samples > 0, "market: zero audit samples"
    assert audit_samples <= self.max_audit_samples, "market: too many audit samples"
    assert payment > 0, "market: zero payment"
    assert payment <= MAX_AMOUNT and verifier_fee <= MAX_AMOUNT, "market: amount too large"
    assert collateral * BPS >= payment * self.min_collateral_bps, "market: collateral too low"
    assert collateral <= MAX_COLLATERAL, "market: collateral too large"
    assert deadline > block.timestamp, "market: deadline in the past"
    assert deadline <= block.timestamp + self.max_job_duration, "market: deadline too far"
    assert min_green_bps <= BPS, "market: green bps above 10000"

    job_id: uint256 = self.next_job_id
    self.next_job_id = job_id + 1
    self._jobs[job_id].head = (
        convert(msg.sender, uint256)
        | (convert(STATE_OPEN, uint256) << 160)
        | (audit_samples << 168)
        | (convert(num_segments, uint256) << 176)
        | (deadline << 208)
    )
    self._jobs[job_id].money = payment | (verifier_fee << 128)
    self._jobs[job_id].terms = collateral | (min_green_bps << 112)
    self._jobs[job_id].spec_hash = spec_hash
    log JobPosted(
        job_id=job_id,
        requester=msg.sender,
        spec_hash=spec_hash,
        spec_uri=spec_uri,
        num_segments=num_segments,
        audit_samples=audit_samples,
        payment=payment,
        verifier_fee=verifier_fee,
        collateral=collateral,
        deadline=deadline,
        min_green_bps=min_green_bps,
    )
    assert extcall token.transferFrom(msg.sender, self, payment + verifier_fee, default_return_value=True), "market: transferFrom failed"
    return job_id


@external
@nonreentrant
def cancel_job(job_id: uint256):
    """
    @notice Cancels an OPEN job and refunds its escrow to the requester at once.
    @param job_id The job.
    """
    head: uint256 = self._jobs[job_id].head
    assert self._state(head) == STATE_OPEN, "market: job not open"
    assert msg.sender == self._addr(head), "market: caller is not the requester"
    self._jobs[job_id].head = self._with_state(head, STATE_CANCELLED)
    money: uint256 = self._jobs[job_id].money
    refund: uint256 = (money & MASK128) + (money >> 128)
    log JobCancelled(job_id=job_id, refund=refund)
    self._transfer(msg.sender, refund)


# EXTERNAL: PROVIDER #

@external
def accept_job(job_id: uint256, determinism_class: bytes32):
    """
    @notice Accepts an OPEN job in the caller's determinism class: locks
            `collateral` of the caller's free stake and stores the class,
            whose court pool will judge the job.
    @dev The court's pool of `determinism_class` must hold at least its
         `min_class_stake`. If the job sets `min_green_bps`, the caller's
         attestation in force must meet it.
    @param job_id The job.
    @param determinism_class The provider's determinism class (docs/protocol.md §3.9).
    """
    head: uint256 = self._jobs[job_id].head
    assert self._state(head) == STATE_OPEN, "market: job not open"
    assert msg.sender != self._addr(head), "market: requester cannot accept"
    assert block.timestamp < head >> 208, "market: deadline passed"
    terms: uint256 = self._jobs[job_id].terms
    collateral: uint256 = terms & MASK112
    min_green: uint256 = (terms >> 112) & MASK16
    if min_green > 0:
        assert staticcall registry.green_bps_of(msg.sender) >= min_green, "market: provider not green enough"
    assert staticcall stake_manager.free_stake(msg.sender) >= collateral, "market: insufficient free stake"
    assert staticcall court.pool_stake(determinism_class) >= staticcall court.min_class_stake(), "market: class pool too small"
    self._jobs[job_id].head = self._with_state(head, STATE_ACCEPTED)
    self._jobs[job_id].run = convert(msg.sender, uint256)
    self._jobs[job_id].dclass = determinism_class
    log JobAccepted(job_id=job_id, provider=msg.sender, determinism_class=determinism_class, collateral=collateral)
    extcall stake_manager.lock(msg.sender, collateral)


@external
def commit_result(
    job_id: uint256,
    root: bytes32,
    final_state_hash: bytes32,
    energy_mj: uint256,
    result_uri: String[MAX_URI],
):
    """
    @notice Commits the run: the Merkle root over its `num_segments + 1`
            boundaries, the final state and the total energy. Arms the audit
            seed `seed_lookahead` blocks ahead.
    @param job_id The job (ACCEPTED, caller its provider, before the deadline).
    @param root Root of the commitment tree (docs/protocol.md §3), non-zero.
    @param final_state_hash state_hash at boundary `num_segments`.
    @param energy_mj Cumulative energy at boundary `num_segments`, `< 2**128`.
    @param result_uri Base URI of the checkpoints (emitted only).
    """
    head: uint256 = self._jobs[job_id].head
    assert self._state(head) == STATE_ACCEPTED, "market: job not accepted"
    run: uint256 = self._jobs[job_id].run
    assert msg.sender == self._addr(run), "market: caller is not the provider"
    assert block.timestamp < head >> 208, "market: deadline passed"
    assert root != empty(bytes32), "market: empty root"
    assert energy_mj <= MAX_AMOUNT, "market: energy too large"
    seed_block: uint256 = block.number + self.seed_lookahead
    self._jobs[job_id].head = self._with_state(head, STATE_COMMITTED)
    self._jobs[job_id].run = (run & MASK160) | (seed_block << 160)
    self._jobs[job_id].root = root
    self._jobs[job_id].final_state_hash = final_state_hash
    self._jobs[job_id].terms = (self._jobs[job_id].terms & MASK128) | (energy_mj << 128)
    log ResultCommitted(
        job_id=job_id,
        provider=msg.sender,
        root=root,
        final_state_hash=final_state_hash,
        energy_mj=energy_mj,
        result_uri=result_uri,
        seed_block=seed_block,
    )


@external
def open_segment(
    job_id: uint256,
    index: uint32,
    start_hash: bytes32,
    start_energy_mj: uint256,
    start_seal: bytes32,
    end_hash: bytes32,
    end_energy_mj: uint256,
    end_seal: bytes32,
    start_proof: DynArray[bytes32, MAX_PROOF],
    end_proof: DynArray[bytes32, MAX_PROOF],
):
    """
    @notice Opens one audited segment: reveals the leaves of boundaries
            `index` and `index + 1` with their Merkle proofs.
    @dev See `open_segments` for the rules.
    @param job_id The job (AUDITING, caller its provider, inside the open window).
    @param index The audited segment, above every segment opened before.
    @param start_hash state_hash at boundary `index`.
    @param start_energy_mj Cumulative energy at boundary `index`.
    @param start_seal seal at boundary `index`.
    @param end_hash state_hash at boundary `index + 1`.
    @param end_energy_mj Cumulative energy at boundary `index + 1`.
    @param end_seal seal at boundary `index + 1`.
    @param start_proof Proof of leaf `index`.
    @param end_proof Proof of leaf `index + 1`.
    """
    ctx: OpenCtx = self._open_begin(job_id)
    ctx = self._open_one(
        job_id,
        ctx,
        Opening(
            index=index,
            start_hash=start_hash,
            start_energy_mj=start_energy_mj,
            start_seal=start_seal,
            end_hash=end_hash,
            end_energy_mj=end_energy_mj,
            end_seal=end_seal,
            start_proof=start_proof,
            end_proof=end_proof,
        ),
    )
    self._open_end(job_id, ctx)


@external
def open_segments(job_id: uint256, openings: DynArray[Opening, MAX_OPENINGS]):
    """
    @notice Opens several audited segments in one transaction. When every
            audited index is open the job moves to VOTING and the court's
            round 0 starts.
    @dev Per opening: `index` is an audited index above every index opened
         before (openings come in strictly ascending order across calls);
         both leaves verify against `root` with proofs of the canonical
         length; `end_energy_mj >= start_energy_mj`; boundary 0 has energy 0
         and seal `keccak256(abi_encode(job_id, uint32(0), bytes32(0)))`; the
         last segment ends at `final_state_hash` / `energy_mj`. Each opening
         extends `seal_acc = keccak256(concat(seal_acc, end_seal))`.
    @param job_id The job (AUDITING, caller its provider, inside the open window).
    @param openings The segments to open, 1 to `MAX_OPENINGS` (16), ascending.
    """
    assert len(openings) > 0, "market: no openings"
    ctx: OpenCtx = self._open_begin(job_id)
    for o: Opening in openings:
        ctx = self._open_one(job_id, ctx, o)
    self._open_end(job_id, ctx)


@external
@nonreentrant
def expire_job(job_id: uint256):
    """
    @notice Ends an ACCEPTED job whose deadline passed without a commitment:
            slashes the collateral (reason "expired").
    @dev Requester credited payment + fee + `requester_share_bps` of the
         slashed amount; the rest funds the green bonus pool. Anyone may call.
    @param job_id The job.
    """
    head: uint256 = self._jobs[job_id].head
    assert self._state(head) == STATE_ACCEPTED, "market: job not accepted"
    assert block.timestamp >= head >> 208, "market: deadline not passed"
    self._jobs[job_id].head = self._with_state(head, STATE_EXPIRED)
    slashed: uint256 = self._slash_provider_no_voters(job_id, head, "expired")
    log JobExpired(job_id=job_id, slashed=slashed)


@external
@nonreentrant
def slash_unopened(job_id: uint256):
    """
    @notice Slashes a provider that did not open every audited segment within
            the open window (reason "unopened"); the job ends SLASHED and its
            court case is dropped (round 0's seats are freed, unpaid and unpenalised).
    @dev Same split as `expire_job`. Anyone may call.
    @param job_id The job.
    """
    head: uint256 = self._jobs[job_id].head
    assert self._state(head) == STATE_AUDITING, "market: job not auditing"
    run: uint256 = self._jobs[job_id].run
    assert block.timestamp >= (run >> 208) + self.open_window, "market: open window not passed"
    self._jobs[job_id].head = self._with_state(head, STATE_SLASHED)
    self._slash_provider_no_voters(job_id, head, "unopened")
    extcall court.drop_case(job_id)


# EXTERNAL: AUDIT DRAW #

@external
def draw_audit(job_id: uint256):
    """
    @notice Draws the audited segments from `blockhash(seed_block)`, starts
            the open window and opens the court's case (which draws round 0's
            committee from the pool of the job's class). If that block is more
            than 256 blocks old its hash is gone: the draw re-arms
            `seed_block = now + seed_lookahead` (event `AuditRearmed`) instead
            of reverting.
    @dev Anyone may call, once `block.number > seed_block`. Requesters and
         verifiers should draw promptly: a re-arm lets the provider see one
         more seed before the draw.
    @param job_id The job (COMMITTED).
    """
    head: uint256 = self._jobs[job_id].head
    assert self._state(head) == STATE_COMMITTED, "market: job not committed"
    run: uint256 = self._jobs[job_id].run
    seed_block: uint256 = (run >> 160) & MASK48
    assert block.number > seed_block, "market: seed block not reached"
    if block.number > seed_block + BLOCKHASH_WINDOW:
        seed_block = block.number + self.seed_lookahead
        self._jobs[job_id].run = (run & MASK160) | (seed_block << 160)
        log AuditRearmed(job_id=job_id, seed_block=seed_block)
        return
    seed: bytes32 = blockhash(seed_block)
    self._jobs[job_id].seed = seed
    self._jobs[job_id].head = self._with_state(head, STATE_AUDITING)
    self._jobs[job_id].run = (run & (MASK160 | (MASK48 << 160))) | (block.timestamp << 208)
    indices: DynArray[uint32, MAX_AUDIT_SAMPLES] = self._indices(
        seed, job_id, (head >> 176) & MASK32, (head >> 168) & 255
    )
    log AuditDrawn(job_id=job_id, seed=seed, indices=indices, open_deadline=block.timestamp + self.open_window)
    extcall court.open_case(job_id, self._jobs[job_id].dclass, seed)


# EXTERNAL: DECISION #

@external
@nonreentrant
def finalize(job_id: uint256):
    """
    @notice Asks the court to decide a VOTING job whose round is over, in
            O(1): FRAUD -> SLASHED (reason "fraud"); OK or NO_DECISION ->
            PAID; an undecided round with rounds left draws the next round
            and the job stays VOTING (call again after its reveal window).
    @dev Paid: the provider is credited payment + the green bonus
         (`GreenRegistry.pay_bonus`, capped by the pool). The pot (OK: the
         fee; FRAUD: the slashed collateral minus the requester's share;
         NO_DECISION: the fee, all of it back to the requester) goes to the
         court, which fixes the reward per winning seat and returns the
         remainder, credited to the requester. `JobFinalized` reports the
         energy and `carbon_g = energy_mj * carbon_intensity / 3_600_000_000`;
         both are 0 for a slashed job (its claim is void).
    @param job_id The job.
    """
    head: uint256 = self._jobs[job_id].head
    assert self._state(head) == STATE_VOTING, "market: job not voting"
    outcome: uint8 = 0
    winning: uint256 = 0
    outcome, winning = extcall court.decide(job_id)
    if outcome == 0:
        return
    requester: address = self._addr(head)
    provider: address = self._addr(self._jobs[job_id].run)
    money: uint256 = self._jobs[job_id].money
    payment: uint256 = money & MASK128
    fee: uint256 = money >> 128
    terms: uint256 = self._jobs[job_id].terms
    state: uint8 = STATE_PAID
    if outcome == OUTCOME_FRAUD:
        state = STATE_SLASHED
    self._jobs[job_id].head = self._with_state(head, state)
    extcall stake_manager.unlock(provider, terms & MASK112)
    pot: uint256 = fee
    paid: uint256 = 0
    bonus: uint256 = 0
    energy_mj: uint256 = 0
    carbon_g: uint256 = 0
    if outcome == OUTCOME_FRAUD:
        slashed: uint256 = extcall stake_manager.slash(provider, terms & MASK112, self)
        to_requester: uint256 = slashed * self.requester_share_bps // BPS
        self.claimable[requester] += payment + fee + to_requester
        pot = slashed - to_requester
        log ProviderSlashed(job_id=job_id, provider=provider, amount=slashed, reason="fraud")
    else:
        bonus = extcall registry.pay_bonus(provider, payment)
        paid = payment
        self.claimable[provider] += payment + bonus
        energy_mj = terms >> 128
        carbon_g = energy_mj * staticcall registry.carbon_intensity_of(provider) // MJ_PER_KWH
    remainder: uint256 = extcall court.set_pot(job_id, pot)
    self.claimable[requester] += remainder
    self._jobs[job_id].pot = pot - remainder
    log JobFinalized(job_id=job_id, outcome=state, paid=paid, bonus=bonus, energy_mj=energy_mj, carbon_g=carbon_g)


# EXTERNAL: COURT #

@external
def credit_from_pot(job_id: uint256, to: address, amount: uint256):
    """
    @notice Pays `amount` of a finalized job's pot to `to` (a winning seat).
    @dev Court only; never more than the pot holds.
    @param job_id The job.
    @param to The seat holder.
    @param amount Token base units.
    """
    assert msg.sender == court.address, "market: caller is not the court"
    pot: uint256 = self._jobs[job_id].pot
    assert amount <= pot, "market: pot exceeded"
    self._jobs[job_id].pot = pot - amount
    self.claimable[to] += amount


@external
def credit_penalty(job_id: uint256, amount: uint256):
    """
    @notice Credits a seat's penalty, which the court slashed to this
            contract, to the job's requester.
    @dev Court only.
    @param job_id The job.
    @param amount Token base units received from the StakeManager.
    """
    assert msg.sender == court.address, "market: caller is not the court"
    self.claimable[self._addr(self._jobs[job_id].head)] += amount


# EXTERNAL: PULL PAYMENTS #

@external
@nonreentrant
def withdraw() -> uint256:
    """
    @notice Pays out the caller's claimable balance.
    @return uint256 The amount paid.
    """
    amount: uint256 = self.claimable[msg.sender]
    assert amount > 0, "market: nothing to withdraw"
    self.claimable[msg.sender] = 0
    log Withdrawn(account=msg.sender, amount=amount)
    self._transfer(msg.sender, amount)
    return amount


# EXTERNAL: GOVERNANCE #

@external
def set_seed_lookahead(blocks: uint256):
    """
    @notice Sets `seed_lookahead` (blocks), bounds [1, 64].
    @dev Owner only; emits `ParameterSet("seed_lookahead", old, new)`.
    @param blocks The new value.
    """
    self.seed_lookahead = self._set_parameter(P_SEED_LOOKAHEAD, "seed_lookahead", self.seed_lookahead, blocks)


@external
def set_open_window(seconds: uint256):
    """
    @notice Sets `open_window` (seconds), bounds [10, 604800]; `max_job_lifetime` must stay below the unbonding period.
    @dev Owner only; emits `ParameterSet("open_window", old, new)`.
    @param seconds The new value.
    """
    self.open_window = self._set_parameter(P_OPEN_WINDOW, "open_window", self.open_window, seconds)


@external
def set_max_audit_samples(samples: uint256):
    """
    @notice Sets `max_audit_samples`, bounds [1, 64]. Posted jobs keep theirs.
    @dev Owner only; emits `ParameterSet("max_audit_samples", old, new)`.
    @param samples The new value.
    """
    self.max_audit_samples = self._set_parameter(P_MAX_AUDIT_SAMPLES, "max_audit_samples", self.max_audit_samples, samples)


@external
def set_min_collateral_bps(bps: uint256):
    """
    @notice Sets `min_collateral_bps`, bounds [1000, 100000].
    @dev Owner only; emits `ParameterSet("min_collateral_bps", old, new)`.
    @param bps The new value.
    """
    self.min_collateral_bps = self._set_parameter(P_MIN_COLLATERAL_BPS, "min_collateral_bps", self.min_collateral_bps, bps)


@external
def set_requester_share_bps(bps: uint256):
    """
    @notice Sets `requester_share_bps`, bounds [0, 10000].
    @dev Owner only; emits `ParameterSet("requester_share_bps", old, new)`.
    @param bps The new value.
    """
    self.requester_share_bps = self._set_parameter(P_REQUESTER_SHARE_BPS, "requester_share_bps", self.requester_share_bps, bps)


@external
def set_max_job_duration(seconds: uint256):
    """
    @notice Sets `max_job_duration` (seconds), bounds [60, 15552000]; `max_job_lifetime` must stay below the unbonding period. Posted jobs keep their deadline.
    @dev Owner only; emits `ParameterSet("max_job_duration", old, new)`.
    @param seconds The new value.
    """
    self.max_job_duration = self._set_parameter(P_MAX_JOB_DURATION, "max_job_duration", self.max_job_duration, seconds)


# EXTERNAL: VIEWS #

@view
@external
def max_job_lifetime() -> uint256:
    """
    @notice The longest a job can hold stake: `max_job_duration + open_window
            + court.max_voting_time() + LIFETIME_MARGIN`, where the court's
            part covers every round (`max_rounds * (commit_window + reveal_window)`).
    @return uint256 Seconds.
    """
    return self._max_job_lifetime()


@view
@external
def job_state(job_id: uint256) -> uint8:
    """
    @notice The job's state (0 when there is no such job).
    @param job_id The job.
    @return uint8 The state, see the contract notice.
    """
    return self._state(self._jobs[job_id].head)


@view
@external
def get_job(job_id: uint256) -> Job:
    """
    @notice The whole job, unpacked (see the `Job` struct for the fields).
    @param job_id The job.
    @return Job The job; all zero when there is no such job.
    """
    s: JobSlots = self._jobs[job_id]
    state: uint8 = self._state(s.head)
    phase_at: uint256 = s.run >> 208
    open_deadline: uint256 = 0
    voting_start: uint256 = 0
    if state == STATE_AUDITING:
        open_deadline = phase_at + self.open_window
    elif state >= STATE_VOTING and phase_at > 0:
        voting_start = phase_at
    return Job(
        requester=self._addr(s.head),
        provider=self._addr(s.run),
        state=state,
        spec_hash=s.spec_hash,
        num_segments=convert((s.head >> 176) & MASK32, uint32),
        audit_samples=(s.head >> 168) & 255,
        payment=s.money & MASK128,
        verifier_fee=s.money >> 128,
        collateral=s.terms & MASK112,
        deadline=s.head >> 208,
        min_green_bps=(s.terms >> 112) & MASK16,
        determinism_class=s.dclass,
        root=s.root,
        final_state_hash=s.final_state_hash,
        energy_mj=s.terms >> 128,
        seed_block=(s.run >> 160) & MASK48,
        seed=s.seed,
        open_deadline=open_deadline,
        voting_start=voting_start,
        opened_mask=s.audit & MASK64,
        seal_acc=s.seal_acc,
        pot=s.pot,
    )


@view
@external
def audit_indices(job_id: uint256) -> DynArray[uint32, MAX_AUDIT_SAMPLES]:
    """
    @notice The audited segments: the `j`-th is
            `uint32(keccak256(abi_encode(seed, job_id, j)) % num_segments)`
            (`bytes32, uint256, uint256`), duplicates allowed.
    @param job_id The job.
    @return DynArray[uint32, 64] Empty until `draw_audit`.
    """
    seed: bytes32 = self._jobs[job_id].seed
    if seed == empty(bytes32):
        return []
    head: uint256 = self._jobs[job_id].head
    return self._indices(seed, job_id, (head >> 176) & MASK32, (head >> 168) & 255)


@view
@external
def is_opened(job_id: uint256, index: uint32) -> bool:
    """
    @notice Whether audited segment `index` has been opened.
    @param job_id The job.
    @param index The segment.
    @return bool False for an index that is not audited.
    """
    seed: bytes32 = self._jobs[job_id].seed
    if seed == empty(bytes32):
        return False
    head: uint256 = self._jobs[job_id].head
    indices: DynArray[uint32, MAX_AUDIT_SAMPLES] = self._indices(seed, job_id, (head >> 176) & MASK32, (head >> 168) & 255)
    bits: uint256 = self._bits_of(indices, index)
    return bits != 0 and (self._jobs[job_id].audit & bits) == bits


@pure
@external
def leaf_hash(job_id: uint256, k: uint32, state_hash: bytes32, energy_mj: uint256, seal: bytes32) -> bytes32:
    """
    @notice Leaf `k` of the commitment tree (docs/protocol.md §3.6):
            `keccak256(keccak256(abi_encode(job_id, k, state_hash, energy_mj, seal)))`.
    @param job_id The job.
    @param k The boundary, `0 <= k <= num_segments`.
    @param state_hash state_hash at boundary `k`.
    @param energy_mj Cumulative energy at boundary `k`.
    @param seal seal at boundary `k`: `keccak256(abi_encode(job_id, k, w_k))`.
    @return bytes32 The leaf.
    """
    return self._leaf(job_id, k, state_hash, energy_mj, seal)


# INTERNAL #

@view
@internal
def _open_begin(job_id: uint256) -> OpenCtx:
    head: uint256 = self._jobs[job_id].head
    assert self._state(head) == STATE_AUDITING, "market: job not auditing"
    run: uint256 = self._jobs[job_id].run
    assert msg.sender == self._addr(run), "market: caller is not the provider"
    assert block.timestamp < (run >> 208) + self.open_window, "market: open window passed"
    num_segments: uint256 = (head >> 176) & MASK32
    samples: uint256 = (head >> 168) & 255
    audit: uint256 = self._jobs[job_id].audit
    return OpenCtx(
        head=head,
        run=run,
        mask=audit & MASK64,
        next_index=audit >> 64,
        seal_acc=self._jobs[job_id].seal_acc,
        num_segments=num_segments,
        samples=samples,
        root=self._jobs[job_id].root,
        indices=self._indices(self._jobs[job_id].seed, job_id, num_segments, samples),
    )


@internal
def _open_one(job_id: uint256, ctx: OpenCtx, o: Opening) -> OpenCtx:
    """
    @dev Checks one opening and returns `ctx` with it folded in (mask, next
         index, seal accumulator). `end_proof` may leave out its tail where it equals
         `start_proof`'s tail (above the level where the paths of leaves
         `index` and `index + 1` meet); the missing siblings are taken from
         `start_proof`. Either way the completed proof must have the
         canonical length and verify, so this only saves calldata.
    """
    index: uint256 = convert(o.index, uint256)
    assert index >= ctx.next_index, "market: openings not ascending"
    bits: uint256 = self._bits_of(ctx.indices, o.index)
    assert bits != 0, "market: index not audited"
    ctx.mask |= bits
    ctx.next_index = index + 1
    ctx.seal_acc = keccak256(concat(ctx.seal_acc, o.end_seal))
    num_segments: uint256 = ctx.num_segments
    assert o.end_energy_mj >= o.start_energy_mj, "market: energy not monotone"
    if index == 0:
        assert o.start_energy_mj == 0, "market: start energy not zero"
        assert o.start_seal == keccak256(abi_encode(job_id, convert(0, uint32), empty(bytes32))), "market: bad seal at boundary 0"
    start_len: uint256 = len(o.start_proof)
    assert start_len == self._proof_length(index, num_segments + 1), "market: bad start proof length"
    end_len: uint256 = self._proof_length(index + 1, num_segments + 1)
    assert len(o.end_proof) <= end_len and end_len - len(o.end_proof) <= start_len, "market: bad end proof length"
    full_end: DynArray[bytes32, MAX_PROOF] = o.end_proof
    for j: uint256 in range(start_len - (end_len - len(o.end_proof)), start_len, bound=MAX_PROOF):
        full_end.append(o.start_proof[j])
    assert merkle_proof_verification._verify(
        o.start_proof, ctx.root, self._leaf(job_id, o.index, o.start_hash, o.start_energy_mj, o.start_seal)
    ), "market: invalid start proof"
    assert merkle_proof_verification._verify(
        full_end, ctx.root, self._leaf(job_id, o.index + 1, o.end_hash, o.end_energy_mj, o.end_seal)
    ), "market: invalid end proof"
    if index + 1 == num_segments:
        assert o.end_hash == self._jobs[job_id].final_state_hash, "market: final state mismatch"
        assert o.end_energy_mj == self._jobs[job_id].terms >> 128, "market: final energy mismatch"
    log SegmentOpened(
        job_id=job_id,
        index=o.index,
        start_hash=o.start_hash,
        start_energy_mj=o.start_energy_mj,
        start_seal=o.start_seal,
        end_hash=o.end_hash,
        end_energy_mj=o.end_energy_mj,
        end_seal=o.end_seal,
    )
    return ctx


@internal
def _open_end(job_id: uint256, ctx: OpenCtx):
    self._jobs[job_id].audit = ctx.mask | (ctx.next_index << 64)
    self._jobs[job_id].seal_acc = ctx.seal_acc
    if ctx.mask == (1 << ctx.samples) - 1:
        self._jobs[job_id].head = self._with_state(ctx.head, STATE_VOTING)
        self._jobs[job_id].run = (ctx.run & (MASK160 | (MASK48 << 160))) | (block.timestamp << 208)
        extcall court.start_voting(job_id, ctx.seal_acc)


@internal
def _slash_provider_no_voters(job_id: uint256, head: uint256, reason: String[16]) -> uint256:
    """
    @dev Slashes the collateral of a job without voters (expired, unopened):
         requester credited payment + fee + its share; the rest funds the
         green bonus pool. The job's state is already final.
    """
    provider: address = self._addr(self._jobs[job_id].run)
    collateral: uint256 = self._jobs[job_id].terms & MASK112
    money: uint256 = self._jobs[job_id].money
    extcall stake_manager.unlock(provider, collateral)
    slashed: uint256 = extcall stake_manager.slash(provider, collateral, self)
    to_requester: uint256 = slashed * self.requester_share_bps // BPS
    self.claimable[self._addr(head)] += (money & MASK128) + (money >> 128) + to_requester
    log ProviderSlashed(job_id=job_id, provider=provider, amount=slashed, reason=reason)
    to_pool: uint256 = slashed - to_requester
    if to_pool > 0:
        assert extcall token.approve(registry.address, to_pool, default_return_value=True), "market: approve failed"
        extcall registry.fund_pool(to_pool)
    return slashed


@internal
def _set_parameter(param: uint256, name: String[20], old: uint256, new: uint256) -> uint256:
    """
    @dev Checks the owner and the hard bounds of parameter `param`, logs the
         change and returns `new`. For the two timing parameters it checks
         that `max_job_lifetime` with the new value stays below the
         StakeManager's unbonding period.
    """
    ownable._check_owner()
    assert new >= PARAM_MIN[param] and new <= PARAM_MAX[param], "market: parameter out of bounds"
    if param == P_OPEN_WINDOW or param == P_MAX_JOB_DURATION:
        assert self._max_job_lifetime() - old + new < staticcall stake_manager.unbonding_period(), "market: lifetime exceeds unbonding"
    log ParameterSet(name=name, old_value=old, new_value=new)
    return new


@view
@internal
def _indices(seed: bytes32, job_id: uint256, num_segments: uint256, samples: uint256) -> DynArray[uint32, MAX_AUDIT_SAMPLES]:
    out: DynArray[uint32, MAX_AUDIT_SAMPLES] = []
    for j: uint256 in range(samples, bound=MAX_AUDIT_SAMPLES):
        out.append(convert(convert(keccak256(abi_encode(seed, job_id, j)), uint256) % num_segments, uint32))
    return out


@pure
@internal
def _bits_of(indices: DynArray[uint32, MAX_AUDIT_SAMPLES], index: uint32) -> uint256:
    bits: uint256 = 0
    for j: uint256 in range(len(indices), bound=MAX_AUDIT_SAMPLES):
        if indices[j] == index:
            bits |= 1 << j
    return bits


@pure
@internal
def _leaf(job_id: uint256, k: uint32, state_hash: bytes32, energy_mj: uint256, seal: bytes32) -> bytes32:
    return keccak256(keccak256(abi_encode(job_id, k, state_hash, energy_mj, seal)))


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


@view
@internal
def _max_job_lifetime() -> uint256:
    return self.max_job_duration + self.open_window + staticcall court.max_voting_time() + LIFETIME_MARGIN


@view
@internal
def _check_lifetime():
    assert self._max_job_lifetime() < staticcall stake_manager.unbonding_period(), "market: lifetime exceeds unbonding"


@internal
def _transfer(to: address, amount: uint256):
    assert extcall token.transfer(to, amount, default_return_value=True), "market: transfer failed"


@pure
@internal
def _state(head: uint256) -> uint8:
    return convert((head >> 160) & 255, uint8)


@pure
@internal
def _with_state(head: uint256, state: uint8) -> uint256:
    return (head & ~(convert(255, uint256) << 160)) | (convert(state, uint256) << 160)


@pure
@internal
def _addr(word: uint256) -> address:
    return convert(convert(word & MASK160, uint160), address)
