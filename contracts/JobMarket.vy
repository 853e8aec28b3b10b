# pragma version ~=0.4.3
# pragma optimize codesize
"""
@title JobMarket
@custom:contract-name JobMarket
@license GNU Affero General Public License v3.0 only
@notice Escrow and state machine of greenproof training jobs (docs/protocol.md §2.3).
        Guarantees:
        - a job's `payment + verifier_fee` sits in escrow from `post_job` until
          the job ends, and is paid out exactly once (cancel, expire, unopened
          slash or finalize);
        - the provider's `collateral` is locked in the StakeManager from
          `accept_job` until the job ends, and is slashed when the provider
          misses the deadline, fails to open an audited segment in time, or
          loses the fraud vote;
        - audited segments are drawn from a block hash that did not exist when
          the result was committed; openings are Merkle-verified against the
          committed root in the leaf format of docs/protocol.md §3;
        - `finalize` is O(1): it never loops over voters; each vote is settled
          by its own `settle_vote` call;
        - no token is created or lost: every base unit that enters (escrow,
          slashed stake, green bonus) is credited to exactly one claimable
          balance (pull payments, `withdraw`) or to the green bonus pool.

        Job states (`job_state`, `Job.state`):
          0 NONE (no such job), 1 OPEN, 2 ACCEPTED, 3 COMMITTED, 4 AUDITING,
          5 VOTING, 6 PAID, 7 SLASHED, 8 CANCELLED, 9 EXPIRED.

        Money rules (all divisions round down; the rounding rest is named):
        - cancel: requester refunded payment + fee.
        - expire / unopened slash: the provider's collateral is slashed
          (`s` = what the StakeManager could take); the requester is credited
          payment + fee + `s * requester_share_bps / 10000`; the rest of `s`
          goes to the GreenRegistry bonus pool (there are no voters to reward).
        - finalize, no revealed vote: provider credited payment + green bonus;
          the fee goes back to the requester.
        - finalize, `fraud_weight > ok_weight`: collateral slashed; requester
          credited payment + `s * requester_share_bps / 10000`; the winners'
          pot (fraud voters) is the fee + the rest of `s`.
        - finalize, otherwise: provider credited payment + green bonus; the
          winners' pot (ok voters) is the fee.
        - `settle_vote`, a non-winning vote (the losing side, or committed but
          never revealed): `vote_stake * voter_slash_bps / 10000` is slashed
          into the winners' pot; when the job has no winners left to settle
          (no winner at all, or all already settled) it goes to the requester.
        - `settle_vote`, a winning vote: credited `pot * weight / weight_left`
          of the pot as it stands, so the last winner settled takes the
          remainder (no dust). Winners can be settled once every non-winning
          vote is settled, or after a grace of `vote_reveal_window` seconds
          after finalize (so nobody can settle winners early on purpose to
          divert penalties to the requester, and a flood of losing votes only
          delays winners by the grace).
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
     Compiled with `optimize codesize` to stay under the EIP-170 size limit.
"""


# INTERFACES #

from ethereum.ercs import IERC20

from snekmate.auth import ownable
from snekmate.auth import ownable_2step
from snekmate.utils import merkle_proof_verification

from .interfaces import IGreenRegistry
from .interfaces import IJobMarket
from .interfaces import IStakeManager

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
    end_hash: bytes32
    end_energy_mj: uint256


event VotingStarted:
    job_id: indexed(uint256)
    commit_end: uint256
    reveal_end: uint256


event VoteCommitted:
    job_id: indexed(uint256)
    voter: indexed(address)
    weight: uint256


event VoteRevealed:
    job_id: indexed(uint256)
    voter: indexed(address)
    fraud: bool
    weight: uint256


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


event VoteSettled:
    job_id: indexed(uint256)
    voter: indexed(address)
    won: bool
    reward: uint256
    penalty: uint256


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

# Vote status (low byte of the vote's packed word, bits 128..135).
VOTE_NONE: constant(uint256) = 0
VOTE_COMMITTED: constant(uint256) = 1
VOTE_OK: constant(uint256) = 2
VOTE_FRAUD: constant(uint256) = 3

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
MAX_VOTER_SLASH_BPS: constant(uint256) = 5_000
MIN_JOB_DURATION: constant(uint256) = 60
MAX_JOB_DURATION: constant(uint256) = 180 * 86400
MAX_AMOUNT: constant(uint256) = 2**128 - 1

# Parameter ids (index into PARAM_MIN / PARAM_MAX).
P_SEED_LOOKAHEAD: constant(uint256) = 0
P_OPEN_WINDOW: constant(uint256) = 1
P_VOTE_COMMIT_WINDOW: constant(uint256) = 2
P_VOTE_REVEAL_WINDOW: constant(uint256) = 3
P_MAX_AUDIT_SAMPLES: constant(uint256) = 4
P_MIN_COLLATERAL_BPS: constant(uint256) = 5
P_MIN_VERIFIER_STAKE: constant(uint256) = 6
P_MAX_VOTE_STAKE: constant(uint256) = 7
P_VOTER_SLASH_BPS: constant(uint256) = 8
P_REQUESTER_SHARE_BPS: constant(uint256) = 9
P_MAX_JOB_DURATION: constant(uint256) = 10
# @dev Inclusive hard bounds; min_verifier_stake <= max_vote_stake is
#      enforced against the other's current value.
PARAM_MIN: constant(uint256[11]) = [
    MIN_SEED_LOOKAHEAD, MIN_WINDOW, MIN_WINDOW, MIN_WINDOW, 1, MIN_COLLATERAL_BPS_FLOOR, 1, 1, 0, 0, MIN_JOB_DURATION
]
PARAM_MAX: constant(uint256[11]) = [
    MAX_SEED_LOOKAHEAD,
    MAX_WINDOW,
    MAX_WINDOW,
    MAX_WINDOW,
    MAX_AUDIT_SAMPLES,
    MIN_COLLATERAL_BPS_CEIL,
    MAX_AMOUNT,
    MAX_AMOUNT,
    MAX_VOTER_SLASH_BPS,
    BPS,
    MAX_JOB_DURATION,
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
#      audit = opened_mask(0..63) | n_votes(64..95) | n_ok(96..127) | n_fraud(128..159)
#      tally = ok_weight(0..127) | fraud_weight(128..255)
#      settle = winner_weight_left(0..127) | winners_left(128..159)
#               | nonwinners_left(160..191) | finalized_at(192..239) | fraud_won(240)
#      pot   = tokens held for the winning voters, not yet credited
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
    tally: uint256
    settle: uint256
    pot: uint256


# @notice A job as `get_job` returns it.
# @dev Fields: `requester`, `provider` (empty until accepted), `state` (see
#      the states above), `spec_hash`, `num_segments`, `audit_samples`,
#      `payment`, `verifier_fee`, `collateral`, `deadline` (unix s),
#      `min_green_bps`, `root`, `final_state_hash`, `energy_mj` (set by
#      `commit_result`), `seed_block` (block whose hash seeds the draw),
#      `seed` (set by `draw_audit`), `open_deadline` (end of the open window,
#      AUDITING), `voting_start` (VOTING on), `opened_mask` (bit `j` set when
#      the `j`-th audited index is open), `n_votes`, `ok_weight`,
#      `fraud_weight` (revealed vote stake on each side).
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
    root: bytes32
    final_state_hash: bytes32
    energy_mj: uint256
    seed_block: uint256
    seed: bytes32
    open_deadline: uint256
    voting_start: uint256
    opened_mask: uint256
    n_votes: uint256
    ok_weight: uint256
    fraud_weight: uint256


# @notice One segment opening for `open_segments`.
struct Opening:
    index: uint32
    start_hash: bytes32
    start_energy_mj: uint256
    end_hash: bytes32
    end_energy_mj: uint256
    start_proof: DynArray[bytes32, MAX_PROOF]
    end_proof: DynArray[bytes32, MAX_PROOF]


# @dev Working state of an `open_segment(s)` call.
struct OpenCtx:
    head: uint256
    run: uint256
    audit: uint256
    mask: uint256
    num_segments: uint256
    samples: uint256
    root: bytes32
    indices: DynArray[uint32, MAX_AUDIT_SAMPLES]


# @dev One vote: info = weight(0..127) | status(128..135) | settled(136).
struct VoteSlots:
    commitment: bytes32
    info: uint256


# @notice A vote as `vote_of` returns it. `status`: 0 none, 1 committed,
#         2 revealed "ok", 3 revealed "fraud".
struct VoteView:
    commitment: bytes32
    weight: uint256
    status: uint256
    settled: bool


# STORAGE #

token: public(immutable(IERC20))
stake_manager: public(immutable(IStakeManager))
registry: public(immutable(IGreenRegistry))

# @notice Blocks between `commit_result` and the block whose hash seeds the
#         audit draw. Default 2, bounds [1, 64].
seed_lookahead: public(uint256)
# @notice Seconds after the draw to open every audited segment.
#         Default 3600, bounds [10, 604800].
open_window: public(uint256)
# @notice Seconds of the vote commit window from voting start.
#         Default 3600, bounds [10, 604800].
vote_commit_window: public(uint256)
# @notice Seconds of the reveal window after the commit window; also the
#         grace before winners may be settled ahead of non-winners.
#         Default 3600, bounds [10, 604800].
vote_reveal_window: public(uint256)
# @notice Most audit samples a job may ask for. Default 32, bounds [1, 64].
max_audit_samples: public(uint256)
# @notice Least collateral, in bps of the payment. Default 10000 (collateral
#         >= payment), bounds [1000, 100000].
min_collateral_bps: public(uint256)
# @notice Least free stake to vote. Default 1e18, bounds [1, max_vote_stake].
min_verifier_stake: public(uint256)
# @notice Most stake a vote locks (its weight). Default 1000e18,
#         bounds [min_verifier_stake, 2**128 - 1].
max_vote_stake: public(uint256)
# @notice Share of its vote stake a non-winning vote loses. Default 1000
#         (10 %), bounds [0, 5000].
voter_slash_bps: public(uint256)
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
_votes: HashMap[uint256, HashMap[address, VoteSlots]]


# CONSTRUCTOR #

@deploy
def __init__(token_: address, stake_manager_: address, registry_: address):
    """
    @notice Deploys the market with the default parameters; the deployer
            becomes the owner. Wire it afterwards with
            `StakeManager.set_market` and `GreenRegistry.set_market`.
    @dev Reverts unless the StakeManager's `unbonding_period` exceeds
         `max_job_lifetime()` at the defaults (7 d + 3 x 1 h + 1 h = 619200 s).
    @param token_ The settlement ERC20 token.
    @param stake_manager_ The StakeManager (same token).
    @param registry_ The GreenRegistry (same token).
    """
    assert token_ != empty(address), "market: token is zero address"
    assert staticcall IStakeManager(stake_manager_).token() == token_, "market: stake token mismatch"
    assert staticcall IGreenRegistry(registry_).token() == token_, "market: registry token mismatch"
    ownable.__init__()
    ownable_2step.__init__()
    token = IERC20(token_)
    stake_manager = IStakeManager(stake_manager_)
    registry = IGreenRegistry(registry_)
    self.seed_lookahead = 2
    self.open_window = 3600
    self.vote_commit_window = 3600
    self.vote_reveal_window = 3600
    self.max_audit_samples = 32
    self.min_collateral_bps = 10_000
    self.min_verifier_stake = 10**18
    self.max_vote_stake = 1000 * 10**18
    self.voter_slash_bps = 1_000
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
    @notice Accepts an OPEN job: locks `collateral` of the caller's free stake.
    @dev If the job sets `min_green_bps`, the caller's attestation in force must
         meet it.
    @param job_id The job.
    @param determinism_class The provider's determinism class (emitted only).
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
    self._jobs[job_id].head = self._with_state(head, STATE_ACCEPTED)
    self._jobs[job_id].run = convert(msg.sender, uint256)
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
    end_hash: bytes32,
    end_energy_mj: uint256,
    start_proof: DynArray[bytes32, MAX_PROOF],
    end_proof: DynArray[bytes32, MAX_PROOF],
):
    """
    @notice Opens one audited segment: reveals the leaves of boundaries
            `index` and `index + 1` with their Merkle proofs.
    @dev See `open_segments` for the rules.
    @param job_id The job (AUDITING, caller its provider, inside the open window).
    @param index The audited segment.
    @param start_hash state_hash at boundary `index`.
    @param start_energy_mj Cumulative energy at boundary `index`.
    @param end_hash state_hash at boundary `index + 1`.
    @param end_energy_mj Cumulative energy at boundary `index + 1`.
    @param start_proof Proof of leaf `index`.
    @param end_proof Proof of leaf `index + 1`.
    """
    ctx: OpenCtx = self._open_begin(job_id)
    ctx.mask = self._mark(ctx.mask, self._bits_of(ctx.indices, index))
    self._open_one(job_id, ctx.root, ctx.num_segments, index, start_hash, start_energy_mj, end_hash, end_energy_mj, start_proof, end_proof)
    self._open_end(job_id, ctx)


@external
def open_segments(job_id: uint256, openings: DynArray[Opening, MAX_OPENINGS]):
    """
    @notice Opens several audited segments in one transaction. When every
            audited index is open the job moves to VOTING.
    @dev Per opening: `index` is an audited index not opened yet; both leaves
         verify against `root` with proofs of the canonical length; `end_energy_mj >= start_energy_mj`; boundary 0 has
         energy 0; the last segment ends at `final_state_hash` / `energy_mj`.
    @param job_id The job (AUDITING, caller its provider, inside the open window).
    @param openings The segments to open, 1 to `MAX_OPENINGS` (16).
    """
    assert len(openings) > 0, "market: no openings"
    ctx: OpenCtx = self._open_begin(job_id)
    for o: Opening in openings:
        ctx.mask = self._mark(ctx.mask, self._bits_of(ctx.indices, o.index))
        self._open_one(
            job_id, ctx.root, ctx.num_segments, o.index, o.start_hash, o.start_energy_mj, o.end_hash, o.end_energy_mj, o.start_proof, o.end_proof
        )
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
            the open window (reason "unopened"); the job ends SLASHED.
    @dev Same split as `expire_job`. Anyone may call.
    @param job_id The job.
    """
    head: uint256 = self._jobs[job_id].head
    assert self._state(head) == STATE_AUDITING, "market: job not auditing"
    run: uint256 = self._jobs[job_id].run
    assert block.timestamp >= (run >> 208) + self.open_window, "market: open window not passed"
    self._jobs[job_id].head = self._with_state(head, STATE_SLASHED)
    self._slash_provider_no_voters(job_id, head, "unopened")


# EXTERNAL: AUDIT DRAW #

@external
def draw_audit(job_id: uint256):
    """
    @notice Draws the audited segments from `blockhash(seed_block)` and starts
            the open window. If that block is more than 256 blocks old its hash
            is gone: the draw re-arms `seed_block = now + seed_lookahead`
            (event `AuditRearmed`) instead of reverting.
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


# EXTERNAL: VOTING #

@external
def commit_vote(job_id: uint256, commitment: bytes32):
    """
    @notice Commits a sealed vote and locks its weight
            `min(free_stake, max_vote_stake)` of the caller's stake.
    @dev `commitment = keccak256(abi_encode(job_id, voter, fraud, salt))`
         (`uint256, address, bool, bytes32`). One vote per verifier per job;
         the job's requester and provider may not vote.
    @param job_id The job (VOTING, inside the commit window).
    @param commitment The sealed vote, non-zero.
    """
    head: uint256 = self._jobs[job_id].head
    assert self._state(head) == STATE_VOTING, "market: job not voting"
    run: uint256 = self._jobs[job_id].run
    assert block.timestamp < (run >> 208) + self.vote_commit_window, "market: commit window closed"
    assert msg.sender != self._addr(head) and msg.sender != self._addr(run), "market: job party cannot vote"
    assert commitment != empty(bytes32), "market: empty commitment"
    assert self._votes[job_id][msg.sender].info == 0, "market: already voted"
    free: uint256 = staticcall stake_manager.free_stake(msg.sender)
    assert free >= self.min_verifier_stake, "market: insufficient verifier stake"
    weight: uint256 = min(free, self.max_vote_stake)
    self._votes[job_id][msg.sender] = VoteSlots(commitment=commitment, info=weight | (VOTE_COMMITTED << 128))
    self._jobs[job_id].audit += 1 << 64
    log VoteCommitted(job_id=job_id, voter=msg.sender, weight=weight)
    extcall stake_manager.lock(msg.sender, weight)


@external
def reveal_vote(job_id: uint256, fraud: bool, salt: bytes32):
    """
    @notice Reveals the caller's vote; its weight joins the tally.
    @param job_id The job (VOTING, inside the reveal window).
    @param fraud True for "the audited work is fraudulent".
    @param salt The salt of the commitment.
    """
    head: uint256 = self._jobs[job_id].head
    assert self._state(head) == STATE_VOTING, "market: job not voting"
    commit_end: uint256 = ((self._jobs[job_id].run) >> 208) + self.vote_commit_window
    assert block.timestamp >= commit_end, "market: reveal window not open"
    assert block.timestamp < commit_end + self.vote_reveal_window, "market: reveal window closed"
    vote: VoteSlots = self._votes[job_id][msg.sender]
    status: uint256 = (vote.info >> 128) & 255
    assert status != VOTE_NONE, "market: no vote committed"
    assert status == VOTE_COMMITTED, "market: already revealed"
    assert keccak256(abi_encode(job_id, msg.sender, fraud, salt)) == vote.commitment, "market: commitment mismatch"
    weight: uint256 = vote.info & MASK128
    # ok: status 2, tally bits 0..127, n_ok bits 96..127; fraud: status 3,
    # tally bits 128..255, n_fraud bits 128..159.
    side: uint256 = convert(fraud, uint256)
    self._votes[job_id][msg.sender].info = weight | ((VOTE_OK + side) << 128)
    self._jobs[job_id].tally += weight << (128 * side)
    self._jobs[job_id].audit += 1 << (96 + 32 * side)
    log VoteRevealed(job_id=job_id, voter=msg.sender, fraud=fraud, weight=weight)


@external
@nonreentrant
def finalize(job_id: uint256):
    """
    @notice Decides a VOTING job after the reveal window, in O(1):
            no revealed vote -> PAID (optimistic, fee back to the requester);
            `fraud_weight > ok_weight` -> SLASHED (reason "fraud");
            otherwise -> PAID. Votes are then settled with `settle_vote`.
    @dev Paid: the provider is credited payment + the green bonus
         (`GreenRegistry.pay_bonus`, capped by the pool). `JobFinalized`
         reports the energy and `carbon_g = energy_mj * carbon_intensity /
         3_600_000_000`; both are 0 for a slashed job (its claim is void).
    @param job_id The job.
    """
    head: uint256 = self._jobs[job_id].head
    assert self._state(head) == STATE_VOTING, "market: job not voting"
    run: uint256 = self._jobs[job_id].run
    assert block.timestamp >= (run >> 208) + self.vote_commit_window + self.vote_reveal_window, "market: voting not over"
    requester: address = self._addr(head)
    provider: address = self._addr(run)
    money: uint256 = self._jobs[job_id].money
    payment: uint256 = money & MASK128
    fee: uint256 = money >> 128
    terms: uint256 = self._jobs[job_id].terms
    collateral: uint256 = terms & MASK112
    audit: uint256 = self._jobs[job_id].audit
    n_votes: uint256 = (audit >> 64) & MASK32
    tally: uint256 = 0
    if n_votes > 0:
        tally = self._jobs[job_id].tally
    ok_weight: uint256 = tally & MASK128
    fraud_weight: uint256 = tally >> 128

    if fraud_weight > ok_weight:
        self._jobs[job_id].head = self._with_state(head, STATE_SLASHED)
        extcall stake_manager.unlock(provider, collateral)
        slashed: uint256 = extcall stake_manager.slash(provider, collateral, self)
        to_requester: uint256 = slashed * self.requester_share_bps // BPS
        self.claimable[requester] += payment + to_requester
        n_fraud: uint256 = (audit >> 128) & MASK32
        self._jobs[job_id].pot = fee + slashed - to_requester
        self._jobs[job_id].settle = (
            fraud_weight | (n_fraud << 128) | ((n_votes - n_fraud) << 160) | (block.timestamp << 192) | (1 << 240)
        )
        log ProviderSlashed(job_id=job_id, provider=provider, amount=slashed, reason="fraud")
        log JobFinalized(job_id=job_id, outcome=STATE_SLASHED, paid=0, bonus=0, energy_mj=0, carbon_g=0)
        return

    self._jobs[job_id].head = self._with_state(head, STATE_PAID)
    extcall stake_manager.unlock(provider, collateral)
    bonus: uint256 = extcall registry.pay_bonus(provider, payment)
    self.claimable[provider] += payment + bonus
    if ok_weight == 0:
        # No revealed vote: optimistic payout, the fee goes back.
        self.claimable[requester] += fee
        if n_votes > 0:
            self._jobs[job_id].settle = (n_votes << 160) | (block.timestamp << 192)
    else:
        n_ok: uint256 = (audit >> 96) & MASK32
        self._jobs[job_id].pot = fee
        self._jobs[job_id].settle = (
            ok_weight | (n_ok << 128) | ((n_votes - n_ok) << 160) | (block.timestamp << 192)
        )
    energy_mj: uint256 = terms >> 128
    carbon_g: uint256 = energy_mj * staticcall registry.carbon_intensity_of(provider) // MJ_PER_KWH
    log JobFinalized(job_id=job_id, outcome=STATE_PAID, paid=payment, bonus=bonus, energy_mj=energy_mj, carbon_g=carbon_g)


@external
@nonreentrant
def settle_vote(job_id: uint256, voter: address):
    """
    @notice Settles one vote of a finalized job and unlocks its stake.
            A non-winning vote (losing side, or never revealed) loses
            `voter_slash_bps` of its weight into the winners' pot (or to the
            requester when no winner is left to settle). A winning vote is
            credited `pot * weight / winner_weight_left`.
    @dev Anyone may call. Winners are settled after every non-winning vote,
         or after a grace of `vote_reveal_window` seconds from finalize.
    @param job_id The job (PAID or SLASHED by `finalize`).
    @param voter The voter.
    """
    head: uint256 = self._jobs[job_id].head
    state: uint8 = self._state(head)
    assert state == STATE_PAID or state == STATE_SLASHED, "market: job not finalized"
    info: uint256 = self._votes[job_id][voter].info
    status: uint256 = (info >> 128) & 255
    assert status != VOTE_NONE, "market: no vote"
    assert (info >> 136) & 1 == 0, "market: vote already settled"
    self._votes[job_id][voter].info = info | (1 << 136)
    weight: uint256 = info & MASK128
    settle: uint256 = self._jobs[job_id].settle
    fraud_won: bool = (settle >> 240) & 1 == 1
    winners_left: uint256 = (settle >> 128) & MASK32
    won: bool = (status == VOTE_FRAUD and fraud_won) or (status == VOTE_OK and not fraud_won)

    if won:
        nonwinners_left: uint256 = (settle >> 160) & MASK32
        finalized_at: uint256 = (settle >> 192) & MASK48
        assert nonwinners_left == 0 or block.timestamp >= finalized_at + self.vote_reveal_window, "market: non-winning votes unsettled"
        weight_left: uint256 = settle & MASK128
        pot: uint256 = self._jobs[job_id].pot
        reward: uint256 = pot
        if winners_left > 1:
            reward = pot * weight // weight_left
        self._jobs[job_id].pot = pot - reward
        # winners_left -= 1, winner_weight_left -= weight
        self._jobs[job_id].settle = settle - (1 << 128) - weight
        self.claimable[voter] += reward
        log VoteSettled(job_id=job_id, voter=voter, won=True, reward=reward, penalty=0)
        extcall stake_manager.unlock(voter, weight)
        return

    self._jobs[job_id].settle = settle - (1 << 160)
    extcall stake_manager.unlock(voter, weight)
    penalty: uint256 = weight * self.voter_slash_bps // BPS
    slashed: uint256 = 0
    if penalty > 0:
        slashed = extcall stake_manager.slash(voter, penalty, self)
        if winners_left > 0:
            self._jobs[job_id].pot += slashed
        else:
            self.claimable[self._addr(head)] += slashed
    log VoteSettled(job_id=job_id, voter=voter, won=False, reward=0, penalty=slashed)


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
def set_vote_commit_window(seconds: uint256):
    """
    @notice Sets `vote_commit_window` (seconds), bounds [10, 604800]; `max_job_lifetime` must stay below the unbonding period.
    @dev Owner only; emits `ParameterSet("vote_commit_window", old, new)`.
    @param seconds The new value.
    """
    self.vote_commit_window = self._set_parameter(P_VOTE_COMMIT_WINDOW, "vote_commit_window", self.vote_commit_window, seconds)


@external
def set_vote_reveal_window(seconds: uint256):
    """
    @notice Sets `vote_reveal_window` (seconds), bounds [10, 604800]; `max_job_lifetime` must stay below the unbonding period.
    @dev Owner only; emits `ParameterSet("vote_reveal_window", old, new)`.
    @param seconds The new value.
    """
    self.vote_reveal_window = self._set_parameter(P_VOTE_REVEAL_WINDOW, "vote_reveal_window", self.vote_reveal_window, seconds)


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
def set_min_verifier_stake(amount: uint256):
    """
    @notice Sets `min_verifier_stake` (token base units), bounds [1, max_vote_stake].
    @dev Owner only; emits `ParameterSet("min_verifier_stake", old, new)`.
    @param amount The new value.
    """
    self.min_verifier_stake = self._set_parameter(P_MIN_VERIFIER_STAKE, "min_verifier_stake", self.min_verifier_stake, amount)


@external
def set_max_vote_stake(amount: uint256):
    """
    @notice Sets `max_vote_stake` (token base units), bounds [min_verifier_stake, 2**128 - 1].
    @dev Owner only; emits `ParameterSet("max_vote_stake", old, new)`.
    @param amount The new value.
    """
    self.max_vote_stake = self._set_parameter(P_MAX_VOTE_STAKE, "max_vote_stake", self.max_vote_stake, amount)


@external
def set_voter_slash_bps(bps: uint256):
    """
    @notice Sets `voter_slash_bps`, bounds [0, 5000]; applies to votes settled from now on.
    @dev Owner only; emits `ParameterSet("voter_slash_bps", old, new)`.
    @param bps The new value.
    """
    self.voter_slash_bps = self._set_parameter(P_VOTER_SLASH_BPS, "voter_slash_bps", self.voter_slash_bps, bps)


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
            + vote_commit_window + vote_reveal_window + LIFETIME_MARGIN`.
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
        root=s.root,
        final_state_hash=s.final_state_hash,
        energy_mj=s.terms >> 128,
        seed_block=(s.run >> 160) & MASK48,
        seed=s.seed,
        open_deadline=open_deadline,
        voting_start=voting_start,
        opened_mask=s.audit & MASK64,
        n_votes=(s.audit >> 64) & MASK32,
        ok_weight=s.tally & MASK128,
        fraud_weight=s.tally >> 128,
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


@view
@external
def vote_of(job_id: uint256, voter: address) -> VoteView:
    """
    @notice A voter's vote on a job.
    @param job_id The job.
    @param voter The voter.
    @return VoteView commitment, weight, status (0 none, 1 committed,
            2 revealed ok, 3 revealed fraud) and whether it is settled.
    """
    v: VoteSlots = self._votes[job_id][voter]
    return VoteView(
        commitment=v.commitment,
        weight=v.info & MASK128,
        status=(v.info >> 128) & 255,
        settled=(v.info >> 136) & 1 == 1,
    )


@pure
@external
def leaf_hash(job_id: uint256, k: uint32, state_hash: bytes32, energy_mj: uint256) -> bytes32:
    """
    @notice Leaf `k` of the commitment tree (docs/protocol.md §3):
            `keccak256(keccak256(abi_encode(job_id, k, state_hash, energy_mj)))`.
    @param job_id The job.
    @param k The boundary, `0 <= k <= num_segments`.
    @param state_hash state_hash at boundary `k`.
    @param energy_mj Cumulative energy at boundary `k`.
    @return bytes32 The leaf.
    """
    return self._leaf(job_id, k, state_hash, energy_mj)


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
        audit=audit,
        mask=audit & MASK64,
        num_segments=num_segments,
        samples=samples,
        root=self._jobs[job_id].root,
        indices=self._indices(self._jobs[job_id].seed, job_id, num_segments, samples),
    )


@pure
@internal
def _mark(mask: uint256, bits: uint256) -> uint256:
    assert bits != 0, "market: index not audited"
    assert mask & bits == 0, "market: segment already opened"
    return mask | bits


@internal
def _open_one(
    job_id: uint256,
    root: bytes32,
    num_segments: uint256,
    index32: uint32,
    start_hash: bytes32,
    start_energy_mj: uint256,
    end_hash: bytes32,
    end_energy_mj: uint256,
    start_proof: DynArray[bytes32, MAX_PROOF],
    end_proof: DynArray[bytes32, MAX_PROOF],
):
    """
    @dev `end_proof` may leave out its tail where it equals `start_proof`'s
         tail (above the level where the paths of leaves `index` and
         `index + 1` meet); the missing siblings are taken from `start_proof`.
         Either way the completed proof must have the canonical length and
         verify, so this only saves calldata.
    """
    index: uint256 = convert(index32, uint256)
    assert index < num_segments, "market: index out of range"
    assert end_energy_mj >= start_energy_mj, "market: energy not monotone"
    if index == 0:
        assert start_energy_mj == 0, "market: start energy not zero"
    start_len: uint256 = len(start_proof)
    assert start_len == self._proof_length(index, num_segments + 1), "market: bad start proof length"
    end_len: uint256 = self._proof_length(index + 1, num_segments + 1)
    assert len(end_proof) <= end_len and end_len - len(end_proof) <= start_len, "market: bad end proof length"
    full_end: DynArray[bytes32, MAX_PROOF] = end_proof
    for j: uint256 in range(start_len - (end_len - len(end_proof)), start_len, bound=MAX_PROOF):
        full_end.append(start_proof[j])
    assert merkle_proof_verification._verify(
        start_proof, root, self._leaf(job_id, index32, start_hash, start_energy_mj)
    ), "market: invalid start proof"
    assert merkle_proof_verification._verify(
        full_end, root, self._leaf(job_id, index32 + 1, end_hash, end_energy_mj)
    ), "market: invalid end proof"
    if index + 1 == num_segments:
        assert end_hash == self._jobs[job_id].final_state_hash, "market: final state mismatch"
        assert end_energy_mj == self._jobs[job_id].terms >> 128, "market: final energy mismatch"
    log SegmentOpened(
        job_id=job_id,
        index=index32,
        start_hash=start_hash,
        start_energy_mj=start_energy_mj,
        end_hash=end_hash,
        end_energy_mj=end_energy_mj,
    )


@internal
def _open_end(job_id: uint256, ctx: OpenCtx):
    self._jobs[job_id].audit = (ctx.audit & ~MASK64) | ctx.mask
    if ctx.mask == (1 << ctx.samples) - 1:
        self._jobs[job_id].head = self._with_state(ctx.head, STATE_VOTING)
        self._jobs[job_id].run = (ctx.run & (MASK160 | (MASK48 << 160))) | (block.timestamp << 208)
        commit_end: uint256 = block.timestamp + self.vote_commit_window
        log VotingStarted(job_id=job_id, commit_end=commit_end, reveal_end=commit_end + self.vote_reveal_window)


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
         change and returns `new`. For the four timing parameters it checks
         that `max_job_lifetime` with the new value stays below the
         StakeManager's unbonding period.
    """
    ownable._check_owner()
    lo: uint256 = PARAM_MIN[param]
    hi: uint256 = PARAM_MAX[param]
    if param == P_MIN_VERIFIER_STAKE:
        hi = self.max_vote_stake
    elif param == P_MAX_VOTE_STAKE:
        lo = self.min_verifier_stake
    assert new >= lo and new <= hi, "market: parameter out of bounds"
    if param == P_OPEN_WINDOW or param == P_VOTE_COMMIT_WINDOW or param == P_VOTE_REVEAL_WINDOW or param == P_MAX_JOB_DURATION:
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
def _leaf(job_id: uint256, k: uint32, state_hash: bytes32, energy_mj: uint256) -> bytes32:
    return keccak256(keccak256(abi_encode(job_id, k, state_hash, energy_mj)))


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
    return self.max_job_duration + self.open_window + self.vote_commit_window + self.vote_reveal_window + LIFETIME_MARGIN


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
