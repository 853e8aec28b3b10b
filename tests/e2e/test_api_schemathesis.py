"""Property-based run of the dashboard's JSON API against its own OpenAPI schema.

The app runs in-process (ASGI) over a fixed market snapshot — paid, slashed,
cancelled and open jobs, with a run record and an evidence report on disk —
so that every code path that renders a job is exercised. Schemathesis generates
valid and invalid inputs (huge, negative, non-numeric ids, unknown states) and
checks the responses: never a server error, always the documented schema.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from greenproof.chain.models import (
    AuditDrawn,
    CaseDecided,
    CaseOpened,
    CourtVotingStarted,
    Event,
    JobAccepted,
    JobCancelled,
    JobFinalized,
    JobPosted,
    PoolJoined,
    PotFixed,
    ProviderSlashed,
    ResultCommitted,
    SeatsDrawn,
    SeatSettled,
    SegmentOpened,
    VoteCommitted,
    VoteRevealed,
)
from greenproof.dashboard import StaticSource, create_app
from greenproof.indexer import MarketIndex

TOKEN = 10**18
PAID = 6  # JobMarket's STATE_PAID, as JobFinalized.outcome carries it
OK = 1  # VerifierCourt's OUTCOME_OK, as CaseDecided.outcome carries it
CLASS = b"\x02" * 32
VERIFIER, NO_SHOW = "0x" + "dd" * 20, "0x" + "ee" * 20


def _market() -> MarketIndex:
    def ev(cls: type[Event], block: int, **args: object) -> tuple[Event, int]:
        return cls(block_number=block, log_index=0, tx_hash="0x" + "00" * 32, **args), 1_700_000_000 + block

    def posted(job_id: int, block: int) -> tuple[Event, int]:
        return ev(JobPosted, block, job_id=job_id, requester="0x" + "aa" * 20,
                  spec_hash=b"\x01" * 32, spec_uri="data:application/json,{}", num_segments=4,
                  audit_samples=2, payment=10 * TOKEN, verifier_fee=TOKEN,
                  collateral=5 * TOKEN, deadline=1_700_009_999, min_green_bps=5000,
                  green_premium=TOKEN)

    index = MarketIndex()
    index.apply_all([
        posted(0, 1), posted(1, 2), posted(2, 3), posted(3, 4),
        ev(JobAccepted, 5, job_id=0, provider="0x" + "bb" * 20, determinism_class=b"\x02" * 32,
           collateral=5 * TOKEN),
        ev(JobAccepted, 5, job_id=1, provider="0x" + "cc" * 20, determinism_class=b"\x03" * 32,
           collateral=5 * TOKEN),
        ev(JobCancelled, 6, job_id=2, refund=11 * TOKEN),
        ev(ResultCommitted, 7, job_id=0, provider="0x" + "bb" * 20, root=b"\x04" * 32,
           final_state_hash=b"\x05" * 32, energy_mj=1_234, move_total=800, green_bps=7_500,
           result_uri="http://127.0.0.1:1/a", seed_block=9, draw_deadline=1_700_003_600),
        ev(AuditDrawn, 10, job_id=0, seed=b"\x06" * 32, indices=[1], targets=[500], open_deadline=1),
        ev(PoolJoined, 1, dclass=CLASS, member=VERIFIER, seats=2, member_seats=2, pool_seats=2),
        ev(PoolJoined, 1, dclass=CLASS, member=NO_SHOW, seats=1, member_seats=1, pool_seats=3),
        ev(CaseOpened, 10, job_id=0, dclass=CLASS, committee_size=3, max_rounds=3,
           commit_window=60, reveal_window=30, voter_slash_bps=1_000, noshow_slash_bps=2_000),
        ev(SeatsDrawn, 10, job_id=0, round=0, voters=[VERIFIER, NO_SHOW, VERIFIER]),
        ev(SegmentOpened, 11, job_id=0, index=1, start_hash=b"\x07" * 32, start_energy_mj=300,
           start_move=400, start_seal=b"\x09" * 32, end_hash=b"\x08" * 32, end_energy_mj=600,
           end_move=600, end_seal=b"\x0a" * 32),
        ev(CourtVotingStarted, 11, job_id=0, round=0, commit_end=1_700_000_071,
           reveal_end=1_700_000_101),
        ev(VoteCommitted, 12, job_id=0, voter=VERIFIER, round=0, seats=2),
        ev(VoteRevealed, 13, job_id=0, voter=VERIFIER, round=0, fraud=False, counted=True, seats=2),
        ev(CaseDecided, 14, job_id=0, round=0, outcome=OK, drawn_seats=3, ok_seats=2, fraud_seats=0),
        ev(PotFixed, 14, job_id=0, pot=TOKEN, winning_seats=2, reward_per_seat=TOKEN // 2, remainder=0),
        ev(JobFinalized, 14, job_id=0, outcome=PAID, paid=10 * TOKEN, bonus=2 * TOKEN,
           premium=3 * TOKEN // 4, energy_mj=1_234, carbon_mg=0),
        ev(SeatSettled, 15, job_id=0, voter=VERIFIER, round=0, seats=2, reward=TOKEN, penalty=0),
        ev(SeatSettled, 15, job_id=0, voter=NO_SHOW, round=0, seats=1, reward=0, penalty=TOKEN // 5),
        ev(ProviderSlashed, 16, job_id=1, provider="0x" + "cc" * 20, amount=5 * TOKEN,
           reason="unopened"),
    ])
    return index


DATA_DIR = Path(tempfile.mkdtemp(prefix="greenproof-schemathesis-"))
(DATA_DIR / "run-0.json").write_text(json.dumps(
    {"job_id": 0, "losses": [2.3, 1.9, 1.2, 0.8], "energies_mj": [0, 300, 600, 900, 1234]}))
(DATA_DIR / "evidence-0.json").write_text(json.dumps({"job_id": 0, "verdict": "ok"}))
(DATA_DIR / "garbage.json").write_text("{not json")

app = create_app(StaticSource(_market().snapshot()), data_dirs=[DATA_DIR])
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_fails_and_matches_its_schema(case: schemathesis.Case) -> None:
    case.call_and_validate(
        checks=[not_a_server_error, status_code_conformance, response_schema_conformance]
    )


def test_the_api_reports_the_market_it_was_given() -> None:
    from fastapi.testclient import TestClient

    client = TestClient(app)
    jobs = {j["job_id"]: j["state"] for j in client.get("/api/jobs").json()}
    assert jobs == {0: "PAID", 1: "SLASHED", 2: "CANCELLED", 3: "OPEN"}
    assert [j["job_id"] for j in client.get("/api/jobs", params={"state": "OPEN"}).json()] == [3]
    detail = client.get("/api/jobs/0").json()
    assert detail["losses"] == [2.3, 1.9, 1.2, 0.8]
    assert detail["segment_energy_wh"][-1] == (1234 - 900) / 3_600_000
    assert detail["evidence"] == [{"job_id": 0, "verdict": "ok"}]
    assert client.get("/api/jobs/99").status_code == 404
    assert client.get("/api/jobs/-1").status_code == 422
    assert client.get("/api/jobs/abc").status_code == 422
    missing = client.get("/jobs/99")  # a page answers with a page, the API with JSON
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
    assert "job 99 not found" in missing.text
    bad = client.get("/jobs/abc")
    assert bad.status_code == 404 and "text/html" in bad.headers["content-type"]
    page = client.get("/jobs/0").text
    assert "Job #0" in page and "<svg" in page and "verdict: ok" in page
    assert "training step" in page and ">loss</text>" in page  # the curve has axes
    assert "{'start_hash'" not in page and 'id="openings"' in page  # leaves as a table, not dict text
    assert "audited segments: 1 · 2 samples (1 uniform, 1 by movement)" in page
    assert "75.0 % green at commit" in page
    stats = client.get("/api/stats").json()
    assert stats["total_paid"] == 10 * TOKEN and stats["total_slashed"] == 5 * TOKEN
    providers = {p["address"]: p for p in client.get("/api/providers").json()}
    assert providers["0x" + "cc" * 20]["jobs_slashed"] == 1
    committee = detail["job"]["case"]["rounds"][0]["seats"]
    assert [(s["voter"], s["seats"], s["result"]) for s in committee] == [
        (VERIFIER, 2, "won"), (NO_SHOW, 1, "no-show")]
    assert "no-show" in page and "round 0" in page and "OK</b> in round 0" in page
    (pool,) = client.get("/api/pools").json()
    assert pool["seats"] == 2 and [m["address"] for m in pool["members"]] == [VERIFIER]
    verifiers = client.get("/verifiers").text
    assert "Class pools" in verifiers and "no-shows" in verifiers
    for path in ("/", "/providers"):
        assert client.get(path).status_code == 200
