"""Cheaters against a real verifier daemon on anvil: the cheater is slashed by its
committee and the requester refunded; an honest provider is paid and the verifier
earns the fee for its seats.

A worker (``greenproof worker run --cheat NAME``) and a verifier
(``greenproof verifier run``) run as real subprocesses; the verifier stakes and
joins the court's pool of this machine's class with three seats
(``greenproof verifier join --seats 3``), so it holds every seat of round 0;
the test only posts the job and moves anvil's clock past the vote windows once
the verifier committed (then revealed). Every strategy is covered at engine level
(tests/python/test_cheats_detection.py, tests/python/test_forgers.py); here
representative ones (a replay mismatch, withheld checkpoints, a swapped delivery,
inflated energy, and a single forged boundary whose jump is claimed nowhere: with
2 segments the verifier either replays the forged segment or sees the triangle
broken between boundary 0 and the next known one).
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from greenproof.chain.devnet import free_port
from greenproof.chain.models import CaseOutcome, JobState
from greenproof.cli import cli

pytestmark = pytest.mark.anvil

TOKEN = 10**18
SPEC_YAML = """\
task: mlp
model: {hidden: 16, depth: 1}
dataset: {uri: "builtin://digits"}
batch_size: 16
total_steps: 4
segment_steps: 2
seed: 11
"""
PAYMENT, FEE, COLLATERAL = 10, 2, 10  # whole tokens
SEATS = 3  # the court's default committee: the verifier holds every seat


def run_cli(*argv: str) -> str:
    result = CliRunner().invoke(cli, list(argv), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


# Every strategy is caught at engine level (tests/python/test_cheats_detection.py); on anvil
# with real daemons: one that fakes work, one that withholds checkpoints, one that swaps the
# delivered model, and energy inflation (flagged in the evidence, not slashable by itself).
@pytest.mark.parametrize("cheat", [None, "fake_hashes", "withhold", "swap_final", "inflate_energy",
                                   "forge_collapse_nowhere"])
def test_cheater_is_slashed_and_honest_provider_paid(cheat, anvil, deployment, deployment_path, gateway_for,
                                                     account_choice, tmp_path, daemons, drive_court):
    net = ["--network", anvil.rpc_url, "--deployment", str(deployment_path)]
    run_cli("provider", "stake", "100", *net, "--account", account_choice("provider"))
    run_cli("verifier", "stake", str(SEATS * 100), *net, "--account", account_choice("verifier"))
    joined = run_cli("verifier", "join", "--seats", str(SEATS), *net, "--account", account_choice("verifier"))
    assert "this machine replays fp32 jobs in class 0x" in joined and f"you hold {SEATS}" in joined
    spec = tmp_path / "job.yaml"
    spec.write_text(SPEC_YAML)
    posted = json.loads(run_cli("requester", "post", str(spec), "--payment", str(PAYMENT),
                                "--verifier-fee", str(FEE), "--collateral", str(COLLATERAL),
                                "--duration", "1800", "--audit-samples", "4", "--json",
                                *net, "--account", account_choice("requester")))
    job_id = int(posted["job_id"])

    market = gateway_for("requester")
    verifier = gateway_for("verifier")
    requester_before = market.token_balance() + market.claimable()
    verifier_before = verifier.token_balance()

    port = free_port()
    worker_argv = ["worker", "run", *net, "--account", account_choice("provider"),
                   "--data-dir", str(tmp_path / "worker"), "--port", str(port), "--poll", "0.3",
                   "--exit-when-idle"]
    if cheat:
        worker_argv += ["--cheat", cheat, "--cheat-fraction", "1.0"]
    verifier_argv = ["verifier", "run", *net, "--account", account_choice("verifier"),
                     "--data-dir", str(tmp_path / "verifier"), "--poll", "0.3", "--exit-when-idle",
                     "--fetch-attempts", "2", "--fetch-backoff", "0.2"]
    daemons.start(worker_argv, "worker")
    daemons.start(verifier_argv, "verifier")
    checked: dict[str, object] = {}

    def challenge(case) -> None:  # `verifier check` while the artifacts are served
        result = CliRunner().invoke(cli, ["verifier", "check", str(job_id), "--json", *net,
                                          "--data-dir", str(tmp_path / "check"), "--fetch-attempts", "2"])
        checked.update(code=result.exit_code, report=json.loads(result.output))

    final = drive_court(market, job_id, daemons, {verifier.address}, on_voting=challenge)
    daemons.wait_all()  # both settle, withdraw and exit by themselves

    reports = list((tmp_path / "verifier" / "reports").glob(f"*-job-{job_id}.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    actions = [t["action"] for t in report["transactions"]]
    assert {"commit_vote", "reveal_vote", "settle_seat"} <= set(actions)
    case = market.case_of(job_id)
    assert case.round == 0 and case.drawn_seats == SEATS
    assert market.seat_of(job_id, 0, verifier.address).settled
    requester_after = market.token_balance() + market.claimable()
    verifier_gain = verifier.token_balance() - verifier_before
    slashable = cheat not in (None, "inflate_energy")
    assert checked["report"]["verdict"] == report["verdict"]
    assert checked["code"] == (1 if slashable else 0)
    if cheat == "inflate_energy":
        assert any("energy" in w for w in report["warnings"]), report
    if not slashable:
        assert final is JobState.PAID and report["verdict"] == "ok"
        assert (case.outcome, case.ok_seats) == (CaseOutcome.OK, SEATS)  # the digests proved the replay
        reward = FEE * TOKEN // SEATS
        assert case.reward_per_seat == reward and verifier_gain == SEATS * reward
        # paid the provider; the fee went to the seats but for the division's remainder
        assert requester_after == requester_before + FEE * TOKEN - SEATS * reward
    else:
        assert final is JobState.SLASHED and report["verdict"] == "fraud", report["reasons"]
        assert (case.outcome, case.fraud_seats) == (CaseOutcome.FRAUD, SEATS)
        pot = COLLATERAL * TOKEN // 2  # the slashed collateral less the requester's share (5000 bps)
        reward = pot // SEATS
        assert case.reward_per_seat == reward and verifier_gain == SEATS * reward
        # requester: payment and fee back, half the collateral, the pot's remainder
        assert requester_after == requester_before + (PAYMENT + FEE) * TOKEN + COLLATERAL * TOKEN // 2 \
            + pot - SEATS * reward
