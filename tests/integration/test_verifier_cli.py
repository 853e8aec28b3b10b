"""A verifier's day through the CLI: stake, join the pools of the classes this machine
replays, see its seats, leave, unstake and withdraw after the unbonding period."""

from __future__ import annotations

import json

from verifier.classes import replayable_classes

TOKEN = 10**18


def _status(run, me: str) -> dict:
    return json.loads(run("verifier", "status", "--json", "--account", me))


def test_a_verifier_joins_its_classes_leaves_unstakes_and_withdraws(run, anvil, account_choice, gateway_for):
    me, gw = account_choice("verifier"), gateway_for("verifier")
    seat = gw.seat_stake()
    (dclass,) = replayable_classes().values()  # on CPU: fp32 only (bf16 computes as fp32)

    out = run("verifier", "join", "--seats", "2", "--account", me, ok=False)
    assert "free stake is 0" in out and "verifier stake" in out  # stake first

    assert "a court seat locks 100" in run("verifier", "stake", "250", "--account", me)
    out = run("verifier", "join", "--seats", "2", "--account", me)
    assert f"this machine replays fp32 jobs in class 0x{dclass.hex()}" in out
    assert "fp32: joined with 2 seat(s); you hold 2" in out
    status = _status(run, me)
    assert (status["staked"], status["locked"], status["free"]) == (250 * TOKEN, 2 * seat, 250 * TOKEN - 2 * seat)
    assert status["pools"] == [{"class": "0x" + dclass.hex(), "free_seats": 2, "busy_seats": 0, "pool_members": 1,
                                "pool_seats": 2, "pool_stake": 2 * seat}]
    assert status["seats"] == [] and status["seat_stake"] == seat

    out = run("verifier", "unstake", "100", "--account", me, ok=False)  # seats lock their stake
    assert "stake: amount exceeds free stake" in out and "Traceback" not in out
    assert "fp32: left with 1 seat(s)" in run("verifier", "leave", "--seats", "1", "--account", me)
    assert "given: left with 1 seat(s)" in run("verifier", "leave", "--class", "0x" + dclass.hex(),
                                                "--account", me)
    assert "no free seat to leave" in run("verifier", "leave", "--account", me)
    assert _status(run, me)["locked"] == 0

    assert "unbonding 250" in run("verifier", "unstake", "250", "--account", me)
    status = _status(run, me)
    assert "unbonding, released" in run("verifier", "withdraw", "--account", me)
    anvil.evm_increase_time(status["unbonding_release"] - status["block_time"] + 1)
    out = run("verifier", "withdraw", "--account", me)
    assert "withdrew 250 unbonded stake" in out and "nothing claimable from the market" in out
    assert _status(run, me)["staked"] == 0
