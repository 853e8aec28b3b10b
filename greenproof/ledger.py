"""Where every token of a set of jobs went: a ledger whose two sides add up.

What entered (the escrow each job posted, the collateral slashed, the bonus drawn
from the pool, the seat penalties) equals what left (to providers, to committee
seats, back to the requester, to the bonus pool) plus what is still held (jobs not
final, pots not yet settled). The rules are JobMarket's (docs/protocol.md §2.3.5):
the ledger re-derives each amount from the indexed events and the job's
``requester_share_bps`` (fixed at acceptance), so a rule that moved money
differently would make the two sides disagree (``tests/python/test_ledger.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from greenproof.chain.models import CaseOutcome, JobState
from greenproof.indexer import JobView

BPS = 10_000


@dataclass
class Ledger:
    """Amounts by line, in token base units; ``incoming`` and ``outgoing`` balance."""

    incoming: dict[str, int] = field(default_factory=dict)
    outgoing: dict[str, int] = field(default_factory=dict)

    def add_in(self, label: str, amount: int) -> None:
        if amount:
            self.incoming[label] = self.incoming.get(label, 0) + amount

    def add_out(self, label: str, amount: int) -> None:
        if amount:
            self.outgoing[label] = self.outgoing.get(label, 0) + amount

    @property
    def total_in(self) -> int:
        return sum(self.incoming.values())

    @property
    def total_out(self) -> int:
        return sum(self.outgoing.values())

    @property
    def balanced(self) -> bool:
        return self.total_in == self.total_out


ESCROW = "escrow posted (payment + fee + green premium)"
SLASHED = "provider collateral slashed"
BONUS_IN = "green bonus drawn from the pool"
PENALTIES_IN = "seat penalties (verifiers' stake)"
TO_PROVIDER = "payment to providers"
PREMIUM = "green premium to providers"
BONUS_OUT = "green bonus to providers"
FEES = "verifier fees to the ok seats"
SLASH_SEATS = "slashed collateral to the fraud seats"
REFUND = "payment, fee and premium back to the requester"
PREMIUM_BACK = "unearned green premium back to the requester"
SHARE = "requester's share of slashed collateral"
REMAINDER = "pot remainder back to the requester (rounding, no decision)"
PENALTIES_OUT = "seat penalties to the requester"
POOL = "slashed collateral to the bonus pool"
HELD = "still held (job not final, or seats not settled)"


def build_ledger(jobs: Iterable[JobView], share_bps: Mapping[int, int]) -> Ledger:
    """The ledger of ``jobs``; ``share_bps[job_id]`` is the job's ``requester_share_bps``
    (``get_job``), needed for slashes that no committee judged."""
    ledger = Ledger()
    for job in jobs:
        _job(ledger, job, share_bps.get(job.job_id, 0))
    return ledger


def _job(ledger: Ledger, job: JobView, share: int) -> None:
    escrow = job.payment + job.verifier_fee + job.green_premium
    ledger.add_in(ESCROW, escrow)
    ledger.add_in(SLASHED, job.slashed)
    ledger.add_in(BONUS_IN, job.bonus)
    penalties = sum(s.penalty for r in job.rounds for s in r.seats)
    ledger.add_in(PENALTIES_IN, penalties)
    ledger.add_out(PENALTIES_OUT, penalties)
    if not job.state.final:
        ledger.add_out(HELD, escrow)
        return
    if job.state in (JobState.CANCELLED, JobState.EXPIRED) and not job.slashed:
        ledger.add_out(REFUND, escrow)
        return
    case = job.case
    if job.state is JobState.PAID:
        ledger.add_out(TO_PROVIDER, job.paid)
        ledger.add_out(PREMIUM, job.premium)
        ledger.add_out(PREMIUM_BACK, job.green_premium - job.premium)
        ledger.add_out(BONUS_OUT, job.bonus)
        _pot(ledger, case, job.verifier_fee, FEES)
        return
    # SLASHED (fraud, undrawn, unopened) or EXPIRED after acceptance
    ledger.add_out(REFUND, escrow)
    if case is not None and case.outcome is CaseOutcome.FRAUD:
        ledger.add_out(SHARE, job.slashed - case.pot)
        _pot(ledger, case, case.pot, SLASH_SEATS)
    else:
        to_requester = job.slashed * share // BPS
        ledger.add_out(SHARE, to_requester)
        ledger.add_out(POOL, job.slashed - to_requester)


def _pot(ledger: Ledger, case: object, pot: int, label: str) -> None:
    """A finalized job's pot: paid to its winning seats as they settle, the rest back."""
    if case is None or getattr(case, "winning_seats", 0) == 0:
        ledger.add_out(REMAINDER, pot)
        return
    settled = sum(s.reward for r in case.rounds for s in r.seats)  # type: ignore[attr-defined]
    ledger.add_out(label, settled)
    ledger.add_out(REMAINDER, case.remainder)  # type: ignore[attr-defined]
    ledger.add_out(HELD, pot - settled - case.remainder)  # type: ignore[attr-defined]
