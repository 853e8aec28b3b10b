"""Cheaters against a real verifier daemon on anvil: the cheater is slashed and
the requester refunded; an honest provider is paid and the verifier earns its fee.

A worker (``greenproof worker run --cheat NAME``) and a verifier
(``greenproof verifier run``) run as real subprocesses; the test only posts the
job, stakes, and moves anvil's clock past the vote windows when the daemons
are waiting on them. Every strategy is covered at engine level
(tests/python/test_cheats_detection.py); here two representative ones (a replay mismatch, a swapped delivery).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from greenproof.chain.gateway import Gateway
from greenproof.chain.models import JobState, VoteStatus
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*argv: str) -> str:
    result = CliRunner().invoke(cli, list(argv), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def start(argv: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([str(Path(sys.executable).parent / "greenproof"), "-v", *argv],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def drive(anvil, market: Gateway, job_id: int, verifier_addr: str, procs: list[subprocess.Popen],
          logs: list[Path], on_voting, timeout: float = 150.0) -> JobState:
    """Mine blocks for the seed draw and warp past the vote windows once the
    verifier has committed (then revealed); return the job's final state.
    ``on_voting()`` runs once when the job enters voting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p, path in zip(procs, logs, strict=True):
            if p.poll() not in (None, 0):
                pytest.fail(f"daemon exited with {p.returncode}:\n{path.read_text()[-4000:]}")
        job = market.job(job_id)
        if job.state.final:
            return job.state
        if job.state in (JobState.COMMITTED, JobState.AUDITING):
            anvil.mine(1)  # the seed block, then keep blocks coming for the daemons
        elif job.state is JobState.VOTING:
            if on_voting is not None:
                on_voting()
                on_voting = None
            vote = market.vote_of(job_id, verifier_addr)
            commit_end, reveal_end = market.vote_windows(job)
            now = market.chain.timestamp()
            if vote.status is VoteStatus.COMMITTED and now < commit_end:
                anvil.evm_increase_time(commit_end - now)
            elif vote.revealed and now < reveal_end:
                anvil.evm_increase_time(reveal_end - now)
        time.sleep(0.5)
    pytest.fail("job did not finalize in time:\n" + "\n".join(p.read_text()[-3000:] for p in logs))


# Every strategy is caught at engine level (tests/python/test_cheats_detection.py); on anvil
# with real daemons: one that fakes work, one that withholds checkpoints, one that swaps the
# delivered model, and energy inflation (flagged in the evidence, not slashable by itself).
@pytest.mark.parametrize("cheat", [None, "fake_hashes", "withhold", "swap_final", "inflate_energy"])
def test_cheater_is_slashed_and_honest_provider_paid(cheat, anvil, deployment, deployment_path, gateway_for,
                                                     account_choice, tmp_path):
    net = ["--network", anvil.rpc_url, "--deployment", str(deployment_path)]
    run_cli("provider", "stake", "100", *net, "--account", account_choice("provider"))
    run_cli("verifier", "stake", "100", *net, "--account", account_choice("verifier"))
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

    env = {**os.environ, "GREENPROOF_ENERGY_SOURCE": "fake"}
    port = free_port()
    worker_argv = ["worker", "run", *net, "--account", account_choice("provider"),
                   "--data-dir", str(tmp_path / "worker"), "--port", str(port), "--poll", "0.3",
                   "--exit-when-idle"]
    if cheat:
        worker_argv += ["--cheat", cheat, "--cheat-fraction", "1.0"]
    verifier_argv = ["verifier", "run", *net, "--account", account_choice("verifier"),
                     "--data-dir", str(tmp_path / "verifier"), "--poll", "0.3", "--exit-when-idle",
                     "--fetch-attempts", "2", "--fetch-backoff", "0.2"]
    logs = [tmp_path / "worker.log", tmp_path / "verifier.log"]
    procs = [start(worker_argv, logs[0], env), start(verifier_argv, logs[1], env)]
    checked: dict[str, object] = {}

    def challenge() -> None:  # `verifier check` while the artifacts are served
        result = CliRunner().invoke(cli, ["verifier", "check", str(job_id), "--json", *net,
                                          "--data-dir", str(tmp_path / "check"), "--fetch-attempts", "2"])
        checked.update(code=result.exit_code, report=json.loads(result.output))

    try:
        final = drive(anvil, market, job_id, verifier.address, procs, logs, challenge)
        for p, path in zip(procs, logs, strict=True):  # both settle, withdraw and exit by themselves
            try:
                assert p.wait(60) == 0, path.read_text()[-4000:]
            except subprocess.TimeoutExpired:
                pytest.fail(f"daemon did not exit when idle:\n{path.read_text()[-4000:]}")
    finally:
        for p in procs:
            stop(p)

    reports = list((tmp_path / "verifier" / "reports").glob(f"*-job-{job_id}.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    actions = [t["action"] for t in report["transactions"]]
    assert "commit_vote" in actions and "reveal_vote" in actions
    requester_after = market.token_balance() + market.claimable()
    verifier_gain = verifier.token_balance() - verifier_before
    slashable = cheat not in (None, "inflate_energy")
    assert checked["report"]["verdict"] == report["verdict"]
    assert checked["code"] == (1 if slashable else 0)
    if cheat == "inflate_energy":
        assert any("energy" in w for w in report["warnings"]), report
    if not slashable:
        assert final is JobState.PAID and report["verdict"] == "ok"
        assert requester_after == requester_before  # paid the provider; the fee went to the verifier
        assert verifier_gain == FEE * TOKEN
    else:
        assert final is JobState.SLASHED and report["verdict"] == "fraud", report["reasons"]
        # requester: payment back plus half the collateral (requester_share_bps = 5000)
        assert requester_after == requester_before + PAYMENT * TOKEN + COLLATERAL * TOKEN // 2
        # the fraud voter: the fee plus the rest of the collateral
        assert verifier_gain == FEE * TOKEN + COLLATERAL * TOKEN // 2
