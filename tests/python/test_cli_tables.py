"""Every table a CLI prints keeps its headers at 80 columns on a terminal and is plain,
aligned and uncut when piped; ``requester status``/``watch`` of an OPEN job say why it
waits; ``doctor`` names a journal of a reset chain; one data-dir convention (issue 15)."""

from __future__ import annotations

import io
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from rich.console import Console

from greenproof.chain.models import Attestation, JobState
from greenproof.cli import doctor as doctor_cli
from greenproof.cli import provider as provider_cli
from greenproof.cli import requester as requester_cli
from greenproof.cli.tables import Col, plain_lines, print_table
from greenproof.indexer import CaseRecord, JobView, MarketSnapshot, ProviderView, RoundView
from greenproof.spec import parse_spec
from verifier import cli as verifier_cli

TOKEN = 10**18
PROVIDER = "0x" + "ab" * 20
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def terminal(width: int = 80) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=width, force_terminal=True, color_system=None), out


def pipe() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=80, force_terminal=False), out


def header_line(text: str, first: str) -> str:
    """The line of ``text`` that starts with the header ``first``."""
    return next(line for line in ANSI.sub("", text).splitlines() if line.lstrip().startswith(first + " "))


def busy_jobs() -> list[JobView]:
    """Wide rows: a slashed job three rounds in, an unaudited paid one, a fresh one."""
    case = CaseRecord(dclass="0x" + "12" * 32, committee_size=3, max_rounds=3, commit_window=60,
                      reveal_window=60, voter_slash_bps=1000, noshow_slash_bps=2000,
                      rounds=[RoundView(round=2, drawn_seats=15)])
    return [
        JobView(job_id=1234, state=JobState.SLASHED, provider=PROVIDER, payment=12_345 * TOKEN,
                collateral=12_345 * TOKEN, slashed=12_345 * TOKEN, audit_indices=[1, 2, 3, 4, 5, 6, 7, 8],
                opened={i: {} for i in range(8)}, case=case, energy_mj=123_456_789),
        JobView(job_id=2, state=JobState.PAID, provider=PROVIDER, payment=100 * TOKEN, paid=100 * TOKEN,
                bonus=TOKEN // 3),
        JobView(job_id=3, state=JobState.OPEN, payment=5 * TOKEN),
    ]


# --------------------------------------------------------------------------- the helper


def test_plain_text_keeps_every_header_and_value_whole_and_drops_markup() -> None:
    cols = [Col("job", "right", key=True), Col("state"), Col("a rather long header", "right")]
    lines = plain_lines("t", cols, [("1", "[green]yes[/]", "x" * 120)])
    assert lines[0] == "t"
    assert lines[1].split() == ["job", "state", "a", "rather", "long", "header"]
    assert "x" * 120 in lines[3] and "[green]" not in lines[3] and "yes" in lines[3]


def test_a_piped_table_is_plain_and_a_terminal_one_is_rich() -> None:
    cols = [Col("k", key=True), Col("v", "right")]
    console, out = pipe()
    print_table("title", cols, [("a", "1")], console=console)
    assert out.getvalue().splitlines()[:3] == ["title", "k  v", "-  -"]
    console, out = terminal()
    print_table("title", cols, [("a", "1")], console=console)
    assert "-  -" not in out.getvalue() and "title" in out.getvalue()


# --------------------------------------------------------------------------- requester status


@pytest.mark.parametrize("width", [80, 60])
def test_requester_jobs_keep_every_header_on_a_narrow_terminal(width: int) -> None:
    console, out = terminal(width)
    requester_cli.print_jobs(busy_jobs(), 18, console=console)
    head = header_line(out.getvalue(), "job")
    assert head.split() == list(requester_cli.JOB_COLUMNS), out.getvalue()
    assert "…" not in head
    if width == 80:  # rich, folded cells; narrower than its headers: plain lines, nothing dropped
        assert all(len(line) <= width for line in out.getvalue().splitlines())
    else:
        assert "12,345" in out.getvalue() and "34.2936" in out.getvalue()
    assert "SLASHED" in out.getvalue() and "PAID*" in out.getvalue() and "unaudited" in out.getvalue()


def test_requester_jobs_piped_are_one_line_per_job_with_whole_values() -> None:
    console, out = pipe()
    requester_cli.print_jobs(busy_jobs(), 18, console=console)
    lines = out.getvalue().splitlines()
    assert lines[1].split() == list(requester_cli.JOB_COLUMNS)
    slashed = next(line for line in lines if line.lstrip().startswith("1234 "))
    assert "SLASHED" in slashed and "r2: 15 (0/0)" in slashed and "12,345" in slashed
    assert "0xabab…abab" in slashed and "34.2936" in slashed  # Wh, whole


# --------------------------------------------------------------------------- provider / verifier status


def provider_report() -> dict:
    gw = SimpleNamespace(
        chain=SimpleNamespace(chain_id=31337, timestamp=lambda: 1_000),
        attestation_of=lambda who: Attestation(provider=PROVIDER, green_bps=8000, carbon_g_per_kwh=20,
                                               region=b"EU-NO".ljust(32, b"\0"), valid_from=0,
                                               valid_until=86_400, nonce=1, attestor=PROVIDER),
        unbonding=lambda who: (5 * TOKEN, 2_000), token_decimals=lambda: 18,
        token_balance=lambda who: 123_456 * TOKEN, staked=lambda who: 2_000 * TOKEN,
        locked_stake=lambda who: 100 * TOKEN, free_stake=lambda who: 1_900 * TOKEN,
        claimable=lambda who: 0, attestation_in_force=lambda who: True, green_bps=lambda who: 8000,
        carbon_intensity=lambda who: 20,
    )
    job = {"job_id": 1234, "state": "SLASHED", "payment": 12_345 * TOKEN, "collateral": 12_345 * TOKEN,
           "deadline": 0, "paid": 0, "bonus": 0, "premium": 0, "slashed": 12_345 * TOKEN,
           "energy_mj": 123_456_789, "carbon_mg": 123_456}
    original = provider_cli._jobs_of
    provider_cli._jobs_of = lambda gw, who: [job]
    try:
        return provider_cli.provider_status(gw, PROVIDER)
    finally:
        provider_cli._jobs_of = original


def verifier_report() -> dict:
    return {"address": PROVIDER, "chain_id": 31337, "block_time": 1_000, "decimals": 18,
            "staked": 500 * TOKEN, "locked": 300 * TOKEN, "free": 200 * TOKEN, "unbonding": 0,
            "unbonding_release": 0, "claimable": 7 * TOKEN, "seat_stake": 100 * TOKEN,
            "min_class_stake": 300 * TOKEN,
            "pools": [{"class": "0x" + "40" * 32, "free_seats": 2, "busy_seats": 3, "pool_members": 12,
                       "pool_seats": 40, "pool_stake": 4_000 * TOKEN}],
            "seats": [{"job_id": 1234, "round": 2, "seats": 3, "vote": "REVEALED_FRAUD", "settled": True,
                       "case_round": 2, "outcome": "FRAUD"}]}


@pytest.mark.parametrize("which", ["provider", "verifier"])
def test_status_tables_keep_their_headers_at_80_columns_and_piped(which: str) -> None:
    printer, report, first, headers = {
        "provider": (provider_cli._print_status, provider_report(), "job",
                     ["job", "state", "payment", "collateral", "paid", "premium", "bonus", "slashed", "Wh",
                      "CO2", "mg"]),
        "verifier": (verifier_cli._print_status, verifier_report(), "class",
                     ["class", "free", "busy", "members", "seats", "stake"]),
    }[which]
    console, out = terminal()
    printer(report, console=console)
    assert header_line(out.getvalue(), first).split() == headers, out.getvalue()
    assert all(len(line) <= 80 for line in out.getvalue().splitlines())
    console, out = pipe()
    printer(report, console=console)
    assert header_line(out.getvalue(), first).split() == headers, out.getvalue()
    assert "[green]" not in out.getvalue()
    if which == "provider":
        assert "EU-NO" in out.getvalue() and "80 %" in out.getvalue() and "12,345" in out.getvalue()
    else:
        assert "REVEALED_FRAUD" in out.getvalue() and "FRAUD (round 2)" in out.getvalue()


# --------------------------------------------------------------------------- an OPEN job says why it waits

SPEC = {"task": "mlp", "dataset": {"uri": "builtin://digits"}, "batch_size": 16, "total_steps": 4,
        "segment_steps": 2}
NOW = 1_000_000


def market(*, pool_stake: int, free_stake: int, green_bps: int = 0) -> tuple[SimpleNamespace, MarketSnapshot]:
    from greenproof.indexer import ClassPoolView

    job = JobView(job_id=7, state=JobState.OPEN, requester="0x" + "cd" * 20,
                  spec_uri=parse_spec(SPEC).to_data_uri(), num_segments=2, payment=10 * TOKEN,
                  collateral=10 * TOKEN, deadline=NOW + 3600, min_green_bps=5000)
    snap = MarketSnapshot(jobs=[job], pools=[ClassPoolView(dclass="0x" + "40" * 32)],
                          providers=[ProviderView(address=PROVIDER)])
    gw = SimpleNamespace(
        chain=SimpleNamespace(timestamp=lambda *a: NOW, logs=lambda *a, **k: []),
        deployment=SimpleNamespace(deployment_block=1),
        court_param=lambda name: 300 * TOKEN, pool_stake=lambda dclass: pool_stake,
        token_decimals=lambda: 18, green_bps=lambda who: green_bps, free_stake=lambda who: free_stake,
    )
    return gw, snap


def test_an_open_job_says_why_no_provider_took_it() -> None:
    gw, snap = market(pool_stake=100 * TOKEN, free_stake=0)
    lines = requester_cli.open_job_reasons(gw, snap.jobs[0], snap)
    text = "\n".join(lines)
    assert "3600 s from now" in text and "UTC" in text
    assert "no verifier pool holds the court's min_class_stake (300 tokens" in text
    assert f"{PROVIDER[:10]}… would refuse" in text and "green" in text
    assert "requester quote" in text

    gw, snap = market(pool_stake=300 * TOKEN, free_stake=100 * TOKEN, green_bps=9000)
    text = "\n".join(requester_cli.open_job_reasons(gw, snap.jobs[0], snap))
    assert "min_class_stake" not in text and "would accept" in text


def test_an_open_job_past_its_deadline_points_to_close() -> None:
    gw, snap = market(pool_stake=300 * TOKEN, free_stake=0)
    job = snap.jobs[0].model_copy(update={"deadline": NOW - 5})
    assert "requester close 7" in requester_cli.open_job_reasons(gw, job, snap)[0]


def run_cli(monkeypatch: pytest.MonkeyPatch, args: list[str], gw: SimpleNamespace,
            snap: MarketSnapshot) -> tuple[int, str]:
    import greenproof.indexer as indexer

    monkeypatch.setattr(requester_cli, "_gateway", lambda *a, **k: gw)
    monkeypatch.setattr(requester_cli, "_snapshot", lambda g: snap)
    monkeypatch.setattr(indexer.Indexer, "__init__", lambda self, g, **k: None)
    monkeypatch.setattr(indexer.Indexer, "snapshot", lambda self, live=True: snap)
    result = CliRunner().invoke(requester_cli.requester, args)
    return result.exit_code, result.output


def test_status_and_watch_of_an_open_job_say_why_it_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    gw, snap = market(pool_stake=100 * TOKEN, free_stake=0)
    code, out = run_cli(monkeypatch, ["status", "7"], gw, snap)
    assert code == 0, out
    assert out.startswith("job 7\nstate        OPEN\n") and "╭" not in out  # plain when piped
    assert "waiting      no provider has accepted it yet" in out and "min_class_stake" in out

    code, out = run_cli(monkeypatch, ["watch", "7", "--timeout", "0"], gw, snap)
    assert code == 1
    assert out.startswith("job 7: OPEN\n") and "min_class_stake" in out and "would refuse" in out
    assert "still OPEN after 0 s" in out and "requester status 7" in out


def test_watch_piped_prints_the_final_job_without_a_border(monkeypatch: pytest.MonkeyPatch) -> None:
    gw, snap = market(pool_stake=300 * TOKEN, free_stake=0)
    snap.jobs[0] = snap.jobs[0].model_copy(update={"state": JobState.CANCELLED})
    code, out = run_cli(monkeypatch, ["watch", "7"], gw, snap)
    assert code == 0, out
    assert "╭" not in out and "│" not in out and "waiting" not in out
    assert out.rstrip().endswith("job 7: CANCELLED") and "\nstate        CANCELLED\n" in out


# --------------------------------------------------------------------------- doctor and data dirs


def test_doctor_names_journals_of_a_reset_chain_and_of_another_market(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from verifier.votes import VoteJournal
    from worker.journal import Journal

    market_addr = "0x" + "5f" * 20
    here = "31337:aa:4:bb"
    chain = SimpleNamespace(block_number=lambda: 100, identity=lambda block: here,
                            deployment=SimpleNamespace(job_market=market_addr, deployment_block=4))
    dirs = {}
    for name, identity, market_of in [("good", here, market_addr), ("reset", "31337:cc:4:dd", market_addr),
                                      ("other", here, "0x" + "99" * 20)]:
        dirs[name] = tmp_path / name
        dirs[name].mkdir()
        journal = Journal(dirs[name] / "journal.sqlite")
        journal.bind(31337, market_of, PROVIDER, identity)
        journal.set_cursor(50)
        journal.close()
    votes = VoteJournal(tmp_path / "verifier")
    votes.bind(31337, market_addr, "31337:cc:4:dd")
    votes.set_cursor(31337, market_addr, 60)
    votes.close()

    findings = doctor_cli._journals(chain, (dirs["good"], dirs["reset"], dirs["other"], tmp_path / "verifier"))
    by_dir = {f.detail.split("/")[-2]: f for f in findings}
    assert by_dir["good"].level == "ok" and "bound to this chain" in by_dir["good"].detail
    assert by_dir["reset"].level == "fail" and "reset and redeployed" in by_dir["reset"].detail
    assert "fresh --data-dir" in by_dir["reset"].fix
    assert by_dir["other"].level == "warn" and "not this manifest's" in by_dir["other"].detail
    assert by_dir["verifier"].level == "fail"

    # without --data-dir: ./worker-data and ./verifier-data/* where they hold a journal
    monkeypatch.chdir(tmp_path)
    (tmp_path / "worker-data").mkdir()
    (tmp_path / "worker-data" / "journal.sqlite").write_bytes((dirs["good"] / "journal.sqlite").read_bytes())
    (tmp_path / "verifier-data" / "a").mkdir(parents=True)
    (tmp_path / "verifier-data" / "a" / "verifier.sqlite").touch()
    assert doctor_cli._default_data_dirs() == (Path("worker-data"), Path("verifier-data/a"))


def test_the_verifier_keeps_its_data_where_the_worker_does() -> None:
    from worker.cli import run as worker_run

    worker_default = next(p.default for p in worker_run.params if p.name == "data_dir")
    assert worker_default == Path("worker-data")
    assert verifier_cli.DEFAULT_DATA_DIR == Path("verifier-data")
    ignored = (Path(__file__).parents[2] / ".gitignore").read_text().split()
    assert {"worker-data/", "verifier-data/", "runs/", "model.safetensors"} <= set(ignored)


def test_doctor_wraps_under_its_columns_on_a_terminal_and_keeps_whole_lines_piped() -> None:
    finding = doctor_cli.Finding("fail", "journal", "x/journal.sqlite " + "word " * 30, "move " * 20)
    wrapped = doctor_cli._render([finding], 80)
    assert wrapped[0].startswith("FAIL journal   x/journal.sqlite")
    assert all(len(line) <= 80 for line in wrapped) and len(wrapped) > 2
    assert any(line.startswith(" " * 15 + "-> move") for line in wrapped)
    assert all(line.startswith(" " * 15) for line in wrapped[1:])
    assert doctor_cli._render([finding], None) == [
        "FAIL journal   " + finding.detail, " " * 15 + "-> " + finding.fix]
