"""The demo report's money ledger: what entered escrow (and the slashed collateral, the
pool's bonus, the seat penalties) equals where it went, path by path (docs/protocol.md §2.3.5)."""

from __future__ import annotations

from greenproof.chain.models import CaseOutcome, JobState
from greenproof.indexer import CaseRecord, JobView, RoundView, SeatVote
from greenproof.ledger import (
    ESCROW,
    FEES,
    HELD,
    POOL,
    PREMIUM,
    PREMIUM_BACK,
    REFUND,
    REMAINDER,
    SHARE,
    SLASH_SEATS,
    build_ledger,
)

T = 10**18


def _case(outcome: CaseOutcome, pot: int, winners: int, rewards: list[int], penalties: list[int] = ()) -> CaseRecord:
    seats = [SeatVote(voter=f"0x{i:040x}", seats=1, reward=r, settled=True) for i, r in enumerate(rewards)]
    seats += [SeatVote(voter=f"0x{9 + i:040x}", seats=1, penalty=p, settled=True) for i, p in enumerate(penalties)]
    reward = pot // winners if winners else 0
    return CaseRecord(dclass="0x00", committee_size=3, max_rounds=3, commit_window=60, reveal_window=60,
                      voter_slash_bps=1_000, noshow_slash_bps=2_000, rounds=[RoundView(round=0, seats=seats)],
                      outcome=outcome, decided_round=0, pot=pot, winning_seats=winners,
                      reward_per_seat=reward, remainder=pot - reward * winners)


def job(job_id: int, state: JobState, **kw) -> JobView:
    base = dict(job_id=job_id, payment=100 * T, verifier_fee=10 * T, green_premium=20 * T, state=state)
    return JobView(**(base | kw))


def test_every_path_balances_and_lands_where_the_rules_say() -> None:
    fee_reward = 10 * T // 3
    jobs = [
        # OK: payment + 80 % of the premium + bonus to the provider, the fee to 3 seats (1 wei back)
        job(1, JobState.PAID, paid=100 * T, premium=16 * T, bonus=5 * T,
            case=_case(CaseOutcome.OK, 10 * T, 3, [fee_reward] * 3, penalties=[2 * T])),
        # FRAUD: collateral 150 slashed, the requester's half, the rest to 2 fraud seats
        job(2, JobState.SLASHED, slashed=150 * T, slash_reason="fraud",
            case=_case(CaseOutcome.FRAUD, 75 * T, 2, [75 * T // 2] * 2)),
        # undrawn: no committee; the job's share 30 % to the requester, the rest to the pool
        job(3, JobState.SLASHED, slashed=150 * T, slash_reason="undrawn"),
        job(4, JobState.EXPIRED),  # an OPEN job nobody took: a full refund
        job(5, JobState.VOTING),  # not final: still held
    ]
    ledger = build_ledger(jobs, {3: 3_000})
    assert ledger.balanced, (ledger.incoming, ledger.outgoing)
    assert ledger.incoming[ESCROW] == 5 * 130 * T
    out = ledger.outgoing
    assert out[PREMIUM] == 16 * T and out[PREMIUM_BACK] == 4 * T
    assert out[FEES] == 3 * fee_reward and out[REMAINDER] == 10 * T - 3 * fee_reward
    assert out[SLASH_SEATS] == 75 * T and out[SHARE] == 75 * T + 45 * T
    assert out[POOL] == 105 * T
    assert out[REFUND] == 3 * 130 * T  # jobs 2, 3 and 4
    assert out[HELD] == 130 * T


def test_unsettled_seats_are_held_not_lost() -> None:
    ledger = build_ledger([job(1, JobState.PAID, paid=100 * T, premium=20 * T,
                               case=_case(CaseOutcome.OK, 10 * T, 2, [5 * T]))], {})
    assert ledger.balanced and ledger.outgoing[HELD] == 5 * T  # one winning seat not settled yet
