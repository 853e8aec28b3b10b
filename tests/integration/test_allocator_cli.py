"""An allocator's day through the CLI: registered by the owner, grants a requester an
allowance on the bonus pool, answers for it, revokes it (docs/protocol.md §2.2, §7)."""

from __future__ import annotations

import json

TOKEN = 10**18


def _show(run, requester) -> dict:
    return json.loads(run("allocator", "show", requester.address, "--json"))


def test_owner_registers_an_allocator_who_grants_and_revokes(run, account_choice, account_for,
                                                             requester):
    allocator = account_for("allocator")
    out = run("allocator", "add", allocator.address, "--account", account_choice("outsider"), ok=False)
    assert "ownable: caller is not the owner" in out
    run("allocator", "add", allocator.address, "--account", account_choice("owner"))
    assert _show(run, requester) == {
        "requester": requester.address, "allowance": 0, "allocator": None,
        "allocator_registered": False, "pool": 0, "decimals": 18,
    }

    out = run("allocator", "grant", requester.address, "50", "--account", account_choice("allocator"))
    assert f"allowance of {requester.address}: 50 tokens of bonus, granted by {allocator.address}" in out
    shown = _show(run, requester)
    assert shown["allowance"] == 50 * TOKEN and shown["allocator"] == allocator.address
    assert shown["allocator_registered"]
    table = run("allocator", "show", requester.address)
    assert "50 tokens of bonus" in table and allocator.address in table

    run("allocator", "grant", requester.address, "--wei", "1234", "--account", account_choice("allocator"))
    assert _show(run, requester)["allowance"] == 1234  # a new grant replaces what is left

    run("allocator", "revoke", requester.address, "--account", account_choice("allocator"))
    assert _show(run, requester)["allowance"] == 0


def test_an_allowance_answers_to_its_allocator(run, account_choice, account_for, requester):
    allocator, other = account_for("allocator"), account_for("outsider")
    for who in (allocator, other):
        run("allocator", "add", who.address, "--account", account_choice("owner"))
    run("allocator", "grant", requester.address, "10", "--account", account_choice("allocator"))

    out = run("allocator", "grant", requester.address, "99", "--account", account_choice("outsider"), ok=False)
    assert "registry: granted by another allocator" in out
    out = run("allocator", "revoke", requester.address, "--account", account_choice("outsider"), ok=False)
    assert "registry: not the granting allocator" in out
    assert "Traceback" not in out

    run("allocator", "revoke", requester.address, "--account", account_choice("owner"))  # the owner may
    assert _show(run, requester)["allowance"] == 0


def test_removing_the_allocator_voids_its_allowances(run, account_choice, account_for, requester):
    allocator = account_for("allocator")
    run("allocator", "add", allocator.address, "--account", account_choice("owner"))
    run("allocator", "grant", requester.address, "10", "--account", account_choice("allocator"))
    run("allocator", "remove", allocator.address, "--account", account_choice("owner"))
    shown = _show(run, requester)
    assert shown["allowance"] == 0 and shown["allocator"] == allocator.address
    assert not shown["allocator_registered"]
    assert "removed: the allowance is void" in run("allocator", "show", requester.address)
    out = run("allocator", "grant", requester.address, "10", "--account", account_choice("allocator"), ok=False)
    assert "registry: caller is not an allocator" in out


def test_bad_input_fails_before_any_transaction(run, account_choice, requester):
    out = run("allocator", "grant", "0x1234", "10", "--account", account_choice("owner"), ok=False)
    assert "is not an address" in out
    out = run("allocator", "grant", requester.address, "ten", "--account", account_choice("owner"), ok=False)
    assert "not a number" in out
    out = run("allocator", "show", "nobody", ok=False)
    assert "is not an address" in out
