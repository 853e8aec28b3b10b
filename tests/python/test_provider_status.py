"""``greenproof provider status``: the premiums and bonuses a provider earned, from the
market's ``JobFinalized(…, paid, bonus, premium, …)`` events (read through the indexer)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from greenproof.chain.models import Attestation
from greenproof.cli import provider as provider_cli

TOKEN = 10**18
PROVIDER = "0x" + "ab" * 20
NO_ATTESTATION = Attestation(provider="0x" + "00" * 20, green_bps=0, carbon_g_per_kwh=0,
                             region=b"\0" * 32, valid_from=0, valid_until=0, nonce=0,
                             attestor="0x" + "00" * 20)


def _job(job_id: int, *, state: str, paid: int, premium: int, bonus: int) -> dict:
    return {"job_id": job_id, "state": state, "payment": paid or 10 * TOKEN, "collateral": 10 * TOKEN,
            "deadline": 0, "paid": paid, "bonus": bonus, "premium": premium, "slashed": 0,
            "energy_mj": 3_600_000, "carbon_mg": 400}


@pytest.fixture
def gateway() -> SimpleNamespace:
    """Just the reads ``provider_status`` makes besides the jobs."""
    return SimpleNamespace(
        chain=SimpleNamespace(chain_id=31337, timestamp=lambda: 1_000),
        attestation_of=lambda who: NO_ATTESTATION, unbonding=lambda who: (0, 0),
        token_decimals=lambda: 18, token_balance=lambda who: 0, staked=lambda who: 0,
        locked_stake=lambda who: 0, free_stake=lambda who: 0, claimable=lambda who: 0,
        attestation_in_force=lambda who: False, green_bps=lambda who: 0,
        carbon_intensity=lambda who: 400,
    )


def test_status_sums_what_the_provider_earned(gateway, monkeypatch, capsys):
    jobs = [_job(1, state="PAID", paid=10 * TOKEN, premium=3 * TOKEN, bonus=2 * TOKEN),
            _job(2, state="PAID", paid=5 * TOKEN, premium=TOKEN // 2, bonus=0),
            _job(3, state="SLASHED", paid=0, premium=0, bonus=0)]
    monkeypatch.setattr(provider_cli, "_jobs_of", lambda gw, who: jobs)
    report = provider_cli.provider_status(gateway, PROVIDER)
    assert report["earned"] == {"paid": 15 * TOKEN, "premium": 3 * TOKEN + TOKEN // 2, "bonus": 2 * TOKEN}

    provider_cli._print_status(report)
    out = capsys.readouterr().out
    assert "earned: green premiums" in out and "3.5" in out
    assert "earned: green bonuses" in out
