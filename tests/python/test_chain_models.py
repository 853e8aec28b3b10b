"""The typed views and events match the contracts' ABIs, and are strict: a renamed or
dropped field fails loudly, an unknown enum value too, never a silent 0."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from greenproof.chain.compile import artifact
from greenproof.chain.models import (
    COURT_EVENTS,
    MARKET_EVENTS,
    CaseDecided,
    CaseOutcome,
    CaseView,
    CourtParameterSet,
    CourtVotingStarted,
    Event,
    MemberView,
    OnchainJob,
    ParameterSet,
    PoolView,
    SeatsDrawn,
    SeatStatus,
    SeatView,
    SegmentOpened,
)

LOG = {"block_number": 7, "log_index": 0, "tx_hash": "0x" + "ab" * 32}
WORD = b"\x01" * 32


def _case(**over: Any) -> dict[str, Any]:
    return {
        "dclass": WORD, "seed": WORD, "seal_acc": WORD, "committee_size": 3, "max_rounds": 3,
        "commit_window": 60, "reveal_window": 60, "voter_slash_bps": 1000, "noshow_slash_bps": 2000,
        "round": 0, "voting_start": 100, "commit_end": 160, "reveal_end": 220, "drawn_seats": 3,
        "ok_seats": 0, "fraud_seats": 0, "outcome": 0, "reward_per_seat": 0, **over,
    }


def _abi_fields(contract: str, kind: str, name: str) -> list[str]:
    for item in artifact(contract).abi:
        if item["type"] == kind and item["name"] == name:
            if kind == "event":
                return [i["name"] for i in item["inputs"]]
            (out,) = item["outputs"]
            return [c["name"] for c in out["components"]]
    raise AssertionError(f"{contract} has no {kind} {name}")


def _model_fields(model: type) -> list[str]:
    return [n for n in model.model_fields if n not in Event.model_fields]


@pytest.mark.parametrize(("contract", "events"), [("JobMarket", MARKET_EVENTS), ("VerifierCourt", COURT_EVENTS)])
def test_every_event_model_has_its_abi_fields(contract: str, events: dict[str, type[Event]]) -> None:
    for name, model in events.items():
        assert model.event_name() == name
        assert model.contract == ("market" if contract == "JobMarket" else "court")
        assert sorted(_model_fields(model)) == sorted(_abi_fields(contract, "event", name)), name


@pytest.mark.parametrize(("contract", "view", "model"), [
    ("JobMarket", "get_job", OnchainJob),
    ("VerifierCourt", "case_of", CaseView),
    ("VerifierCourt", "seat_of", SeatView),
    ("VerifierCourt", "member_of", MemberView),
    ("VerifierCourt", "pool_of", PoolView),
])
def test_every_view_model_has_its_struct_fields(contract: str, view: str, model: type) -> None:
    fields = [n for n in model.model_fields if n != "job_id"]
    assert fields == _abi_fields(contract, "function", view)


def test_events_of_two_contracts_with_one_name_are_told_apart_by_abi_name() -> None:
    assert CourtVotingStarted.event_name() == "VotingStarted"
    assert CourtParameterSet.event_name() == "ParameterSet" == ParameterSet.event_name()
    assert COURT_EVENTS["ParameterSet"] is CourtParameterSet and MARKET_EVENTS["ParameterSet"] is ParameterSet
    assert "VotingStarted" not in MARKET_EVENTS  # the market's own votes are gone


def test_a_case_decodes_its_outcome_and_knows_its_phase() -> None:
    voting = CaseView.model_validate(_case())
    assert voting.outcome is CaseOutcome.NONE and voting.voting and not voting.decided
    fraud = CaseView.model_validate(_case(outcome=2))
    assert fraud.outcome is CaseOutcome.FRAUD and fraud.decided and not fraud.voting
    assert not CaseView.model_validate(_case(committee_size=0, voting_start=0)).exists


def test_a_seat_decodes_its_status() -> None:
    seat = SeatView(commitment=WORD, seats=2, status=4, settled=False)
    assert seat.status is SeatStatus.NO_PROOF and seat.seated and seat.committed
    assert not SeatView(commitment=b"\0" * 32, seats=0, status=0, settled=False).seated


@pytest.mark.parametrize("raw", [{**_case(), "outcome": 9}, {**_case(), "extra": 1},
                                 {k: v for k, v in _case().items() if k != "reveal_end"}])
def test_a_case_view_is_strict(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CaseView.model_validate(raw)


def test_a_seat_view_rejects_an_unknown_status() -> None:
    with pytest.raises(ValidationError, match="unknown seat status"):
        SeatView(commitment=WORD, seats=1, status=5, settled=False)


def test_court_events_are_strict() -> None:
    drawn = SeatsDrawn(**LOG, job_id=1, round=0, voters=["0x" + "33" * 20] * 2)
    assert len(drawn.voters) == 2
    with pytest.raises(ValidationError):
        SeatsDrawn(**LOG, job_id=1, voters=[])  # round missing
    with pytest.raises(ValidationError):
        CaseDecided(**LOG, job_id=1, round=0, outcome=7, drawn_seats=3, ok_seats=0, fraud_seats=3)
    assert CaseDecided(**LOG, job_id=1, round=1, outcome=1, drawn_seats=7, ok_seats=4,
                       fraud_seats=0).outcome is CaseOutcome.OK


def test_segment_opened_carries_both_seals_and_movements() -> None:
    fields = {"index": 2, "start_hash": WORD, "start_energy_mj": 1, "end_hash": WORD, "end_energy_mj": 2}
    with pytest.raises(ValidationError):
        SegmentOpened(**LOG, job_id=1, **fields, start_move=0, end_move=5)
    with pytest.raises(ValidationError):  # a renamed or dropped movement fails loudly, never defaults to 0
        SegmentOpened(**LOG, job_id=1, **fields, start_seal=WORD, end_seal=b"\x02" * 32)
    opened = SegmentOpened(**LOG, job_id=1, **fields, start_seal=WORD, end_seal=b"\x02" * 32, start_move=3,
                           end_move=2**200)
    assert opened.end_seal == b"\x02" * 32 and (opened.start_move, opened.end_move) == (3, 2**200)


def test_an_event_is_built_from_a_web3_log() -> None:
    from hexbytes import HexBytes

    entry = {"args": {"job_id": 4, "round": 1, "commit_end": 10, "reveal_end": 20},
             "blockNumber": 9, "logIndex": 3, "transactionHash": HexBytes(b"\xcd" * 32)}
    ev = CourtVotingStarted.from_log(entry)
    assert (ev.job_id, ev.round, ev.block_number, ev.tx_hash) == (4, 1, 9, "0x" + "cd" * 32)


def test_chain_times_read_as_dates_in_logs() -> None:
    from greenproof.chain.clock import chain_time

    assert chain_time(1_795_953_605) == "2026-11-29 12:00:05 UTC (1795953605)"
