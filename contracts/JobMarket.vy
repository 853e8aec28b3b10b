# pragma version ~=0.4.3
# pragma optimize codesize
"""
@title JobMarket
@custom:contract-name JobMarket
@license GNU Affero General Public License v3.0 only
@notice Escrow and state machine of greenproof training jobs (docs/protocol.md §2.3);
        the vote is the VerifierCourt's (docs/court.md). Guarantees:
        - a job's `payment + verifier_fee + green_premium` sits in escrow from
          `post_job` until the job ends, and is paid out exactly once (cancel,
          expire, undrawn or unopened slash, finalize);
        - a job's terms (`open_window`, `draw_window`, `seed_lookahead`,
          `requester_share_bps` here, the court's windows, committee and
          penalties there) are fixed when it is accepted: a later parameter
          change applies to later jobs only;
        - every state that waits on someone has a deadline and an exit anyone
          may call (docs/protocol.md §2.3 "Deadlines and exits");
        - the provider's `collateral` is locked in the StakeManager from
          `accept_job` until the job ends, and is slashed when the provider
          misses the deadline, fails to open an audited segment in time, or
          the court decides FRAUD;
        - a job is accepted only in a determinism class whose court pool holds
          at least the court's `min_class_stake`;
        - audited segments are drawn from a block hash that did not exist when
          the result was committed, read from EIP-2935 history (8191 blocks)
          where the chain has it and `BLOCKHASH` (256) otherwise; a seed out
          of reach slashes the job as undrawn, so it can never be re-rolled;
          half the samples are uniform over segments, half uniform over the
          committed movement (the opened segment's bracket must hold the draw);
          openings come in ascending segment order,
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
        - cancel, or expire of an OPEN job: requester refunded payment + fee
          + premium.
        - expire / undrawn / unopened slash: the provider's collateral is
          slashed (`s` = what the StakeManager could take); the requester is
          credited payment + fee + premium + `s * requester_share_bps / 10000`;
          the rest of `s` goes to the GreenRegistry bonus pool (no seat
          judged the job).
        - finalize, FRAUD: collateral slashed; requester credited payment +
          fee + premium + `rs = s * requester_share_bps / 10000`; the pot of
          the fraud seats is `s - rs`.
        - finalize, OK: provider credited payment + `premium * green_bps /
          10000` (`green_bps` in force at commit) + the green bonus the
          requester's allowance covers; the requester gets the rest of the
          premium; the pot of the ok seats is the fee.
        - finalize, NO_DECISION: as OK but without a bonus (no committee
          judged the job ok), and the fee goes back to the requester.
        - the court fixes `reward_per_seat = pot // winning_seats`; the
          remainder goes to the requester at once; each winning seat is paid
          from the pot by `credit_from_pot`, each penalty (slashed to this
          contract by the court) is credited to the requester by
          `credit_penalty`.
@dev Storage is packed by hand (Vyper does not pack struct fields): see
     `JobSlots` for the bit layout. `spec_uri` and `result_uri` are only
     emitted, never stored. Ownership is snekmate's 2-step ownership. The
     draw and the checks of openings (Merkle proofs, brackets, canonical
     proof lengths) are the stateless AuditRules contract's, called
     statically: split by concern so that both stay under the size limit.
     Compiled with `optimize codesize` to keep 10 % of the EIP-170 size limit free.
"""


# INTERFACES #

from ethereum.ercs import IERC20

from snekmate.auth import ownable
from snekmate.auth import ownable_2step

from . import AuditRules
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
    green_premium: uint256


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
    move_total: uint256
    green_bps: uint256
    result_uri: String[MAX_URI]
    seed_block: uint256
    draw_deadline: uint256


event AuditDrawn:
    job_id: indexed(uint256)
    seed: bytes32
    indices: DynArray[uint32, MAX_AUDIT_SAMPLES]
    targets: DynArray[uint256, MAX_AUDIT_SAMPLES]
    open_deadline: uint256


event SegmentOpened:
    job_id: indexed(uint256)
    index: uint32
    start_hash: bytes32
    start_energy_mj: uint256
    start_move: uint256
    start_seal: bytes32
    end_hash: bytes32
    end_energy_mj: uint256
    end_move: uint256
    end_seal: bytes32


event JobFinalized:
    job_id: indexed(uint256)
    outcome: uint8
    paid: uint256
    bonus: uint256
    premium: uint256
    energy_mj: uint256
    carbon_mg: uint256


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

# @dev `VerifierCourt.decide` outcomes (0: next round drawn, 3: NO_DECISION
#      pay the provider without a bonus).
OUTCOME_OK: constant(uint8) = 1
OUTCOME_FRAUD: constant(uint8) = 2

# @dev Hard cap of `max_audit_samples` (the opened set is a 64-bit mask).
MAX_AUDIT_SAMPLES: public(constant(uint256)) = 64
# @dev Most openings in one `open_segments` call (bounds its memory). A job
#      with more distinct audited indices opens them in several calls.
MAX_OPENINGS: public(constant(uint256)) = 16
# @dev Longest `spec_uri` / `result_uri`. URIs are only emitted, never stored, so a
#      spec can travel on chain as a `data:` URI (a few hundred bytes to a few KiB).
MAX_URI: public(constant(uint256)) = 4096
BPS: constant(uint256) = 10_000
# @dev mJ per kWh / 1000: carbon_mg = energy_mj * g_per_kwh / MJ_PER_KWH_MG.
MJ_PER_KWH_MG: constant(uint256) = 3_600_000
# @dev Added to `max_job_lifetime` for slack (block times, the last call).
LIFETIME_MARGIN: public(constant(uint256)) = 3600
# @dev Blocks whose hash the `BLOCKHASH` opcode still serves.
BLOCKHASH_WINDOW: constant(uint256) = 256
# @dev EIP-2935 block-hash history: the system contract and how many blocks it serves.
HISTORY_CONTRACT: constant(address) = 0x0000F90827F1C53a10cb7A02335B175320002935
HISTORY_WINDOW: constant(uint256) = 8191

# Hard bounds of the owner-set parameters (inclusive).
MIN_SEED_LOOKAHEAD: constant(uint256) = 1
MAX_SEED_LOOKAHEAD: constant(uint256) = 64
MIN_WINDOW: constant(uint256) = 10
MAX_WINDOW: constant(uint256) = 7 * 86400
MIN_COLLATERAL_BPS_FLOOR: constant(uint256) = 1_000
MIN_COLLATERAL_BPS_CEIL: constant(uint256) = 100_000
MIN_JOB_DURATION: constant(uint256) = 60
MAX_JOB_DURATION: constant(uint256) = 180 * 86400
MIN_DRAW_WINDOW: constant(uint256) = 60
# @dev Least draw window per seed lookahead block (two 12 s slots).
SECONDS_PER_LOOKAHEAD_BLOCK: public(constant(uint256)) = 24
MAX_AMOUNT: constant(uint256) = 2**128 - 1

# Parameter ids (index into PARAM_MIN / PARAM_MAX).
P_SEED_LOOKAHEAD: constant(uint256) = 0
P_OPEN_WINDOW: constant(uint256) = 1
P_MAX_AUDIT_SAMPLES: constant(uint256) = 2
P_MIN_COLLATERAL_BPS: constant(uint256) = 3
P_REQUESTER_SHARE_BPS: constant(uint256) = 4
P_MAX_JOB_DURATION: constant(uint256) = 5
P_MIN_JOB_DURATION: constant(uint256) = 6
P_DRAW_WINDOW: constant(uint256) = 7
# @dev Inclusive hard bounds.
PARAM_MIN: constant(uint256[8]) = [
    MIN_SEED_LOOKAHEAD, MIN_WINDOW, 1, MIN_COLLATERAL_BPS_FLOOR, 0, MIN_JOB_DURATION, MIN_JOB_DURATION, MIN_DRAW_WINDOW
]
PARAM_MAX: constant(uint256[8]) = [
    MAX_SEED_LOOKAHEAD, MAX_WINDOW, MAX_AUDIT_SAMPLES, MIN_COLLATERAL_BPS_CEIL, BPS, MAX_JOB_DURATION, MAX_WINDOW, MAX_WINDOW
]
MAX_COLLATERAL: constant(uint256) = 2**112 - 1

MASK16: constant(uint256) = 2**16 - 1
MASK32: constant(uint256) = 2**32 - 1
MASK48: constant(uint256) = 2**48 - 1
MASK64: constant(uint256) = 2**64 - 1
MASK112: constant(uint256) = 2**112 - 1
MASK128: constant(uint256) = 2**128 - 1
MASK160: constant(uint256) = 2**160 - 1

# Job terms word (`JobSlots.jterms`), fixed by `accept_job`.
T_OPEN_AT: constant(uint256) = 0  # open_window, 32 bits
T_DRAW_AT: constant(uint256) = 32  # draw_window, 32 bits
T_SHARE_AT: constant(uint256) = 64  # requester_share_bps, 16 bits
T_LOOKAHEAD_AT: constant(uint256) = 80  # seed_lookahead, 8 bits


# STRUCTS #

# @dev Storage of one job, packed by hand:
#      head  = requester(0..159) | state(160..167) | audit_samples(168..175)
#              | num_segments(176..207) | deadline(208..255)
#      run   = provider(0..159) | seed_block(160..207) | phase_at(208..255)
#              (phase_at: the commit time in COMMITTED, the draw time in
#              AUDITING, voting start from VOTING)
#      money = payment(0..127) | verifier_fee(128..255)
#      terms = collateral(0..111) | min_green_bps(112..127) | energy_mj(128..255)
#      audit = opened_mask(0..63) | next_index(64..127) | move_floor(128..255)
#              (next_index: least segment the next opening may have;
#              move_floor: least start movement it may claim)
#      seal_acc = keccak256 chain of the opened segments' end seals
#      dclass   = the provider's determinism class (set by `accept_job`)
#      pot   = tokens held for the winning seats, not yet credited
#      green = green_premium(0..127) | green_bps at commit(128..143)
#      move_total = the committed movement `move_N` (< 2**128)
#      jterms = the job's terms (`T_*_AT`), court_terms = the court's terms
#               word, both copied by `accept_job`
#      last_leaf = the leaf of the last opening's end boundary (a later
#                  opening starting there must reveal the same leaf)
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
    green: uint256
    move_total: uint256
    jterms: uint256
    court_terms: uint256
    last_leaf: bytes32


# @notice A job as `get_job` returns it.
# @dev Fields: `requester`, `provider` (empty until accepted), `state` (see
#      the states above), `spec_hash`, `num_segments`, `audit_samples`,
#      `payment`, `verifier_fee`, `collateral`, `deadline` (unix s),
#      `min_green_bps`, `determinism_class` (set by `accept_job`), `root`,
#      `final_state_hash`, `energy_mj`, `move_total`, `green_bps` (set by
#      `commit_result`), `seed_block` (block whose hash seeds the draw),
#      `draw_deadline` (COMMITTED: draw by then or be slashed as undrawn),
#      `seed` (set by `draw_audit`), `open_deadline` (end of the open window,
#      AUDITING), `voting_start` (VOTING on: when round 0 of the court
#      started), `opened_mask` (bit `j` set when the `j`-th sample is
#      satisfied), `next_open_index` (least segment the next opening may
#      have), `seal_acc` (the end seals of the opened segments, chained),
#      `pot` (tokens left for the winning seats once finalized),
#      `green_premium`, and the terms fixed at acceptance (`open_window`,
#      `draw_window`, `requester_share_bps`, `seed_lookahead`, `court_terms`).
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
    green_premium: uint256
    determinism_class: bytes32
    root: bytes32
    final_state_hash: bytes32
    energy_mj: uint256
    move_total: uint256
    green_bps: uint256
    seed_block: uint256
    draw_deadline: uint256
    seed: bytes32
    open_deadline: uint256
    voting_start: uint256
    opened_mask: uint256
    next_open_index: uint256
    seal_acc: bytes32
    pot: uint256
    open_window: uint256
    draw_window: uint256
    requester_share_bps: uint256
    seed_lookahead: uint256
    court_terms: uint256


# STORAGE #

token: public(immutable(IERC20))
stake_manager: public(immutable(IStakeManager))
registry: public(immutable(IGreenRegistry))
# @notice The VerifierCourt that judges every audited job.
court: public(immutable(IVerifierCourt))
# @notice The stateless AuditRules: the draw and the checks of openings.
audit_rules: public(immutable(AuditRules.__interface__))

# @notice Blocks between `commit_result` and the block whose hash seeds the
#         audit draw. Default 2, bounds [1, 64]. Fixed per job at acceptance.
seed_lookahead: public(uint256)
# @notice Seconds after the draw to open every audited segment.
#         Default 3600, bounds [10, 604800]. Fixed per job at acceptance.
open_window: public(uint256)
# @notice Seconds after `commit_result` within which the job must be drawn
#         (by its provider, or anyone); after it, or once the seed block's
#         hash is out of reach, the job is slashed as undrawn. Default 3600,
#         bounds [60, 604800]. Fixed per job at acceptance.
draw_window: public(uint256)
# @notice Most audit samples a job may ask for. Default 48, bounds [1, 64].
max_audit_samples: public(uint256)
# @notice Least collateral, in bps of the payment. Default 10000 (collateral
#         >= payment), bounds [1000, 100000].
min_collateral_bps: public(uint256)
# @notice Share of slashed collateral that goes to the requester. Default
#         5000 (50 %), bounds [0, 10000]. Fixed per job at acceptance.
requester_share_bps: public(uint256)
# @notice Longest `deadline - now` at posting. Default 604800 (7 days),
#         bounds [60, 15552000].
max_job_duration: public(uint256)
# @notice Shortest `deadline - now` at posting (no bait jobs due at once).
#         Default 300, bounds [60, 604800], at most `max_job_duration`.
min_job_duration: public(uint256)
# @dev The longest stake lock any accepted job was given (see `max_job_lifetime`).
_lifetime_high: uint256

# @notice Id the next posted job gets (ids start at 1).
next_job_id: public(uint256)
# @notice Tokens an account can `withdraw`.
claimable: public(HashMap[address, uint256])

_jobs: HashMap[uint256, JobSlots]


# CONSTRUCTOR #

@deploy
def __init__(token_: address, stake_manager_: address, registry_: address, court_: address, audit_rules_: address):
    """
    @notice Deploys the market with the default parameters; the deployer
            becomes the owner. Wire it afterwards with
            `StakeManager.set_market`, `GreenRegistry.set_market` and
            `VerifierCourt.set_market`.
    @dev Reverts unless the StakeManager's `unbonding_period` exceeds
         `max_job_lifetime()` at the defaults (7 d + 1 h draw + 1 h open +
         the court's 3 x 2 h + 1 h = 637200 s).
    @param token_ The settlement ERC20 token.
    @param stake_manager_ The StakeManager (same token).
    @param registry_ The GreenRegistry (same token).
    @param court_ The VerifierCourt (same StakeManager).
    @param audit_rules_ The AuditRules contract.
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
    assert audit_rules_.is_contract, "market: audit rules not a contract"
    audit_rules = AuditRules.__interface__(audit_rules_)
    self.seed_lookahead = 2
    self.open_window = 3600
    self.max_audit_samples = 48
    self.min_collateral_bps = 10_000
    self.requester_share_bps = 5_000
    self.max_job_duration = 7 * 86400
    self.min_job_duration = 300
    self.draw_window = 3600
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
    green_premium: uint256,
) -> uint256:
    """
    @notice Posts a training job and pulls `payment + verifier_fee +
            green_premium` into escrow (needs an ERC20 approval).
    @param spec_hash keccak256 of the canonical job spec JSON (docs/protocol.md §3).
    @param spec_uri Where the spec can be fetched (emitted only).
    @param num_segments Segments of the run, > 0 (the tree has one more leaf).
    @param audit_samples Segments to audit, `1 <= audit_samples <= max_audit_samples`.
    @param payment Paid to the provider on success, `0 < payment < 2**128`.
    @param verifier_fee Shared by the winning voters (or refunded), `< 2**128`.
    @param collateral Provider stake locked on accept,
           `>= payment * min_collateral_bps / 10000`, `< 2**112`.
    @param deadline Unix time by which the result must be committed,
           `now + min_job_duration <= deadline <= now + max_job_duration`.
    @param min_green_bps Least green share a provider must have attested, `<= 10000`.
    @param green_premium Paid for green compute, `< 2**128`: on PAID the provider
           gets `green_premium * green_bps / 10000` (its attested share at
           commit) and the requester the rest; refunded on every other end.
    @return uint256 The new job id.
    """
    assert spec_hash != empty(bytes32), "market: empty spec hash"
    assert num_segments > 0, "market: zero segments"
    assert audit_samples > 0, "market: zero audit samples"
    assert audit_samples <= self.max_audit_samples, "market: too many audit samples"
    assert payment > 0, "market: zero payment"
    assert payment <= MAX_AMOUNT and verifier_fee <= MAX_AMOUNT and green_premium <= MAX_AMOUNT, "market: amount too large"
    assert collateral * BPS >= payment * self.min_collateral_bps, "market: collateral too low"
    assert collateral <= MAX_COLLATERAL, "market: collateral too large"
    assert deadline >= block.timestamp + self.min_job_duration, "market: deadline too soon"
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
    self._jobs[job_id].green = green_premium
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
        green_premium=green_premium,
    )
    assert extcall token.transferFrom(msg.sender, self, payment + verifier_fee + green_premium, default_return_value=True), "market: transferFrom failed"
    return job_id


@external
@nonreentrant
def cancel_job(job_id: uint256):
    """
    @notice Cancels an OPEN job and refunds its escrow (payment, fee and
            premium) to the requester at once.
    @param job_id The job.
    """
    head: uint256 = self._jobs[job_id].head
    assert self._state(head) == STATE_OPEN, "market: job not open"
    assert msg.sender == self._addr(head), "market: caller is not the requester"
    self._jobs[job_id].head = self._with_state(head, STATE_CANCELLED)
    refund: uint256 = self._escrow(job_id)
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
         attestation in force must meet it. Fixes the job's terms: this
         market's `open_window`, `draw_window`, `requester_share_bps` and
         `seed_lookahead`, and the court's `current_terms()`. The stake lock
         this can need (`deadline - now` + draw + open + voting + margin)
         must stay below the StakeManager's unbonding period.
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
    jterms: uint256 = (
        (self.open_window << T_OPEN_AT)
        | (self.draw_window << T_DRAW_AT)
        | (self.requester_share_bps << T_SHARE_AT)
        | (self.seed_lookahead << T_LOOKAHEAD_AT)
    )
    lock: uint256 = (head >> 208) - block.timestamp + self.draw_window + self.open_window + staticcall court.max_voting_time() + LIFETIME_MARGIN
    assert lock < staticcall stake_manager.unbonding_period(), "market: job outlives unbonding"
    if lock > self._lifetime_high:
        self._lifetime_high = lock
    self._jobs[job_id].head = self._with_state(head, STATE_ACCEPTED)
    self._jobs[job_id].run = convert(msg.sender, uint256)
    self._jobs[job_id].dclass = determinism_class
    self._jobs[job_id].jterms = jterms
    self._jobs[job_id].court_terms = staticcall court.current_terms()
    log JobAccepted(job_id=job_id, provider=msg.sender, determinism_class=determinism_class, collateral=collateral)
    extcall stake_manager.lock(msg.sender, collateral)


@external
def commit_result(
    job_id: uint256,
    root: bytes32,
    final_state_hash: bytes32,
    energy_mj: uint256,
    move_total: uint256,
    result_uri: String[MAX_URI],
):
    """
    @notice Commits the run: the Merkle root over its `num_segments + 1`
            boundaries, the final state, the total energy and the total
            movement. Arms the audit seed the job's `seed_lookahead` blocks
            ahead and records the provider's green share in force (it
            prices the premium). The job must then be drawn within its
            `draw_window`.
    @param job_id The job (ACCEPTED, caller its provider, before the deadline).
    @param root Root of the commitment tree (docs/protocol.md §3), non-zero.
    @param final_state_hash state_hash at boundary `num_segments`.
    @param energy_mj Cumulative energy at boundary `num_segments`, `< 2**128`.
    @param move_total Cumulative movement `move_N` at boundary `num_segments`, `< 2**128`.
    @param result_uri Base URI of the checkpoints (emitted only).
    """
    head: uint256 = self._jobs[job_id].head
    assert self._state(head) == STATE_ACCEPTED, "market: job not accepted"
    run: uint256 = self._jobs[job_id].run
    assert msg.sender == self._addr(run), "market: caller is not the provider"
    assert block.timestamp < head >> 208, "market: deadline passed"
    assert root != empty(bytes32), "market: empty root"
    assert energy_mj <= MAX_AMOUNT and move_total <= MAX_AMOUNT, "market: energy or movement too large"
    jterms: uint256 = self._jobs[job_id].jterms
    seed_block: uint256 = block.number + ((jterms >> T_LOOKAHEAD_AT) & 255)
    green_bps: uint256 = staticcall registry.green_bps_of(msg.sender)
    self._jobs[job_id].head = self._with_state(head, STATE_COMMITTED)
    self._jobs[job_id].run = (run & MASK160) | (seed_block << 160) | (block.timestamp << 208)
    self._jobs[job_id].root = root
    self._jobs[job_id].final_state_hash = final_state_hash
    self._jobs[job_id].terms = (self._jobs[job_id].terms & MASK128) | (energy_mj << 128)
    self._jobs[job_id].move_total = move_total
    self._jobs[job_id].green = (self._jobs[job_id].green & MASK128) | (green_bps << 128)
    log ResultCommitted(
        job_id=job_id,
        provider=msg.sender,
        root=root,
        final_state_hash=final_state_hash,
        energy_mj=energy_mj,
        move_total=move_total,
        green_bps=green_bps,
        result_uri=result_uri,
        seed_block=seed_block,
        draw_deadline=block.timestamp + ((jterms >> T_DRAW_AT) & MASK32),
    )


@external
def open_segments(job_id: uint256, openings: DynArray[AuditRules.Opening, MAX_OPENINGS]):
    """
    @notice Opens audited segments: reveals the leaves of boundaries `index`
            and `index + 1` of each, with their Merkle proofs. When every
            sample is satisfied the job moves to VOTING and the court's
            round 0 starts.
    @dev `AuditRules.check_openings` checks them (static call): each
         `index` above every index opened before (ascending across calls),
         each satisfying a uniform sample with that index or a movement
         sample `u` with `start_move <= u < end_move`; movement and energy
         monotone; boundary 0 zero; both leaves verified against `root`
         with proofs of the canonical length; the last segment ending at
         `final_state_hash`, `energy_mj` and `move_total`. Each opening
         extends `seal_acc = keccak256(concat(seal_acc, end_seal))`.
    @param job_id The job (AUDITING, caller its provider, inside the open window).
    @param openings The segments to open, 1 to `MAX_OPENINGS` (16), ascending.
    """
    s: JobSlots = self._jobs[job_id]
    assert self._state(s.head) == STATE_AUDITING, "market: job not auditing"
    assert msg.sender == self._addr(s.run), "market: caller is not the provider"
    assert block.timestamp < (s.run >> 208) + (s.jterms & MASK32), "market: open window passed"
    samples: uint256 = (s.head >> 168) & 255
    st: AuditRules.OpenState = staticcall audit_rules.check_openings(
        AuditRules.OpenJob(
            job_id=job_id,
            root=s.root,
            num_segments=(s.head >> 176) & MASK32,
            samples=samples,
            seed=s.seed,
            final_state_hash=s.final_state_hash,
            energy_mj=s.terms >> 128,
            move_total=s.move_total,
        ),
        AuditRules.OpenState(
            mask=s.audit & MASK64, next_index=(s.audit >> 64) & MASK64, move_floor=s.audit >> 128, seal_acc=s.seal_acc, last_leaf=s.last_leaf
        ),
        openings,
    )
    for o: AuditRules.Opening in openings:
        log SegmentOpened(
            job_id=job_id,
            index=o.index,
            start_hash=o.start_hash,
            start_energy_mj=o.start_energy_mj,
            start_move=o.start_move,
            start_seal=o.start_seal,
            end_hash=o.end_hash,
            end_energy_mj=o.end_energy_mj,
            end_move=o.end_move,
            end_seal=o.end_seal,
        )
    self._jobs[job_id].audit = st.mask | (st.next_index << 64) | (st.move_floor << 128)
    self._jobs[job_id].seal_acc = st.seal_acc
    self._jobs[job_id].last_leaf = st.last_leaf
    if st.mask == (1 << samples) - 1:
        self._jobs[job_id].head = self._with_state(s.head, STATE_VOTING)
        self._jobs[job_id].run = (s.run & (MASK160 | (MASK48 << 160))) | (block.timestamp << 208)
        extcall court.start_voting(job_id, st.seal_acc)


@external
@nonreentrant
def expire_job(job_id: uint256):
    """
    @notice Ends a job whose commit deadline passed: an OPEN job (nobody
            took it) is refunded to its requester; an ACCEPTED job (no
            commitment) has its collateral slashed (reason "expired").
    @dev Anyone may call. ACCEPTED: requester credited payment + fee +
         premium + the job's `requester_share_bps` of the slashed amount; the
         rest funds the green bonus pool. OPEN: requester credited payment +
         fee + premium.
    @param job_id The job.
    """
    head: uint256 = self._jobs[job_id].head
    state: uint8 = self._state(head)
    assert state == STATE_OPEN or state == STATE_ACCEPTED, "market: job not open or accepted"
    assert block.timestamp >= head >> 208, "market: deadline not passed"
    self._jobs[job_id].head = self._with_state(head, STATE_EXPIRED)
    slashed: uint256 = 0
    if state == STATE_OPEN:
        self.claimable[self._addr(head)] += self._escrow(job_id)
    else:
        slashed = self._slash_provider_no_voters(job_id, head, "expired")
    log JobExpired(job_id=job_id, slashed=slashed)


@external
@nonreentrant
def slash_undrawn(job_id: uint256):
    """
    @notice Slashes a COMMITTED job that was not drawn in time (reason
            "undrawn"): its `draw_window` passed, or its seed block's hash
            is out of reach (older than 8191 blocks with EIP-2935 history,
            256 without). Drawing is the provider's duty; a seed it
            dislikes can never be re-rolled.
    @dev Same split as `expire_job`. Anyone may call.
    @param job_id The job.
    """
    head: uint256 = self._jobs[job_id].head
    assert self._state(head) == STATE_COMMITTED, "market: job not committed"
    run: uint256 = self._jobs[job_id].run
    seed_block: uint256 = (run >> 160) & MASK48
    late: bool = block.timestamp >= (run >> 208) + ((self._jobs[job_id].jterms >> T_DRAW_AT) & MASK32)
    assert late or (block.number > seed_block and self._seed_of(seed_block) == empty(bytes32)), "market: draw still possible"
    self._jobs[job_id].head = self._with_state(head, STATE_SLASHED)
    self._slash_provider_no_voters(job_id, head, "undrawn")


@external
@nonreentrant
def slash_unopened(job_id: uint256):
    """
    @notice Slashes a provider that did not open every audited segment within
            the job's open window (reason "unopened"); the job ends SLASHED and
            its court case is dropped (round 0's seats are freed, unpaid and
            unpenalised).
    @dev Same split as `expire_job`. Anyone may call.
    @param job_id The job.
    """
    head: uint256 = self._jobs[job_id].head
    assert self._state(head) == STATE_AUDITING, "market: job not auditing"
    run: uint256 = self._jobs[job_id].run
    assert block.timestamp >= (run >> 208) + (self._jobs[job_id].jterms & MASK32), "market: open window not passed"
    self._jobs[job_id].head = self._with_state(head, STATE_SLASHED)
    self._slash_provider_no_voters(job_id, head, "unopened")
    extcall court.drop_case(job_id)


# EXTERNAL: AUDIT DRAW #

@external
def draw_audit(job_id: uint256):
    """
    @notice Draws the audited segments from the hash of the job's seed
            block, starts the open window and opens the court's case (which
            draws round 0's committee from the pool of the job's class,
            under the court terms fixed at acceptance).
    @dev Anyone may call, once `block.number > seed_block` and before the
         job's draw deadline (`commit time + draw_window`), while the seed
         block's hash is in reach: EIP-2935 history (8191 blocks) where the
         chain has it, `BLOCKHASH` (256 blocks) otherwise. Past either
         limit the only exit is `slash_undrawn`. Samples `j < ceil(s/2)` are
         uniform over segments, the rest uniform over `move_total` (all
         uniform when `move_total == 0`): `AuditRules.draws`, emitted in
         `AuditDrawn`.
    @param job_id The job (COMMITTED).
    """
    head: uint256 = self._jobs[job_id].head
    assert self._state(head) == STATE_COMMITTED, "market: job not committed"
    run: uint256 = self._jobs[job_id].run
    seed_block: uint256 = (run >> 160) & MASK48
    assert block.number > seed_block, "market: seed block not reached"
    jterms: uint256 = self._jobs[job_id].jterms
    assert block.timestamp < (run >> 208) + ((jterms >> T_DRAW_AT) & MASK32), "market: draw window passed"
    seed: bytes32 = self._seed_of(seed_block)
    assert seed != empty(bytes32), "market: seed out of reach"
    self._jobs[job_id].seed = seed
    self._jobs[job_id].head = self._with_state(head, STATE_AUDITING)
    self._jobs[job_id].run = (run & (MASK160 | (MASK48 << 160))) | (block.timestamp << 208)
    num_segments: uint256 = (head >> 176) & MASK32
    samples: uint256 = (head >> 168) & 255
    indices: DynArray[uint32, MAX_AUDIT_SAMPLES] = []
    targets: DynArray[uint256, MAX_AUDIT_SAMPLES] = []
    indices, targets = staticcall audit_rules.draws(seed, job_id, num_segments, samples, self._jobs[job_id].move_total)
    log AuditDrawn(job_id=job_id, seed=seed, indices=indices, targets=targets, open_deadline=block.timestamp + (jterms & MASK32))
    extcall court.open_case(job_id, self._jobs[job_id].dclass, seed, self._jobs[job_id].court_terms)


# EXTERNAL: DECISION #

@external
@nonreentrant
def finalize(job_id: uint256):
    """
    @notice Asks the court to decide a VOTING job whose round is over, in
            O(1): FRAUD -> SLASHED (reason "fraud"); OK or NO_DECISION ->
            PAID; an undecided round with rounds left draws the next round
            and the job stays VOTING (call again after its reveal window).
    @dev Paid: the provider is credited payment + `green_premium *
         green_bps / 10000` (the share recorded at commit; the requester gets
         the rest of the premium) and, on OK only (a committee judged the
         job), the green bonus the requester's allowance covers
         (`GreenRegistry.pay_bonus`). The pot (OK: the fee; FRAUD: the
         slashed collateral minus the job's requester share; NO_DECISION:
         the fee, all of it back to the requester) goes to the court, which
         fixes the reward per winning seat and returns the remainder,
         credited to the requester. `JobFinalized` reports the energy and
         `carbon_mg = energy_mj * carbon_intensity / 3_600_000` (g/kWh in,
         milligrams out); both are 0 for a slashed job (its claim is void).
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
    green: uint256 = self._jobs[job_id].green
    premium: uint256 = green & MASK128
    state: uint8 = STATE_PAID
    if outcome == OUTCOME_FRAUD:
        state = STATE_SLASHED
    self._jobs[job_id].head = self._with_state(head, state)
    extcall stake_manager.unlock(provider, terms & MASK112)
    pot: uint256 = fee
    paid: uint256 = 0
    bonus: uint256 = 0
    earned: uint256 = 0
    energy_mj: uint256 = 0
    carbon_mg: uint256 = 0
    if outcome == OUTCOME_FRAUD:
        slashed: uint256 = extcall stake_manager.slash(provider, terms & MASK112, self)
        to_requester: uint256 = slashed * self._share_bps(job_id) // BPS
        self.claimable[requester] += payment + fee + premium + to_requester
        pot = slashed - to_requester
        log ProviderSlashed(job_id=job_id, provider=provider, amount=slashed, reason="fraud")
    else:
        if outcome == OUTCOME_OK:
            bonus = extcall registry.pay_bonus(provider, requester, payment)
        earned = premium * (green >> 128) // BPS
        paid = payment
        self.claimable[provider] += payment + earned + bonus
        self.claimable[requester] += premium - earned
        energy_mj = terms >> 128
        carbon_mg = energy_mj * staticcall registry.carbon_intensity_of(provider) // MJ_PER_KWH_MG
    remainder: uint256 = extcall court.set_pot(job_id, pot)
    self.claimable[requester] += remainder
    self._jobs[job_id].pot = pot - remainder
    log JobFinalized(job_id=job_id, outcome=state, paid=paid, bonus=bonus, premium=earned, energy_mj=energy_mj, carbon_mg=carbon_mg)


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
    @notice Sets `seed_lookahead` (blocks), bounds [1, 64], at most `draw_window / 24`. Accepted jobs keep theirs.
    @dev Owner only; emits `ParameterSet("seed_lookahead", old, new)`.
    @param blocks The new value.
    """
    self.seed_lookahead = self._set_parameter(P_SEED_LOOKAHEAD, "seed_lookahead", self.seed_lookahead, blocks)
    self._check_draw_room()


@external
def set_open_window(seconds: uint256):
    """
    @notice Sets `open_window` (seconds), bounds [10, 604800]; `max_job_lifetime` must stay below the unbonding period. Accepted jobs keep theirs.
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
    @notice Sets `requester_share_bps`, bounds [0, 10000]. Accepted jobs keep theirs.
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
    assert self.min_job_duration <= seconds, "market: max below min job duration"


@external
def set_min_job_duration(seconds: uint256):
    """
    @notice Sets `min_job_duration` (seconds), bounds [60, 604800], at most `max_job_duration`. Posted jobs keep their deadline.
    @dev Owner only; emits `ParameterSet("min_job_duration", old, new)`.
    @param seconds The new value.
    """
    self.min_job_duration = self._set_parameter(P_MIN_JOB_DURATION, "min_job_duration", self.min_job_duration, seconds)
    assert seconds <= self.max_job_duration, "market: min above max job duration"


@external
def set_draw_window(seconds: uint256):
    """
    @notice Sets `draw_window` (seconds), bounds [60, 604800], at least `24 * seed_lookahead`; `max_job_lifetime` must stay below the unbonding period. Accepted jobs keep theirs.
    @dev Owner only; emits `ParameterSet("draw_window", old, new)`.
    @param seconds The new value.
    """
    self.draw_window = self._set_parameter(P_DRAW_WINDOW, "draw_window", self.draw_window, seconds)
    self._check_draw_room()


# EXTERNAL: VIEWS #

@view
@external
def max_job_lifetime() -> uint256:
    """
    @notice The longest a job can hold stake: the larger of what the current
            parameters allow (`max_job_duration + draw_window + open_window +
            court.max_voting_time() + LIFETIME_MARGIN`, the court's part
            covering every round) and the longest lock any accepted job was
            given under the terms fixed at its acceptance. The StakeManager
            keeps its unbonding period above it.
    @dev Every deadline is in the job's terms and every exit may be called by
         anyone, so a job is final (or can be made final by anyone) within this
         time when each exit is called once it opens. A court round starts
         when `finalize` draws it, so a `finalize` called late postpones the
         later rounds by its lateness; the stake stays locked meanwhile (it
         cannot escape a slash), it just ends later.
    @return uint256 Seconds.
    """
    return max(self._max_job_lifetime(), self._lifetime_high)


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
    draw_deadline: uint256 = 0
    open_deadline: uint256 = 0
    voting_start: uint256 = 0
    if state == STATE_COMMITTED:
        draw_deadline = phase_at + ((s.jterms >> T_DRAW_AT) & MASK32)
    elif state == STATE_AUDITING:
        open_deadline = phase_at + (s.jterms & MASK32)
    elif state >= STATE_VOTING and s.seed != empty(bytes32) and s.audit & MASK64 == (1 << ((s.head >> 168) & 255)) - 1:
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
        green_premium=s.green & MASK128,
        determinism_class=s.dclass,
        root=s.root,
        final_state_hash=s.final_state_hash,
        energy_mj=s.terms >> 128,
        move_total=s.move_total,
        green_bps=s.green >> 128,
        seed_block=(s.run >> 160) & MASK48,
        draw_deadline=draw_deadline,
        seed=s.seed,
        open_deadline=open_deadline,
        voting_start=voting_start,
        opened_mask=s.audit & MASK64,
        next_open_index=(s.audit >> 64) & MASK64,
        seal_acc=s.seal_acc,
        pot=s.pot,
        open_window=s.jterms & MASK32,
        draw_window=(s.jterms >> T_DRAW_AT) & MASK32,
        requester_share_bps=(s.jterms >> T_SHARE_AT) & MASK16,
        seed_lookahead=(s.jterms >> T_LOOKAHEAD_AT) & 255,
        court_terms=s.court_terms,
    )


@internal
def _slash_provider_no_voters(job_id: uint256, head: uint256, reason: String[16]) -> uint256:
    """
    @dev Slashes the collateral of a job without voters (expired, undrawn,
         unopened): requester credited payment + fee + premium + the job's
         share; the rest funds the green bonus pool. The job's state is
         already final.
    """
    provider: address = self._addr(self._jobs[job_id].run)
    collateral: uint256 = self._jobs[job_id].terms & MASK112
    extcall stake_manager.unlock(provider, collateral)
    slashed: uint256 = extcall stake_manager.slash(provider, collateral, self)
    to_requester: uint256 = slashed * self._share_bps(job_id) // BPS
    self.claimable[self._addr(head)] += self._escrow(job_id) + to_requester
    log ProviderSlashed(job_id=job_id, provider=provider, amount=slashed, reason=reason)
    to_pool: uint256 = slashed - to_requester
    if to_pool > 0:
        assert extcall token.approve(registry.address, to_pool, default_return_value=True), "market: approve failed"
        extcall registry.fund_pool(to_pool)
    return slashed


@view
@internal
def _escrow(job_id: uint256) -> uint256:
    """@dev payment + verifier fee + green premium."""
    money: uint256 = self._jobs[job_id].money
    return (money & MASK128) + (money >> 128) + (self._jobs[job_id].green & MASK128)


@view
@internal
def _share_bps(job_id: uint256) -> uint256:
    """@dev The job's `requester_share_bps`, fixed at acceptance."""
    return (self._jobs[job_id].jterms >> T_SHARE_AT) & MASK16


@view
@internal
def _seed_of(seed_block: uint256) -> bytes32:
    """
    @dev The hash of `seed_block` (< block.number), or zero once it is out of
         reach: EIP-2935 history where the chain has the contract (8191
         blocks), `BLOCKHASH` (256 blocks) otherwise. A zero answer from the
         history (the contract exists but never recorded the block: deployed
         before its fork activated, or on a chain that does not fill it) is
         no answer, so `BLOCKHASH` still serves.
    """
    age: uint256 = block.number - seed_block
    if HISTORY_CONTRACT.codesize > 0 and age <= HISTORY_WINDOW:
        ok: bool = False
        out: Bytes[32] = b""
        ok, out = raw_call(HISTORY_CONTRACT, abi_encode(seed_block), max_outsize=32, is_static_call=True, revert_on_failure=False)
        if ok and len(out) == 32 and convert(out, bytes32) != empty(bytes32):
            return convert(out, bytes32)
    if age <= BLOCKHASH_WINDOW:
        return blockhash(seed_block)
    return empty(bytes32)


@internal
def _set_parameter(param: uint256, name: String[20], old: uint256, new: uint256) -> uint256:
    """
    @dev Checks the owner and the hard bounds of parameter `param`, logs the
         change and returns `new`. For the three timing parameters it checks
         that `max_job_lifetime` with the new value stays below the
         StakeManager's unbonding period.
    """
    ownable._check_owner()
    assert new >= PARAM_MIN[param] and new <= PARAM_MAX[param], "market: parameter out of bounds"
    if param == P_OPEN_WINDOW or param == P_MAX_JOB_DURATION or param == P_DRAW_WINDOW:
        assert self._max_job_lifetime() - old + new < staticcall stake_manager.unbonding_period(), "market: lifetime exceeds unbonding"
    log ParameterSet(name=name, old_value=old, new_value=new)
    return new


@view
@internal
def _max_job_lifetime() -> uint256:
    return self.max_job_duration + self.draw_window + self.open_window + staticcall court.max_voting_time() + LIFETIME_MARGIN


@view
@internal
def _check_draw_room():
    """
    @dev The draw window leaves room for the seed block to arrive: at least
         `SECONDS_PER_LOOKAHEAD_BLOCK` (24 s, two 12 s slots) per lookahead
         block, so an honest provider is never slashed as undrawn because its
         seed block came after the window closed.
    """
    assert self.draw_window >= self.seed_lookahead * SECONDS_PER_LOOKAHEAD_BLOCK, "market: draw window too short for the lookahead"


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
