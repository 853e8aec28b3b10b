# pragma version ~=0.4.3
"""
@title VerifierCourt
@custom:contract-name VerifierCourt
@license GNU Affero General Public License v3.0 only
@notice Committees of verifiers drawn by stake that must prove they replayed
        (docs/court.md, docs/protocol.md §6). Guarantees:
        - one sortition pool per determinism class; a member joins with whole
          seats, each backed by `SEAT_STAKE` locked in the StakeManager, and
          every seat in a pool (free or busy) is backed by exactly that lock;
        - a committee seat is drawn in proportion to free seats (a sum tree,
          `O(log MAX_POOL_MEMBERS)` per seat), so splitting stake over
          identities changes nothing;
        - only seated members vote, once per round; an "ok" vote counts only
          with the work digests whose seals the provider committed (proof of
          replay), otherwise it is a no-show;
        - a case is decided by a strict majority of the seats drawn in its
          round; without one a larger committee is drawn from a fresh seed, up
          to the case's `max_rounds`, then nobody wins (the provider is paid);
        - every seat's reward and penalty follows from counts fixed when the
          case is decided; `settle` is O(1), once per (job, round, voter), and
          the order of `settle` calls never moves money;
        - the court holds no tokens: penalties are slashed to the JobMarket and
          rewards are paid from the job's pot there (`credit_penalty`,
          `credit_from_pot`), claimed with `JobMarket.withdraw`.

        Case outcomes (`case_of(job_id).outcome`): 0 none yet, 1 OK,
        2 FRAUD, 3 NO_DECISION, 4 DROPPED (the provider never opened).
        Seat status (`seat_of(...).status`): 0 seated, 1 committed,
        2 revealed ok with proof, 3 revealed fraud, 4 revealed ok without a
        valid proof (counted as a no-show).
@dev Ownership is snekmate's 2-step ownership. Storage of pools and cases is
     packed by hand; every packed field is read and written through
     `_get` / `_put` with the named `*_AT` / `*_BITS` constants below
     (docs/contracts.md draws the layout).
"""


# INTERFACES #

from snekmate.auth import ownable
from snekmate.auth import ownable_2step

from .interfaces import IJobMarket
from .interfaces import IStakeManager
from .interfaces import IVerifierCourt

implements: IVerifierCourt

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

# @notice The JobMarket this court serves was wired (once).
event MarketSet:
    market: indexed(address)


# @notice `member` added `seats` free seats to the pool of `dclass`;
#         `member_seats` and `pool_seats` count free + busy seats after it.
event PoolJoined:
    dclass: indexed(bytes32)
    member: indexed(address)
    seats: uint256
    member_seats: uint256
    pool_seats: uint256


# @notice `member` took `seats` free seats out of the pool of `dclass` and
#         their stake was unlocked; counts as in `PoolJoined`.
event PoolLeft:
    dclass: indexed(bytes32)
    member: indexed(address)
    seats: uint256
    member_seats: uint256
    pool_seats: uint256


# @notice A case opened for `job_id` with these terms (copied from the
#         court's parameters at this moment and kept for the whole case).
event CaseOpened:
    job_id: indexed(uint256)
    dclass: indexed(bytes32)
    committee_size: uint256
    max_rounds: uint256
    commit_window: uint256
    reveal_window: uint256
    voter_slash_bps: uint256
    noshow_slash_bps: uint256


# @notice The seats of round `round`: one entry per seat, so a member that
#         holds several seats appears several times. Shorter than the
#         round's size when the pool ran out of free seats.
event SeatsDrawn:
    job_id: indexed(uint256)
    round: uint256
    voters: DynArray[address, MAX_COMMITTEE]


# @notice Round `round` of `job_id` takes commitments until `commit_end`
#         and reveals in `[commit_end, reveal_end)`.
event VotingStarted:
    job_id: indexed(uint256)
    round: uint256
    commit_end: uint256
    reveal_end: uint256


# @notice `voter` committed a sealed vote for its `seats` seats of `round`.
event VoteCommitted:
    job_id: indexed(uint256)
    voter: indexed(address)
    round: uint256
    seats: uint256


# @notice `voter` revealed. `counted` is true for every fraud vote and for
#         an ok vote whose digests prove the replay; an ok vote with
#         `counted` false is recorded as a no-show.
event VoteRevealed:
    job_id: indexed(uint256)
    voter: indexed(address)
    round: uint256
    fraud: bool
    counted: bool
    seats: uint256


# @notice The case is decided in round `round` (`outcome`: 1 OK, 2 FRAUD,
#         3 NO_DECISION, 4 DROPPED) on the counts of that round.
event CaseDecided:
    job_id: indexed(uint256)
    round: uint256
    outcome: uint8
    drawn_seats: uint256
    ok_seats: uint256
    fraud_seats: uint256


# @notice The pot of a decided case: each winning seat gets
#         `reward_per_seat`; `remainder` went to the requester.
event PotFixed:
    job_id: indexed(uint256)
    pot: uint256
    winning_seats: uint256
    reward_per_seat: uint256
    remainder: uint256


# @notice The `seats` seats `voter` held in `round` were settled: `reward`
#         credited in the JobMarket, `penalty` slashed to the requester.
event SeatSettled:
    job_id: indexed(uint256)
    voter: indexed(address)
    round: uint256
    seats: uint256
    reward: uint256
    penalty: uint256


# @notice An owner parameter changed.
event ParameterSet:
    name: String[20]
    old_value: uint256
    new_value: uint256


# CONSTANTS #

# @dev Leaves of one class's sum tree (members a pool can hold at once).
MAX_POOL_MEMBERS: public(constant(uint256)) = 1024
# @dev log2(MAX_POOL_MEMBERS): levels walked per drawn seat.
TREE_DEPTH: constant(uint256) = 10
# @dev Nodes of the heap-ordered tree: node 1 is the root, node
#      `MAX_POOL_MEMBERS + i` is leaf `i`; node 0 is unused.
TREE_NODES: constant(uint256) = 2 * MAX_POOL_MEMBERS
# @dev Most seats of any round: `(committee_size + 1) * 2**(max_rounds - 1) - 1`
#      (the size of the last round) must not exceed it.
MAX_COMMITTEE: public(constant(uint256)) = 31
# @dev Most rounds a case may have.
MAX_ROUNDS: public(constant(uint256)) = 5
# @dev Most seats (free + busy) one member may hold in one pool.
MAX_MEMBER_SEATS: public(constant(uint256)) = 2**32 - 1
# @dev Largest `SEAT_STAKE` (so `seats * SEAT_STAKE` of a whole pool stays far below 2**256).
MAX_SEAT_STAKE: constant(uint256) = 2**96 - 1
# @dev Most audit samples a job can have (JobMarket.MAX_AUDIT_SAMPLES).
MAX_AUDIT_SAMPLES: constant(uint256) = 64
BPS: constant(uint256) = 10_000
MAX_AMOUNT: constant(uint256) = 2**128 - 1

# Case outcomes.
OUTCOME_NONE: constant(uint8) = 0
OUTCOME_OK: constant(uint8) = 1
OUTCOME_FRAUD: constant(uint8) = 2
OUTCOME_NO_DECISION: constant(uint8) = 3
OUTCOME_DROPPED: constant(uint8) = 4

# Seat status.
SEAT_SEATED: constant(uint256) = 0
SEAT_COMMITTED: constant(uint256) = 1
SEAT_OK: constant(uint256) = 2
SEAT_FRAUD: constant(uint256) = 3
SEAT_NO_PROOF: constant(uint256) = 4

# Hard bounds of the owner-set parameters (inclusive).
MIN_WINDOW: constant(uint256) = 10
MAX_WINDOW: constant(uint256) = 7 * 86400
MAX_VOTER_SLASH_BPS: constant(uint256) = 5_000

# Parameter ids (index into PARAM_MIN / PARAM_MAX).
P_COMMITTEE_SIZE: constant(uint256) = 0
P_MAX_ROUNDS: constant(uint256) = 1
P_COMMIT_WINDOW: constant(uint256) = 2
P_REVEAL_WINDOW: constant(uint256) = 3
P_VOTER_SLASH_BPS: constant(uint256) = 4
P_NOSHOW_SLASH_BPS: constant(uint256) = 5
P_MIN_CLASS_STAKE: constant(uint256) = 6
# @dev `min_class_stake`'s low bound is `SEAT_STAKE` (checked in its setter).
PARAM_MIN: constant(uint256[7]) = [1, 1, MIN_WINDOW, MIN_WINDOW, 0, 1, 1]
PARAM_MAX: constant(uint256[7]) = [MAX_COMMITTEE, MAX_ROUNDS, MAX_WINDOW, MAX_WINDOW, MAX_VOTER_SLASH_BPS, BPS, MAX_AMOUNT]

# Packed fields: `X_AT` is the lowest bit, `X_BITS` the width.
# member word (`_member[dclass][account]`)
LEAF_AT: constant(uint256) = 0  # leaf index + 1; 0 = not a member
LEAF_BITS: constant(uint256) = 16
BUSY_AT: constant(uint256) = 16  # seats sitting on cases
BUSY_BITS: constant(uint256) = 48
# pool word (`_pool[dclass]`)
USED_AT: constant(uint256) = 0  # leaves ever handed out
USED_BITS: constant(uint256) = 16
VACANT_AT: constant(uint256) = 16  # vacated leaves on the `_vacant` stack
VACANT_BITS: constant(uint256) = 16
POOL_BUSY_AT: constant(uint256) = 32  # busy seats of the whole pool
POOL_BUSY_BITS: constant(uint256) = 64
# case terms word (`CaseSlots.terms`), copied at `open_case`
COMMITTEE_AT: constant(uint256) = 0
COMMITTEE_BITS: constant(uint256) = 8
ROUNDS_AT: constant(uint256) = 8
ROUNDS_BITS: constant(uint256) = 8
COMMIT_AT: constant(uint256) = 16
COMMIT_BITS: constant(uint256) = 32
REVEAL_AT: constant(uint256) = 48
REVEAL_BITS: constant(uint256) = 32
VOTER_BPS_AT: constant(uint256) = 80
NOSHOW_BPS_AT: constant(uint256) = 96
BPS_BITS: constant(uint256) = 16
# case status word (`CaseSlots.status`)
ROUND_AT: constant(uint256) = 0
ROUND_BITS: constant(uint256) = 8
START_AT: constant(uint256) = 8  # current round's voting start; 0 = not started
START_BITS: constant(uint256) = 48
DRAWN_AT: constant(uint256) = 56
OK_AT: constant(uint256) = 72
FRAUD_AT: constant(uint256) = 88
COUNT_BITS: constant(uint256) = 16
OUTCOME_AT: constant(uint256) = 104
OUTCOME_BITS: constant(uint256) = 8
POT_FIXED_AT: constant(uint256) = 112  # 1 once `set_pot` ran
REWARD_AT: constant(uint256) = 128  # reward per winning seat, set by `set_pot`
REWARD_BITS: constant(uint256) = 128
# seat word (`SeatSlots.info`)
SEATS_AT: constant(uint256) = 0
SEATS_BITS: constant(uint256) = 16
STATUS_AT: constant(uint256) = 16
STATUS_BITS: constant(uint256) = 8
SETTLED_AT: constant(uint256) = 24


# STRUCTS #

# @dev One case, packed by hand (see the `*_AT` constants):
#      terms  = committee_size | max_rounds | commit_window | reveal_window
#               | voter_slash_bps | noshow_slash_bps
#      status = round | round start | drawn | ok | fraud | outcome | pot fixed
#               | reward per seat
struct CaseSlots:
    dclass: bytes32
    seed: bytes32
    seal_acc: bytes32
    terms: uint256
    status: uint256


# @dev One (job, voter, round) record: info = seats | status | settled.
struct SeatSlots:
    commitment: bytes32
    info: uint256


# @notice A case as `case_of` returns it.
# @dev `round` is the current (or deciding) round; `voting_start`,
#      `commit_end`, `reveal_end` belong to it (0 before `start_voting`);
#      `drawn_seats`, `ok_seats`, `fraud_seats` count its seats;
#      `reward_per_seat` is set once the pot is fixed.
struct CaseView:
    dclass: bytes32
    seed: bytes32
    seal_acc: bytes32
    committee_size: uint256
    max_rounds: uint256
    commit_window: uint256
    reveal_window: uint256
    voter_slash_bps: uint256
    noshow_slash_bps: uint256
    round: uint256
    voting_start: uint256
    commit_end: uint256
    reveal_end: uint256
    drawn_seats: uint256
    ok_seats: uint256
    fraud_seats: uint256
    outcome: uint8
    reward_per_seat: uint256


# @notice A seat record as `seat_of` returns it (`status`: see the notice).
struct SeatView:
    commitment: bytes32
    seats: uint256
    status: uint256
    settled: bool


# @notice A member of a class pool as `member_of` returns it.
struct MemberView:
    free_seats: uint256
    busy_seats: uint256


# @notice A class pool as `pool_of` returns it.
struct PoolView:
    members: uint256
    free_seats: uint256
    busy_seats: uint256
    stake: uint256


# STORAGE #

stake_manager: public(immutable(IStakeManager))
# @notice Stake locked per seat, fixed at deployment.
SEAT_STAKE: public(immutable(uint256))
# @notice The JobMarket (set once with `set_market`).
market: public(IJobMarket)

# @notice Seats of round 0. Default 3, bounds [1, 31] and the last round
#         `(committee_size + 1) * 2**(max_rounds - 1) - 1 <= 31`.
committee_size: public(uint256)
# @notice Most rounds of a case. Default 3, bounds [1, 5] and the same
#         last-round bound.
max_rounds: public(uint256)
# @notice Seconds to commit, from the round's start. Default 3600, bounds [10, 604800].
commit_window: public(uint256)
# @notice Seconds to reveal, after the commit window. Default 3600, bounds [10, 604800].
reveal_window: public(uint256)
# @notice Share of a seat's stake a loser loses. Default 1000, bounds
#         [0, 5000] and below `noshow_slash_bps`.
voter_slash_bps: public(uint256)
# @notice Share of a seat's stake a no-show loses. Default 2000, bounds
#         [1, 10000] and above `voter_slash_bps`.
noshow_slash_bps: public(uint256)
# @notice Least pool stake (free + busy seats) of a class for `accept_job`.
#         Default `3 * SEAT_STAKE`, bounds [SEAT_STAKE, 2**128 - 1].
min_class_stake: public(uint256)

_tree: HashMap[bytes32, uint256[TREE_NODES]]
_leaf_owner: HashMap[bytes32, address[MAX_POOL_MEMBERS]]
_vacant: HashMap[bytes32, uint256[MAX_POOL_MEMBERS]]
_member: HashMap[bytes32, HashMap[address, uint256]]
_pool: HashMap[bytes32, uint256]
_cases: HashMap[uint256, CaseSlots]
_seats: HashMap[uint256, HashMap[address, SeatSlots[MAX_ROUNDS]]]


# CONSTRUCTOR #

@deploy
def __init__(stake_manager_: address, seat_stake_: uint256):
    """
    @notice Deploys the court with the default parameters; the deployer
            becomes the owner. Wire it with `set_market` once the JobMarket
            (which takes this court in its constructor) exists, and with
            `StakeManager.set_court`.
    @param stake_manager_ The StakeManager whose stake backs the seats.
    @param seat_stake_ Stake locked per seat, `1 <= seat_stake_ < 2**96`.
    """
    assert stake_manager_ != empty(address), "court: stake manager is zero address"
    assert seat_stake_ > 0, "court: zero seat stake"
    assert seat_stake_ <= MAX_SEAT_STAKE, "court: seat stake too large"
    ownable.__init__()
    ownable_2step.__init__()
    stake_manager = IStakeManager(stake_manager_)
    SEAT_STAKE = seat_stake_
    self.committee_size = 3
    self.max_rounds = 3
    self.commit_window = 3600
    self.reveal_window = 3600
    self.voter_slash_bps = 1_000
    self.noshow_slash_bps = 2_000
    self.min_class_stake = 3 * seat_stake_


# EXTERNAL: POOLS #

@external
def join(dclass: bytes32, seats: uint256):
    """
    @notice Adds `seats` free seats of the caller to the pool of `dclass`,
            locking `seats * SEAT_STAKE` of its free stake.
    @dev Join only the class you can replay in: a seat that cannot show the
         work digests is a no-show and loses `noshow_slash_bps` of its stake.
    @param dclass The determinism class (docs/protocol.md §3.9), non-zero.
    @param seats Seats to add, > 0; a member holds at most `MAX_MEMBER_SEATS`.
    """
    assert dclass != empty(bytes32), "court: empty class"
    assert seats > 0, "court: zero seats"
    member: uint256 = self._member[dclass][msg.sender]
    leaf: uint256 = 0
    if member == 0:
        leaf = self._take_leaf(dclass, msg.sender)
        member = self._put(0, LEAF_AT, LEAF_BITS, leaf + 1)
        self._member[dclass][msg.sender] = member
    else:
        leaf = self._get(member, LEAF_AT, LEAF_BITS) - 1
    held: uint256 = self._free_of(dclass, leaf) + self._get(member, BUSY_AT, BUSY_BITS) + seats
    assert held <= MAX_MEMBER_SEATS, "court: too many seats"
    self._add(dclass, leaf, seats)
    log PoolJoined(dclass=dclass, member=msg.sender, seats=seats, member_seats=held, pool_seats=self._pool_seats(dclass))
    extcall stake_manager.lock(msg.sender, seats * SEAT_STAKE)


@external
def leave(dclass: bytes32, seats: uint256):
    """
    @notice Takes `seats` free seats of the caller out of the pool of
            `dclass` and unlocks their stake at once (withdrawing it then
            goes through the StakeManager's unbonding).
    @dev Busy seats (sitting on a case) cannot leave until settled.
    @param dclass The determinism class.
    @param seats Free seats to take out, `0 < seats <= free seats`.
    """
    assert seats > 0, "court: zero seats"
    member: uint256 = self._member[dclass][msg.sender]
    assert member != 0, "court: not a member"
    leaf: uint256 = self._get(member, LEAF_AT, LEAF_BITS) - 1
    free: uint256 = self._free_of(dclass, leaf)
    assert seats <= free, "court: seats not free"
    self._sub(dclass, leaf, seats)
    busy: uint256 = self._get(member, BUSY_AT, BUSY_BITS)
    if free == seats and busy == 0:
        self._release_leaf(dclass, leaf, msg.sender)
    log PoolLeft(dclass=dclass, member=msg.sender, seats=seats, member_seats=free - seats + busy, pool_seats=self._pool_seats(dclass))
    extcall stake_manager.unlock(msg.sender, seats * SEAT_STAKE)


# EXTERNAL: MARKET #

@external
def open_case(job_id: uint256, dclass: bytes32, seed: bytes32, terms: uint256):
    """
    @notice Opens the case of a job whose audit was just drawn, under the
            terms the market fixed when the job was accepted (this court's
            `current_terms()` then), and draws round 0 (`committee_size`
            seats of those terms) from the pool of `dclass`.
    @dev Market only. Round 0's seed is `keccak256(abi_encode(seed, job_id))`
         (`bytes32, uint256`), so jobs drawn from one block get different
         committees; seat `j` of a round with seed `s` is the member whose
         cumulative free-seat interval holds
         `uint256(keccak256(abi_encode(s, j))) % free_seats` (`bytes32, uint256`).
    @param job_id The job.
    @param dclass The provider's determinism class.
    @param seed The job's audit seed.
    @param terms The case's terms word (`current_terms()` at acceptance).
    """
    self._check_market()
    assert self._cases[job_id].terms == 0, "court: case exists"
    assert terms != 0, "court: no terms"
    committee: uint256 = self._get(terms, COMMITTEE_AT, COMMITTEE_BITS)
    seed0: bytes32 = keccak256(abi_encode(seed, job_id))
    self._cases[job_id].dclass = dclass
    self._cases[job_id].seed = seed0
    self._cases[job_id].terms = terms
    log CaseOpened(
        job_id=job_id,
        dclass=dclass,
        committee_size=committee,
        max_rounds=self._get(terms, ROUNDS_AT, ROUNDS_BITS),
        commit_window=self._get(terms, COMMIT_AT, COMMIT_BITS),
        reveal_window=self._get(terms, REVEAL_AT, REVEAL_BITS),
        voter_slash_bps=self._get(terms, VOTER_BPS_AT, BPS_BITS),
        noshow_slash_bps=self._get(terms, NOSHOW_BPS_AT, BPS_BITS),
    )
    drawn: uint256 = self._draw_round(job_id, dclass, seed0, 0, committee)
    self._cases[job_id].status = self._put(0, DRAWN_AT, COUNT_BITS, drawn)


@external
def start_voting(job_id: uint256, seal_acc: bytes32):
    """
    @notice Starts round 0's windows once the provider opened every audited
            segment, and records the seal accumulator the ok votes must
            reproduce.
    @dev Market only.
    @param job_id The job.
    @param seal_acc The job's `seal_acc` over the opened segments' end seals.
    """
    self._check_market()
    status: uint256 = self._cases[job_id].status
    assert self._cases[job_id].terms != 0, "court: no case"
    assert self._get(status, START_AT, START_BITS) == 0, "court: voting already started"
    assert self._get(status, OUTCOME_AT, OUTCOME_BITS) == 0, "court: case decided"
    self._cases[job_id].seal_acc = seal_acc
    self._cases[job_id].status = self._put(status, START_AT, START_BITS, block.timestamp)
    self._log_voting_started(job_id, 0, self._cases[job_id].terms)


@external
def drop_case(job_id: uint256):
    """
    @notice Ends a case whose provider never opened its audited segments:
            round 0's seats are settled with neither reward nor penalty.
    @dev Market only (from `slash_unopened`).
    @param job_id The job.
    """
    self._check_market()
    status: uint256 = self._cases[job_id].status
    assert self._cases[job_id].terms != 0, "court: no case"
    assert self._get(status, OUTCOME_AT, OUTCOME_BITS) == 0, "court: case decided"
    self._cases[job_id].status = self._put(status, OUTCOME_AT, OUTCOME_BITS, convert(OUTCOME_DROPPED, uint256))
    self._log_decided(job_id, status, OUTCOME_DROPPED)


@external
def decide(job_id: uint256) -> (uint8, uint256):
    """
    @notice Decides the current round once its reveal window is over:
            `fraud_seats * 2 > drawn` -> FRAUD; `ok_seats * 2 > drawn` -> OK;
            otherwise a larger round is drawn while rounds remain (returns
            outcome 0, the job stays in voting), else NO_DECISION.
    @dev Market only (from `finalize`). Round `r + 1` has
         `2 * size_r + 1` seats and seed
         `keccak256(abi_encode(seed_r, blockhash(block.number - 1)))`; its
         windows start now.
    @param job_id The job.
    @return uint8 The outcome: 0 (next round drawn), 1 OK, 2 FRAUD, 3 NO_DECISION.
    @return uint256 The winning seats (0 unless OK or FRAUD).
    """
    self._check_market()
    status: uint256 = self._cases[job_id].status
    terms: uint256 = self._cases[job_id].terms
    start: uint256 = self._voting_start(status)
    assert block.timestamp >= start + self._get(terms, COMMIT_AT, COMMIT_BITS) + self._get(terms, REVEAL_AT, REVEAL_BITS), "court: round not over"
    drawn: uint256 = self._get(status, DRAWN_AT, COUNT_BITS)
    ok: uint256 = self._get(status, OK_AT, COUNT_BITS)
    fraud: uint256 = self._get(status, FRAUD_AT, COUNT_BITS)
    outcome: uint8 = OUTCOME_NO_DECISION
    winning: uint256 = 0
    if fraud * 2 > drawn:
        outcome = OUTCOME_FRAUD
        winning = fraud
    elif ok * 2 > drawn:
        outcome = OUTCOME_OK
        winning = ok
    else:
        rnd: uint256 = self._get(status, ROUND_AT, ROUND_BITS)
        if rnd + 1 < self._get(terms, ROUNDS_AT, ROUNDS_BITS):
            rnd += 1
            seed: bytes32 = keccak256(abi_encode(self._cases[job_id].seed, blockhash(block.number - 1)))
            self._cases[job_id].seed = seed
            size: uint256 = ((self._get(terms, COMMITTEE_AT, COMMITTEE_BITS) + 1) << rnd) - 1
            drawn = self._draw_round(job_id, self._cases[job_id].dclass, seed, rnd, size)
            status = self._put(0, ROUND_AT, ROUND_BITS, rnd)
            status = self._put(status, START_AT, START_BITS, block.timestamp)
            self._cases[job_id].status = self._put(status, DRAWN_AT, COUNT_BITS, drawn)
            self._log_voting_started(job_id, rnd, terms)
            return OUTCOME_NONE, 0
    self._cases[job_id].status = self._put(status, OUTCOME_AT, OUTCOME_BITS, convert(outcome, uint256))
    self._log_decided(job_id, status, outcome)
    return outcome, winning


@external
def set_pot(job_id: uint256, pot: uint256) -> uint256:
    """
    @notice Fixes the reward of every winning seat of a decided case:
            `reward_per_seat = pot // winning_seats`; returns the remainder
            (the whole pot when no seat won), which the market credits to
            the requester.
    @dev Market only, once, right after `decide` returned OK, FRAUD or
         NO_DECISION.
    @param job_id The job.
    @param pot OK: the verifier fee; FRAUD: the slashed collateral minus the
           requester's share; NO_DECISION: the fee (all of it comes back).
    @return uint256 The part of `pot` no seat is paid.
    """
    self._check_market()
    assert pot <= MAX_AMOUNT, "court: pot too large"
    status: uint256 = self._cases[job_id].status
    outcome: uint256 = self._get(status, OUTCOME_AT, OUTCOME_BITS)
    assert outcome != 0 and outcome != convert(OUTCOME_DROPPED, uint256), "court: case not decided"
    assert self._get(status, POT_FIXED_AT, 1) == 0, "court: pot already fixed"
    winning: uint256 = 0
    if outcome == convert(OUTCOME_OK, uint256):
        winning = self._get(status, OK_AT, COUNT_BITS)
    elif outcome == convert(OUTCOME_FRAUD, uint256):
        winning = self._get(status, FRAUD_AT, COUNT_BITS)
    reward: uint256 = 0
    if winning > 0:
        reward = pot // winning
    remainder: uint256 = pot - reward * winning
    self._cases[job_id].status = self._put(self._put(status, REWARD_AT, REWARD_BITS, reward), POT_FIXED_AT, 1, 1)
    log PotFixed(job_id=job_id, pot=pot, winning_seats=winning, reward_per_seat=reward, remainder=remainder)
    return remainder


# EXTERNAL: VOTERS #

@external
def commit_vote(job_id: uint256, commitment: bytes32):
    """
    @notice Commits the caller's sealed vote for all its seats of the
            current round.
    @dev `commitment = keccak256(abi_encode(job_id, voter, fraud, salt, digests_hash))`
         (`uint256, address, bool, bytes32, bytes32`) with
         `digests_hash = keccak256(abi_encode(digests))` (`bytes32[]`);
         `vote_commitment` computes it. Once per seated voter per round.
    @param job_id The job (voting, inside the round's commit window).
    @param commitment The sealed vote, non-zero.
    """
    status: uint256 = self._cases[job_id].status
    start: uint256 = self._voting_start(status)
    assert block.timestamp < start + self._get(self._cases[job_id].terms, COMMIT_AT, COMMIT_BITS), "court: commit window closed"
    assert commitment != empty(bytes32), "court: empty commitment"
    rnd: uint256 = self._get(status, ROUND_AT, ROUND_BITS)
    info: uint256 = self._seats[job_id][msg.sender][rnd].info
    seats: uint256 = self._get(info, SEATS_AT, SEATS_BITS)
    assert seats > 0, "court: not seated"
    assert self._get(info, STATUS_AT, STATUS_BITS) == SEAT_SEATED, "court: already committed"
    self._seats[job_id][msg.sender][rnd] = SeatSlots(
        commitment=commitment, info=self._put(info, STATUS_AT, STATUS_BITS, SEAT_COMMITTED)
    )
    log VoteCommitted(job_id=job_id, voter=msg.sender, round=rnd, seats=seats)


@external
def reveal_vote(
    job_id: uint256,
    fraud: bool,
    salt: bytes32,
    digests: DynArray[bytes32, MAX_AUDIT_SAMPLES],
    segments: DynArray[uint32, MAX_AUDIT_SAMPLES],
):
    """
    @notice Reveals the caller's vote of the current round. A fraud vote
            counts its seats as fraud seats whatever `digests` holds; an ok
            vote counts them as ok seats only if `digests` proves the
            replay, otherwise it is recorded as a no-show.
    @dev Proof of replay: `segments` are the opened segments `k_j` in
         ascending order (from `SegmentOpened`), `digests[j]` the work digest
         `w_{k_j + 1}` of segment `k_j`, and
         `acc_j = keccak256(concat(acc_{j-1}, keccak256(abi_encode(job_id, uint32(k_j + 1), digests[j]))))`
         from `acc_{-1} = 0` ends at the job's `seal_acc`. The chain binds
         every `k_j` and `w`, so only the opened segments' true digests match.
    @param job_id The job (voting, inside the round's reveal window).
    @param fraud True for "the audited work is fraudulent".
    @param salt The salt of the commitment.
    @param digests The replayed work digests (see `@dev`).
    @param segments The opened segments the digests belong to, ascending.
    """
    status: uint256 = self._cases[job_id].status
    start: uint256 = self._voting_start(status)
    commit_end: uint256 = start + self._get(self._cases[job_id].terms, COMMIT_AT, COMMIT_BITS)
    assert block.timestamp >= commit_end, "court: reveal window not open"
    assert block.timestamp < commit_end + self._get(self._cases[job_id].terms, REVEAL_AT, REVEAL_BITS), "court: reveal window closed"
    rnd: uint256 = self._get(status, ROUND_AT, ROUND_BITS)
    seat: SeatSlots = self._seats[job_id][msg.sender][rnd]
    seat_status: uint256 = self._get(seat.info, STATUS_AT, STATUS_BITS)
    assert seat_status != SEAT_SEATED, "court: no vote committed"
    assert seat_status == SEAT_COMMITTED, "court: already revealed"
    assert self._commitment(job_id, msg.sender, fraud, salt, digests) == seat.commitment, "court: commitment mismatch"
    seats: uint256 = self._get(seat.info, SEATS_AT, SEATS_BITS)
    counted: bool = True
    if fraud:
        seat_status = SEAT_FRAUD
        status = self._put(status, FRAUD_AT, COUNT_BITS, self._get(status, FRAUD_AT, COUNT_BITS) + seats)
    elif self._proves_replay(job_id, digests, segments, self._cases[job_id].seal_acc):
        seat_status = SEAT_OK
        status = self._put(status, OK_AT, COUNT_BITS, self._get(status, OK_AT, COUNT_BITS) + seats)
    else:
        seat_status = SEAT_NO_PROOF
        counted = False
    self._cases[job_id].status = status
    self._seats[job_id][msg.sender][rnd].info = self._put(seat.info, STATUS_AT, STATUS_BITS, seat_status)
    log VoteRevealed(job_id=job_id, voter=msg.sender, round=rnd, fraud=fraud, counted=counted, seats=seats)


@external
@nonreentrant
def settle(job_id: uint256, round: uint256, voter: address):
    """
    @notice Settles the seats `voter` held in `round` of a decided case:
            frees them, slashes their penalty to the requester and credits
            their reward. Anyone may call, once per (job, round, voter), in
            any order: every amount follows from counts fixed at the decision.
    @dev Deciding round of an OK or FRAUD case: a winner (revealed the
         winning side; an ok reveal needs a valid proof) is credited
         `seats * reward_per_seat`; a loser (revealed the other side) loses
         `seats * (SEAT_STAKE * voter_slash_bps // 10000)`; a no-show (did not
         reveal, or revealed ok without a proof) loses
         `seats * (SEAT_STAKE * noshow_slash_bps // 10000)`. Earlier rounds
         and a NO_DECISION case: revealers get nothing and lose nothing,
         no-shows lose the no-show penalty. A DROPPED case: nothing either
         way. Seats that lose nothing go back to the member's free seats;
         penalised seats leave the pool (their remaining stake is unlocked),
         so every seat in a pool stays backed by a full `SEAT_STAKE`.
    @param job_id The job.
    @param round The round, `<=` the case's deciding round.
    @param voter The seat holder.
    """
    status: uint256 = self._cases[job_id].status
    outcome: uint8 = convert(self._get(status, OUTCOME_AT, OUTCOME_BITS), uint8)
    assert outcome != OUTCOME_NONE, "court: case not decided"
    deciding: uint256 = self._get(status, ROUND_AT, ROUND_BITS)
    assert round <= deciding, "court: no such round"
    info: uint256 = self._seats[job_id][voter][round].info
    seats: uint256 = self._get(info, SEATS_AT, SEATS_BITS)
    assert seats > 0, "court: no seat"
    assert self._get(info, SETTLED_AT, 1) == 0, "court: seat already settled"
    self._seats[job_id][voter][round].info = self._put(info, SETTLED_AT, 1, 1)

    seat_status: uint256 = self._get(info, STATUS_AT, STATUS_BITS)
    revealed: bool = seat_status == SEAT_OK or seat_status == SEAT_FRAUD
    terms: uint256 = self._cases[job_id].terms
    penalty_bps: uint256 = 0
    reward: uint256 = 0
    if outcome != OUTCOME_DROPPED:
        if round == deciding and (outcome == OUTCOME_OK or outcome == OUTCOME_FRAUD):
            winning_status: uint256 = SEAT_OK
            if outcome == OUTCOME_FRAUD:
                winning_status = SEAT_FRAUD
            if seat_status == winning_status:
                reward = seats * self._get(status, REWARD_AT, REWARD_BITS)
            elif revealed:
                penalty_bps = self._get(terms, VOTER_BPS_AT, BPS_BITS)
            else:
                penalty_bps = self._get(terms, NOSHOW_BPS_AT, BPS_BITS)
        elif not revealed:
            penalty_bps = self._get(terms, NOSHOW_BPS_AT, BPS_BITS)
    penalty: uint256 = seats * (SEAT_STAKE * penalty_bps // BPS)

    dclass: bytes32 = self._cases[job_id].dclass
    member: uint256 = self._member[dclass][voter]
    leaf: uint256 = self._get(member, LEAF_AT, LEAF_BITS) - 1
    busy: uint256 = self._get(member, BUSY_AT, BUSY_BITS) - seats
    self._member[dclass][voter] = self._put(member, BUSY_AT, BUSY_BITS, busy)
    pool: uint256 = self._pool[dclass]
    self._pool[dclass] = self._put(pool, POOL_BUSY_AT, POOL_BUSY_BITS, self._get(pool, POOL_BUSY_AT, POOL_BUSY_BITS) - seats)
    slashed: uint256 = 0
    if penalty == 0:
        self._add(dclass, leaf, seats)
    else:
        if busy == 0 and self._free_of(dclass, leaf) == 0:
            self._release_leaf(dclass, leaf, voter)
        extcall stake_manager.unlock(voter, seats * SEAT_STAKE)
        slashed = extcall stake_manager.slash(voter, penalty, self.market.address)
        extcall self.market.credit_penalty(job_id, slashed)
    if reward > 0:
        extcall self.market.credit_from_pot(job_id, voter, reward)
    log SeatSettled(job_id=job_id, voter=voter, round=round, seats=seats, reward=reward, penalty=slashed)


# EXTERNAL: GOVERNANCE #

@external
def set_market(market_: address):
    """
    @notice Wires the JobMarket, once.
    @dev Reverts unless the market was deployed with this court (its
         constructor checked that both use the same StakeManager) and its
         `max_job_lifetime()` (which includes this court's rounds) stays
         below the StakeManager's unbonding period.
    @param market_ The JobMarket.
    """
    ownable._check_owner()
    assert self.market.address == empty(address), "court: market already set"
    assert market_ != empty(address), "court: market is zero address"
    assert staticcall IJobMarket(market_).court() == self, "court: market uses another court"
    self.market = IJobMarket(market_)
    self._check_lifetime()
    log MarketSet(market=market_)


@external
def set_committee_size(seats: uint256):
    """
    @notice Sets `committee_size` (seats of round 0), bounds [1, 31] and
            `(seats + 1) * 2**(max_rounds - 1) - 1 <= 31`. Open cases keep theirs.
    @dev Owner only; emits `ParameterSet("committee_size", old, new)`.
    @param seats The new value.
    """
    self.committee_size = self._set_parameter(P_COMMITTEE_SIZE, "committee_size", self.committee_size, seats)
    self._check_last_round()


@external
def set_max_rounds(rounds: uint256):
    """
    @notice Sets `max_rounds`, bounds [1, 5] and
            `(committee_size + 1) * 2**(rounds - 1) - 1 <= 31`;
            `JobMarket.max_job_lifetime` must stay below the unbonding period.
    @dev Owner only; emits `ParameterSet("max_rounds", old, new)`.
    @param rounds The new value.
    """
    self.max_rounds = self._set_parameter(P_MAX_ROUNDS, "max_rounds", self.max_rounds, rounds)
    self._check_last_round()
    self._check_lifetime()


@external
def set_commit_window(seconds: uint256):
    """
    @notice Sets `commit_window` (seconds), bounds [10, 604800];
            `JobMarket.max_job_lifetime` must stay below the unbonding period.
    @dev Owner only; emits `ParameterSet("commit_window", old, new)`.
    @param seconds The new value.
    """
    self.commit_window = self._set_parameter(P_COMMIT_WINDOW, "commit_window", self.commit_window, seconds)
    self._check_lifetime()


@external
def set_reveal_window(seconds: uint256):
    """
    @notice Sets `reveal_window` (seconds), bounds [10, 604800];
            `JobMarket.max_job_lifetime` must stay below the unbonding period.
    @dev Owner only; emits `ParameterSet("reveal_window", old, new)`.
    @param seconds The new value.
    """
    self.reveal_window = self._set_parameter(P_REVEAL_WINDOW, "reveal_window", self.reveal_window, seconds)
    self._check_lifetime()


@external
def set_voter_slash_bps(bps: uint256):
    """
    @notice Sets `voter_slash_bps` (a loser's penalty per seat), bounds
            [0, 5000] and below `noshow_slash_bps`.
    @dev Owner only; emits `ParameterSet("voter_slash_bps", old, new)`.
    @param bps The new value.
    """
    self.voter_slash_bps = self._set_parameter(P_VOTER_SLASH_BPS, "voter_slash_bps", self.voter_slash_bps, bps)
    self._check_noshow_above_voter()


@external
def set_noshow_slash_bps(bps: uint256):
    """
    @notice Sets `noshow_slash_bps` (a no-show's penalty per seat), bounds
            [1, 10000] and above `voter_slash_bps`.
    @dev Owner only; emits `ParameterSet("noshow_slash_bps", old, new)`.
    @param bps The new value.
    """
    self.noshow_slash_bps = self._set_parameter(P_NOSHOW_SLASH_BPS, "noshow_slash_bps", self.noshow_slash_bps, bps)
    self._check_noshow_above_voter()


@external
def set_min_class_stake(amount: uint256):
    """
    @notice Sets `min_class_stake` (token base units), bounds
            [SEAT_STAKE, 2**128 - 1]. Accepted jobs are not affected.
    @dev Owner only; emits `ParameterSet("min_class_stake", old, new)`.
    @param amount The new value.
    """
    self.min_class_stake = self._set_parameter(P_MIN_CLASS_STAKE, "min_class_stake", self.min_class_stake, amount)
    assert amount >= SEAT_STAKE, "court: below one seat"


# EXTERNAL: VIEWS #

@view
@external
def current_terms() -> uint256:
    """
    @notice The court's parameters packed as a case's terms word
            (`committee_size | max_rounds << 8 | commit_window << 16 |
            reveal_window << 48 | voter_slash_bps << 80 | noshow_slash_bps
            << 96`). JobMarket copies it when a job is accepted, so later
            parameter changes never apply to an accepted job.
    @return uint256 The terms word.
    """
    terms: uint256 = self._put(0, COMMITTEE_AT, COMMITTEE_BITS, self.committee_size)
    terms = self._put(terms, ROUNDS_AT, ROUNDS_BITS, self.max_rounds)
    terms = self._put(terms, COMMIT_AT, COMMIT_BITS, self.commit_window)
    terms = self._put(terms, REVEAL_AT, REVEAL_BITS, self.reveal_window)
    terms = self._put(terms, VOTER_BPS_AT, BPS_BITS, self.voter_slash_bps)
    return self._put(terms, NOSHOW_BPS_AT, BPS_BITS, self.noshow_slash_bps)


@view
@external
def max_voting_time() -> uint256:
    """
    @notice The longest a case votes: `max_rounds * (commit_window + reveal_window)`.
            `JobMarket.max_job_lifetime` adds it.
    @return uint256 Seconds.
    """
    return self.max_rounds * (self.commit_window + self.reveal_window)


@view
@external
def pool_stake(dclass: bytes32) -> uint256:
    """
    @notice Stake in the pool of `dclass`: (free + busy seats) * `SEAT_STAKE`.
    @param dclass The determinism class.
    @return uint256 Token base units.
    """
    return self._pool_seats(dclass) * SEAT_STAKE


@view
@external
def pool_of(dclass: bytes32) -> PoolView:
    """
    @notice The pool of `dclass`.
    @param dclass The determinism class.
    @return PoolView members, free seats, busy seats and stake.
    """
    pool: uint256 = self._pool[dclass]
    free: uint256 = self._node(dclass, 1)
    busy: uint256 = self._get(pool, POOL_BUSY_AT, POOL_BUSY_BITS)
    return PoolView(
        members=self._get(pool, USED_AT, USED_BITS) - self._get(pool, VACANT_AT, VACANT_BITS),
        free_seats=free,
        busy_seats=busy,
        stake=(free + busy) * SEAT_STAKE,
    )


@view
@external
def member_of(dclass: bytes32, member: address) -> MemberView:
    """
    @notice A member's seats in the pool of `dclass`.
    @param dclass The determinism class.
    @param member The account.
    @return MemberView free and busy seats (both 0 for a non-member).
    """
    word: uint256 = self._member[dclass][member]
    if word == 0:
        return empty(MemberView)
    return MemberView(
        free_seats=self._free_of(dclass, self._get(word, LEAF_AT, LEAF_BITS) - 1),
        busy_seats=self._get(word, BUSY_AT, BUSY_BITS),
    )


@view
@external
def case_of(job_id: uint256) -> CaseView:
    """
    @notice The case of a job (all zero before `open_case`).
    @param job_id The job.
    @return CaseView See the struct.
    """
    c: CaseSlots = self._cases[job_id]
    start: uint256 = self._get(c.status, START_AT, START_BITS)
    commit_window: uint256 = self._get(c.terms, COMMIT_AT, COMMIT_BITS)
    reveal_window: uint256 = self._get(c.terms, REVEAL_AT, REVEAL_BITS)
    commit_end: uint256 = 0
    reveal_end: uint256 = 0
    if start > 0:
        commit_end = start + commit_window
        reveal_end = commit_end + reveal_window
    return CaseView(
        dclass=c.dclass,
        seed=c.seed,
        seal_acc=c.seal_acc,
        committee_size=self._get(c.terms, COMMITTEE_AT, COMMITTEE_BITS),
        max_rounds=self._get(c.terms, ROUNDS_AT, ROUNDS_BITS),
        commit_window=commit_window,
        reveal_window=reveal_window,
        voter_slash_bps=self._get(c.terms, VOTER_BPS_AT, BPS_BITS),
        noshow_slash_bps=self._get(c.terms, NOSHOW_BPS_AT, BPS_BITS),
        round=self._get(c.status, ROUND_AT, ROUND_BITS),
        voting_start=start,
        commit_end=commit_end,
        reveal_end=reveal_end,
        drawn_seats=self._get(c.status, DRAWN_AT, COUNT_BITS),
        ok_seats=self._get(c.status, OK_AT, COUNT_BITS),
        fraud_seats=self._get(c.status, FRAUD_AT, COUNT_BITS),
        outcome=convert(self._get(c.status, OUTCOME_AT, OUTCOME_BITS), uint8),
        reward_per_seat=self._get(c.status, REWARD_AT, REWARD_BITS),
    )


@view
@external
def seat_of(job_id: uint256, round: uint256, voter: address) -> SeatView:
    """
    @notice The seats `voter` holds in `round` of a job's case and its vote.
    @param job_id The job.
    @param round The round, `< MAX_ROUNDS`.
    @param voter The account.
    @return SeatView commitment, seats (0: not seated), status and whether settled.
    """
    s: SeatSlots = self._seats[job_id][voter][round]
    return SeatView(
        commitment=s.commitment,
        seats=self._get(s.info, SEATS_AT, SEATS_BITS),
        status=self._get(s.info, STATUS_AT, STATUS_BITS),
        settled=self._get(s.info, SETTLED_AT, 1) == 1,
    )


@pure
@external
def vote_commitment(job_id: uint256, voter: address, fraud: bool, salt: bytes32, digests: DynArray[bytes32, MAX_AUDIT_SAMPLES]) -> bytes32:
    """
    @notice The commitment `commit_vote` expects:
            `keccak256(abi_encode(job_id, voter, fraud, salt, keccak256(abi_encode(digests))))`.
    @param job_id The job.
    @param voter The voter.
    @param fraud The vote.
    @param salt A fresh random 32-byte salt.
    @param digests The replayed work digests (may be empty for a fraud vote).
    @return bytes32 The commitment.
    """
    return self._commitment(job_id, voter, fraud, salt, digests)


# INTERNAL #

@view
@internal
def _check_market():
    assert msg.sender == self.market.address, "court: caller is not the market"


@view
@internal
def _voting_start(status: uint256) -> uint256:
    """
    @dev The current round's start; reverts unless the case votes now
         (opened, voting started, not decided).
    """
    start: uint256 = self._get(status, START_AT, START_BITS)
    assert start != 0 and self._get(status, OUTCOME_AT, OUTCOME_BITS) == 0, "court: case not voting"
    return start


@internal
def _log_voting_started(job_id: uint256, rnd: uint256, terms: uint256):
    """
    @dev Emits `VotingStarted` for a round starting now.
    """
    commit_end: uint256 = block.timestamp + self._get(terms, COMMIT_AT, COMMIT_BITS)
    log VotingStarted(job_id=job_id, round=rnd, commit_end=commit_end, reveal_end=commit_end + self._get(terms, REVEAL_AT, REVEAL_BITS))


@internal
def _log_decided(job_id: uint256, status: uint256, outcome: uint8):
    """
    @dev Emits `CaseDecided` with the counts of the deciding round.
    """
    log CaseDecided(
        job_id=job_id,
        round=self._get(status, ROUND_AT, ROUND_BITS),
        outcome=outcome,
        drawn_seats=self._get(status, DRAWN_AT, COUNT_BITS),
        ok_seats=self._get(status, OK_AT, COUNT_BITS),
        fraud_seats=self._get(status, FRAUD_AT, COUNT_BITS),
    )


@internal
def _draw_round(job_id: uint256, dclass: bytes32, seed: bytes32, rnd: uint256, size: uint256) -> uint256:
    """
    @dev Draws up to `size` seats of round `rnd` without replacement, each
         in proportion to the members' free seats; stops early when the
         pool has no free seat left. Returns the seats drawn.
    """
    voters: DynArray[address, MAX_COMMITTEE] = []
    for j: uint256 in range(size, bound=MAX_COMMITTEE):
        free_total: uint256 = self._node(dclass, 1)
        if free_total == 0:
            break
        leaf: uint256 = self._find_leaf(dclass, convert(keccak256(abi_encode(seed, j)), uint256) % free_total)
        self._sub(dclass, leaf, 1)
        voter: address = self._leaf_owner[dclass][leaf]
        member: uint256 = self._member[dclass][voter]
        self._member[dclass][voter] = self._put(member, BUSY_AT, BUSY_BITS, self._get(member, BUSY_AT, BUSY_BITS) + 1)
        self._seats[job_id][voter][rnd].info += 1 << SEATS_AT
        voters.append(voter)
    drawn: uint256 = len(voters)
    pool: uint256 = self._pool[dclass]
    self._pool[dclass] = self._put(pool, POOL_BUSY_AT, POOL_BUSY_BITS, self._get(pool, POOL_BUSY_AT, POOL_BUSY_BITS) + drawn)
    log SeatsDrawn(job_id=job_id, round=rnd, voters=voters)
    return drawn


@view
@internal
def _find_leaf(dclass: bytes32, target: uint256) -> uint256:
    """
    @dev The leaf whose cumulative free-seat interval holds `target`
         (`target < free seats of the pool`): one node per level.
    """
    node: uint256 = 1
    rest: uint256 = target
    for _: uint256 in range(TREE_DEPTH):
        left: uint256 = 2 * node
        weight: uint256 = self._node(dclass, left)
        if rest < weight:
            node = left
        else:
            rest -= weight
            node = left + 1
    return node - MAX_POOL_MEMBERS


@view
@internal
def _node(dclass: bytes32, node: uint256) -> uint256:
    """
    @dev Free seats under `node`. A node is stored as its value + 1 once
         written, so one that empties never goes back to zero storage: a seat
         drawn and later returned costs a warm write per level, not a fresh
         20 000-gas slot (0 means "never written", i.e. also 0 seats).
    """
    stored: uint256 = self._tree[dclass][node]
    if stored == 0:
        return 0
    return stored - 1


@view
@internal
def _free_of(dclass: bytes32, leaf: uint256) -> uint256:
    return self._node(dclass, MAX_POOL_MEMBERS + leaf)


@internal
def _add(dclass: bytes32, leaf: uint256, seats: uint256):
    """
    @dev Adds `seats` free seats to `leaf` and every node above it.
    """
    node: uint256 = MAX_POOL_MEMBERS + leaf
    for _: uint256 in range(TREE_DEPTH + 1):
        self._tree[dclass][node] = self._node(dclass, node) + seats + 1
        node //= 2


@internal
def _sub(dclass: bytes32, leaf: uint256, seats: uint256):
    """
    @dev Takes `seats` free seats from `leaf` and every node above it.
    """
    node: uint256 = MAX_POOL_MEMBERS + leaf
    for _: uint256 in range(TREE_DEPTH + 1):
        self._tree[dclass][node] -= seats
        node //= 2


@internal
def _take_leaf(dclass: bytes32, account: address) -> uint256:
    """
    @dev A leaf for a new member: the last vacated one, else the next unused.
    """
    pool: uint256 = self._pool[dclass]
    vacant: uint256 = self._get(pool, VACANT_AT, VACANT_BITS)
    leaf: uint256 = 0
    if vacant > 0:
        leaf = self._vacant[dclass][vacant - 1]
        pool = self._put(pool, VACANT_AT, VACANT_BITS, vacant - 1)
    else:
        leaf = self._get(pool, USED_AT, USED_BITS)
        assert leaf < MAX_POOL_MEMBERS, "court: pool full"
        pool = self._put(pool, USED_AT, USED_BITS, leaf + 1)
    self._pool[dclass] = pool
    self._leaf_owner[dclass][leaf] = account
    return leaf


@internal
def _release_leaf(dclass: bytes32, leaf: uint256, account: address):
    """
    @dev Frees the leaf of a member left with no seat (its free seats are
         already 0) for the next member.
    """
    pool: uint256 = self._pool[dclass]
    vacant: uint256 = self._get(pool, VACANT_AT, VACANT_BITS)
    self._vacant[dclass][vacant] = leaf
    self._pool[dclass] = self._put(pool, VACANT_AT, VACANT_BITS, vacant + 1)
    self._leaf_owner[dclass][leaf] = empty(address)
    self._member[dclass][account] = 0


@view
@internal
def _pool_seats(dclass: bytes32) -> uint256:
    return self._node(dclass, 1) + self._get(self._pool[dclass], POOL_BUSY_AT, POOL_BUSY_BITS)


@pure
@internal
def _commitment(job_id: uint256, voter: address, fraud: bool, salt: bytes32, digests: DynArray[bytes32, MAX_AUDIT_SAMPLES]) -> bytes32:
    return keccak256(abi_encode(job_id, voter, fraud, salt, keccak256(abi_encode(digests))))


@pure
@internal
def _proves_replay(job_id: uint256, digests: DynArray[bytes32, MAX_AUDIT_SAMPLES], segments: DynArray[uint32, MAX_AUDIT_SAMPLES], seal_acc: bytes32) -> bool:
    """
    @dev Rebuilds the seal accumulator of `segments` from `digests` and
         compares it with `seal_acc` (see `reveal_vote`).
    """
    if len(digests) == 0 or len(digests) != len(segments):
        return False
    acc: bytes32 = empty(bytes32)
    for j: uint256 in range(len(digests), bound=MAX_AUDIT_SAMPLES):
        acc = keccak256(concat(acc, keccak256(abi_encode(job_id, segments[j] + 1, digests[j]))))
    return acc == seal_acc


@internal
def _set_parameter(param: uint256, name: String[20], old: uint256, new: uint256) -> uint256:
    """
    @dev Checks the owner and the hard bounds of parameter `param`, logs the
         change and returns `new`; the cross-parameter rules are checked by
         the setter after the store.
    """
    ownable._check_owner()
    assert new >= PARAM_MIN[param] and new <= PARAM_MAX[param], "court: parameter out of bounds"
    log ParameterSet(name=name, old_value=old, new_value=new)
    return new


@view
@internal
def _check_last_round():
    assert (self.committee_size + 1) << (self.max_rounds - 1) <= MAX_COMMITTEE + 1, "court: last round too large"


@view
@internal
def _check_noshow_above_voter():
    assert self.noshow_slash_bps > self.voter_slash_bps, "court: no-show must lose more"


@view
@internal
def _check_lifetime():
    """
    @dev Once wired, the market's `max_job_lifetime()` (which reads this
         court's `max_voting_time()`) must stay below the unbonding period.
    """
    if self.market.address != empty(address):
        assert staticcall self.market.max_job_lifetime() < staticcall stake_manager.unbonding_period(), "court: lifetime exceeds unbonding"


@pure
@internal
def _get(word: uint256, at: uint256, bits: uint256) -> uint256:
    return (word >> at) & ((1 << bits) - 1)


@pure
@internal
def _put(word: uint256, at: uint256, bits: uint256, v: uint256) -> uint256:
    mask: uint256 = ((1 << bits) - 1) << at
    assert v < 1 << bits, "court: field overflow"
    return (word & ~mask) | (v << at)
