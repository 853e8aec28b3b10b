"""The court on anvil with real daemons: committees drawn by stake that must prove they replayed.

A worker (``greenproof worker run``) and verifier daemons (``greenproof verifier run``)
run as real subprocesses; each verifier joined the court's pool of this machine's class
with one seat, so a committee of three is drawn from the pool's members. Stories:

* an honest job is PAID: every seat revealed ok with the work digests that rebuild the
  job's seal accumulator (each vote counted), and each seat earns a third of the fee;
  the requester's fake identity, staked but in no pool, cannot vote (``court: not seated``);
* a cheater is SLASHED by its committee; a pool member the draw left out cannot vote;
* a lazy seated verifier that votes ok without replaying (made-up digests, sent through
  the gateway) is a no-show: it loses ``noshow_slash_bps`` of its seat, the honest
  seats win the fee.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from greenproof.chain.devnet import free_port
from greenproof.chain.errors import TxError
from greenproof.chain.gateway import Gateway
from greenproof.chain.models import CaseOutcome, JobState, SeatSettled, SeatStatus, VoteRevealed
from greenproof.cli import cli
from greenproof.merkle import vote_commitment

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
PAYMENT, FEE, COLLATERAL = 10, 3, 10  # whole tokens
HONEST = ("verifier", "verifier2", "verifier3")


def run_cli(*argv: str) -> str:
    result = CliRunner().invoke(cli, list(argv), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


class Scene:
    """One job on the shared deployment: the provider staked, the job posted, daemons to start."""

    def __init__(self, anvil: Any, deployment_path: Path, account_choice: Callable[[str], str],
                 gateway_for: Callable[[str], Gateway], tmp_path: Path, daemons: Any) -> None:
        self.net = ["--network", anvil.rpc_url, "--deployment", str(deployment_path)]
        self.account_choice = account_choice
        self.gateway_for = gateway_for
        self.tmp_path = tmp_path
        self.daemons = daemons
        self.market = gateway_for("requester")

    def post(self) -> int:
        run_cli("provider", "stake", "100", *self.net, "--account", self.account_choice("provider"))
        spec = self.tmp_path / "job.yaml"
        spec.write_text(SPEC_YAML)
        posted = json.loads(run_cli("requester", "post", str(spec), "--payment", str(PAYMENT),
                                    "--verifier-fee", str(FEE), "--collateral", str(COLLATERAL),
                                    "--duration", "1800", "--audit-samples", "3", "--json",
                                    *self.net, "--account", self.account_choice("requester")))
        return int(posted["job_id"])

    def worker(self, cheat: str | None = None) -> None:
        argv = ["worker", "run", *self.net, "--account", self.account_choice("provider"),
                "--data-dir", str(self.tmp_path / "worker"), "--port", str(free_port()), "--poll", "0.3",
                "--exit-when-idle"]
        if cheat:
            argv += ["--cheat", cheat, "--cheat-fraction", "1.0"]
        self.daemons.start(argv, "worker")

    def verifier(self, role: str) -> None:
        self.daemons.start(["verifier", "run", *self.net, "--account", self.account_choice(role),
                            "--data-dir", str(self.tmp_path / role), "--poll", "0.3", "--exit-when-idle",
                            "--fetch-attempts", "2", "--fetch-backoff", "0.2"], role)

    def address(self, role: str) -> str:
        return self.gateway_for(role).address


def cannot_vote(gw: Gateway, job_id: int) -> None:
    """``gw``'s account holds no seat in the current round: its commit reverts."""
    with pytest.raises(TxError, match="court: not seated"):
        gw.commit_vote(job_id, secrets.token_bytes(32))


@pytest.fixture
def scene(anvil, deployment_path, account_choice, gateway_for, tmp_path, daemons) -> Scene:
    return Scene(anvil, deployment_path, account_choice, gateway_for, tmp_path, daemons)


def test_an_honest_job_is_paid_on_proven_votes_and_a_fake_identity_cannot_vote(
        scene, seat_verifiers, gateway_for, daemons, drive_court):
    seat_verifiers(*HONEST, seats=1)
    fake = gateway_for("outsider")  # the requester's second identity: staked, in no pool
    fake.stake(100 * TOKEN)
    job_id = scene.post()
    before = {r: gateway_for(r).token_balance() for r in HONEST}
    scene.worker()
    for role in HONEST:
        scene.verifier(role)
    voters = {scene.address(r) for r in HONEST}

    final = drive_court(scene.market, job_id, daemons, voters, on_voting=lambda case: cannot_vote(fake, job_id))
    daemons.wait_all()

    assert final is JobState.PAID
    case = scene.market.case_of(job_id)
    assert (case.outcome, case.round, case.drawn_seats, case.ok_seats) == (CaseOutcome.OK, 0, 3, 3)
    revealed = scene.market.events(VoteRevealed, scene.market.deployment.deployment_block, job_id=job_id)
    assert {e.voter for e in revealed} == voters and all(e.counted and not e.fraud for e in revealed)
    assert case.reward_per_seat == FEE * TOKEN // 3
    for role in HONEST:
        gw = gateway_for(role)
        assert gw.token_balance() - before[role] == case.reward_per_seat
        assert gw.seat_of(job_id, 0, gw.address).settled and gw.member_of(case.dclass).busy_seats == 0
    assert fake.seat_of(job_id, 0, fake.address).seats == 0


def test_a_cheater_is_slashed_by_its_committee_and_a_member_left_out_cannot_vote(
        scene, seat_verifiers, gateway_for, daemons, drive_court):
    dclass = seat_verifiers(*HONEST, "outsider", seats=1)  # four members, three seats drawn
    job_id = scene.post()
    scene.worker(cheat="fake_hashes")
    for role in HONEST:
        scene.verifier(role)
    members = {scene.address(r): r for r in (*HONEST, "outsider")}
    left_out: list[str] = []

    def on_voting(case: Any) -> None:
        drawn = {v for v in members if scene.market.seat_of(job_id, case.round, v).seated}
        assert len(drawn) == 3
        (out,) = set(members) - drawn
        left_out.append(out)
        cannot_vote(gateway_for(members[out]), job_id)

    final = drive_court(scene.market, job_id, daemons, {scene.address(r) for r in HONEST}, on_voting=on_voting)
    daemons.wait_all()

    assert final is JobState.SLASHED and left_out
    case = scene.market.case_of(job_id)
    honest_drawn = [a for a in members if members[a] in HONEST and a not in left_out]
    assert (case.outcome, case.fraud_seats) == (CaseOutcome.FRAUD, len(honest_drawn))
    settled = {e.voter: e for e in scene.market.events(SeatSettled, scene.market.deployment.deployment_block,
                                                       job_id=job_id)}
    assert set(settled) == set(members) - set(left_out)
    for voter, ev in settled.items():
        if voter in honest_drawn:
            assert (ev.reward, ev.penalty) == (case.reward_per_seat, 0) and ev.reward > 0
        else:  # the outsider was drawn and, running no daemon, never voted: a no-show
            assert (ev.reward, ev.penalty) == (0, scene.market.seat_stake() * case.noshow_slash_bps // 10_000)
    assert scene.market.pool_of(dclass).busy_seats == 0


def test_a_lazy_seat_that_votes_ok_without_replaying_is_a_no_show_and_the_honest_seats_win(
        scene, seat_verifiers, gateway_for, daemons, drive_court):
    seat_verifiers("verifier", "verifier2", "verifier3", seats=1)
    lazy = gateway_for("verifier3")  # seated, but runs no daemon: it guesses instead of replaying
    job_id = scene.post()
    scene.worker()
    for role in ("verifier", "verifier2"):
        scene.verifier(role)
    salt = secrets.token_bytes(32)
    made_up: list[bytes] = []
    guessed: list[int] = []
    stake_before = lazy.staked()

    def guess(case: Any) -> None:
        distinct = sorted(set(lazy.audit_indices(job_id)))
        made_up[:] = [secrets.token_bytes(32) for _ in distinct]
        guessed[:] = distinct
        lazy.commit_vote(job_id, vote_commitment(job_id, lazy.address, False, salt, made_up))

    def reveal_when_open(case: Any) -> None:
        seat = lazy.seat_of(job_id, case.round, lazy.address)
        if seat.status is SeatStatus.COMMITTED and case.commit_end <= lazy.chain.timestamp() < case.reveal_end:
            lazy.reveal_vote(job_id, False, salt, made_up, guessed)

    final = drive_court(scene.market, job_id, daemons, {scene.address(r) for r in HONEST}, on_voting=guess,
                        on_tick=reveal_when_open)
    daemons.wait_all()

    assert final is JobState.PAID
    case = scene.market.case_of(job_id)
    assert (case.outcome, case.drawn_seats, case.ok_seats) == (CaseOutcome.OK, 3, 2)
    (lazy_reveal,) = [e for e in scene.market.events(VoteRevealed, scene.market.deployment.deployment_block,
                                                     job_id=job_id) if e.voter == lazy.address]
    assert not lazy_reveal.counted and lazy.seat_of(job_id, 0, lazy.address).status is SeatStatus.NO_PROOF
    penalty = lazy.seat_stake() * case.noshow_slash_bps // 10_000
    assert lazy.staked() == stake_before - penalty
    settled = {e.voter: e for e in scene.market.events(SeatSettled, scene.market.deployment.deployment_block,
                                                       job_id=job_id)}
    assert (settled[lazy.address].reward, settled[lazy.address].penalty) == (0, penalty)
    assert case.reward_per_seat == FEE * TOKEN // 2
    for role in ("verifier", "verifier2"):
        assert settled[scene.address(role)].reward == case.reward_per_seat
