"""``greenproof demo`` (``make demo``): the whole market on a local anvil, then a report.

The story, every daemon a separate process (own process group, log file in the
report folder):

1. anvil with one-second blocks; the contracts deployed with short windows;
2. demo tokens minted to everyone, the green bonus pool funded, the requester
   granted an allowance on it (the owner acts as allocator), an attestor
   registered and one provider attested 100 % green;
3. two verifiers stake and join the court's pool of the providers' determinism
   class with enough seats for every job's committee at once, then start
   ``greenproof verifier run``; two providers stake and start ``greenproof
   worker run``: ``green`` (honest, attested, expensive: a minimum price per
   step) and ``cheater`` (``--cheat``, cheap, not attested). Every daemon runs
   one intra-op thread, so providers and verifiers share one CPU class;
4. the requester posts one job per task family: the green-only jobs
   (``min_green_bps``) can only go to the green provider, and the cheap open job
   is below the green provider's price, so the cheater takes it;
5. the market runs to the end (training, commitments, audits, each job's
   committee drawn by stake, sealed votes with proof of replay, the court's
   decision, finalize, every seat settled);
6. a summary table with each job's committee and decision, and
   ``demo-out/index.html`` with the plots and the committees' votes.

Shutdown is always clean: SIGTERM then SIGKILL to every child's process group
(atexit and signal handlers), and anvil stopped. Each run starts from a fresh
anvil and fresh data directories, so a second run works like the first.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from greenproof.indexer import Indexer, JobState, JobView, MarketSnapshot, mj_to_wh
from greenproof.ledger import build_ledger
from greenproof.procs import Supervisor
from greenproof.report import (
    MoneyFlow,
    Report,
    ReportJob,
    ReportSeat,
    render_report,
)

if TYPE_CHECKING:
    from greenproof.chain.gateway import Gateway

log = logging.getLogger(__name__)
console = Console()

TOKEN = 10**18

#: The demo's jobs: one per task family, small enough that the whole market
#: (training, audits, replays, votes) runs in minutes on two CPU cores.
DEMO_SPECS: dict[str, dict[str, Any]] = {
    "mlp": {"task": "mlp", "dataset": {"uri": "builtin://digits"}, "batch_size": 32,
            "total_steps": 40, "segment_steps": 10, "seed": 1},
    "cnn": {"task": "cnn", "dataset": {"uri": "builtin://synthetic?kind=images&n=512&classes=10&size=8&seed=0"},
            "batch_size": 32, "total_steps": 40, "segment_steps": 10, "seed": 2},
    "gpt": {"task": "gpt", "model": {"block_size": 32, "n_embd": 32},
            "dataset": {"uri": "builtin://synthetic?kind=text&n=8192&vocab=32&seed=0"},
            "batch_size": 16, "total_steps": 40, "segment_steps": 10, "seed": 3},
}
#: How long the demo waits, once every job is final, for every seat to be settled
#: and every run record to be published (the daemons do both within a few polls).
SETTLE_WAIT_S = 60.0

# Deploy parameters for a demo that fits in minutes: short windows, small lookahead.
DEMO_PARAMS: dict[str, int] = {
    "seed_lookahead": 2,
    "open_window": 120,
    # the court's round: the seated verifiers fetch and replay the audited segments
    # inside the commit window, then reveal with the work digests
    "commit_window": 90,
    "reveal_window": 30,
    "max_audit_samples": 8,
    "min_collateral_bps": 5_000,
    "max_job_duration": 3_600,
}

#: Seats each verifier holds in the pool. The court's default committee is 3
#: seats, and a seat stays busy until its case is settled: the three jobs' cases
#: overlap, so the two verifiers hold 3 x 3 seats between them, and more.
DEMO_SEATS = 5
#: the green provider's attested share: its jobs pay it 80 % of their green premium
DEMO_GREEN_BPS = 8_000
#: Intra-op threads of every daemon: the CPU determinism class includes the
#: thread count, and a verifier's ok vote must reproduce the provider's work
#: digests bit for bit, so providers and verifiers train and replay alike.
DEMO_THREADS = 1


@dataclass
class Actor:
    label: str
    account: str  # --account string for the child processes (TEST::N)
    address: str = ""


@dataclass
class DemoJob:
    task: str
    spec: Path
    payment: int
    verifier_fee: int
    min_green_bps: int
    intended: str  # provider label that should take it
    green_premium: int = 0
    job_id: int | None = None
    posted_at: float = 0.0


@dataclass
class DemoConfig:
    out: Path
    timeout: float = 540.0
    cheat: str = "noisy_weights"
    tasks: tuple[str, ...] = ("mlp", "cnn", "gpt")
    cheater_task: str = "cnn"
    green_min_price_per_step: int = 10**18  # cheap job: 1e17 per step; green jobs: 2.5e18
    actors: dict[str, Actor] = field(default_factory=lambda: default_actors())


class DemoError(click.ClickException):
    """The demo could not complete; the message says which step failed and where its log is."""


def _greenproof() -> list[str]:
    """The CLI of this very interpreter and installation (no reliance on PATH)."""
    return [sys.executable, "-c", "from greenproof.cli import main; main()"]


# --------------------------------------------------------------------------- setup on chain


def default_actors() -> dict[str, Actor]:
    """The demo's cast, by role: anvil's pre-funded test accounts."""
    return {
        "owner": Actor("owner", "TEST::0"),
        "requester": Actor("requester", "TEST::1"),
        "green": Actor("green", "TEST::2"),
        "cheater": Actor("cheater", "TEST::3"),
        "verifier_a": Actor("verifier A", "TEST::4"),
        "verifier_b": Actor("verifier B", "TEST::5"),
        "attestor": Actor("attestor", "TEST::6"),
    }


def demo_classes(device: str | None = None) -> list[bytes]:
    """The determinism classes the demo's daemons train and replay in on this machine: its
    device with ``DEMO_THREADS`` intra-op threads (what ``greenproof verifier join
    --threads 1`` joins)."""
    from verifier.classes import replayable_classes

    return sorted(set(replayable_classes(device, DEMO_THREADS).values()))


def setup_market(rpc: str, actors: dict[str, Actor], data: Path,
                 params: dict[str, int] | None = None,
                 pool_classes: list[bytes] | None = None) -> Path:
    """Deploy, mint, fund the pool, attest the green provider, stake the providers, and
    stake the verifiers into the court: each joins the pool of every class in
    ``pool_classes`` (default: :func:`demo_classes`) with ``DEMO_SEATS`` seats.

    The one place that builds a ready market on a dev chain (the demo and the
    end-to-end tests use it). Returns the deployment manifest's path.
    """
    from greenproof.attestation import sign_attestation
    from greenproof.chain import Gateway, connect, deploy_system, load_account

    for actor in actors.values():
        actor.address = load_account(actor.account).address
    data.mkdir(parents=True, exist_ok=True)
    manifest = data / "deployment.json"
    deploy_system(rpc, load_account(actors["owner"].account),
                  params=dict(DEMO_PARAMS if params is None else params), out=manifest, force=True)
    owner = Gateway(connect(rpc, actors["owner"].account, manifest))
    for role in ("requester", "green", "cheater", "verifier_a", "verifier_b"):
        owner.mint(actors[role].address, 10_000 * TOKEN)
    owner.mint(owner.address, 1_000 * TOKEN)
    owner.fund_pool(1_000 * TOKEN)
    # the pool pays only against an allowance an allocator granted the requester (§7):
    # the owner plays the demo's allocator
    owner.add_allocator(owner.address)
    owner.grant_allowance(actors["requester"].address, 1_000 * TOKEN)
    owner.add_attestor(actors["attestor"].address)
    now = owner.chain.timestamp()
    signed = sign_attestation(
        load_account(actors["attestor"].account), owner.registry_address, owner.chain.chain_id,
        provider=actors["green"].address, green_bps=DEMO_GREEN_BPS, carbon_g_per_kwh=20,
        region="demo-solar", valid_from=now - 60, valid_until=now + 86_400, nonce=1,
    )
    signed.save(data / "green-attestation.json")
    owner.submit_attestation(signed)
    for role in ("green", "cheater"):
        Gateway(connect(rpc, actors[role].account, manifest)).stake(2_000 * TOKEN)
    classes = demo_classes() if pool_classes is None else pool_classes
    for role in ("verifier_a", "verifier_b"):
        verifier = Gateway(connect(rpc, actors[role].account, manifest))
        verifier.stake(DEMO_SEATS * verifier.seat_stake() * len(classes))
        for dclass in classes:
            verifier.join_pool(dclass, DEMO_SEATS)
    return manifest


# --------------------------------------------------------------------------- daemons


def _worker_argv(rpc: str, manifest: Path, actor: Actor, data_dir: Path, port: int,
                 extra: list[str]) -> list[str]:
    return [*_greenproof(), "-v", "worker", "run", "--network", rpc, "--account", actor.account,
            "--deployment", str(manifest), "--data-dir", str(data_dir), "--port", str(port),
            "--poll", "0.5", *extra]


def _verifier_argv(rpc: str, manifest: Path, actor: Actor, data_dir: Path) -> list[str]:
    return [*_greenproof(), "-v", "verifier", "run", "--network", rpc, "--account", actor.account,
            "--deployment", str(manifest), "--data-dir", str(data_dir), "--poll", "1",
            "--threads", "1"]


def _free_port() -> int:
    from greenproof.chain.devnet import free_port

    return free_port()


# --------------------------------------------------------------------------- jobs


def _post(requester: Gateway, job: DemoJob) -> int:
    from greenproof.cli.requester import SPEC_URI_MAX, spec_data_uri
    from greenproof.spec import load_spec

    spec = load_spec(str(job.spec))
    uri = spec_data_uri(job.spec, spec)
    if len(uri.encode()) > SPEC_URI_MAX:  # too long for the chain: every daemon here shares the disk
        uri = job.spec.resolve().as_uri()
    job_id, _ = requester.post_job(
        spec_hash=spec.spec_hash(), spec_uri=uri, num_segments=spec.num_segments,
        audit_samples=min(2, spec.num_segments), payment=job.payment,
        verifier_fee=job.verifier_fee,
        collateral=job.payment,  # what a provider loses when caught
        deadline=requester.chain.timestamp() + 1_800, min_green_bps=job.min_green_bps,
        green_premium=job.green_premium,
    )
    job.job_id, job.posted_at = job_id, time.monotonic()
    return job_id


def _plan(cfg: DemoConfig, spec_dir: Path) -> list[DemoJob]:
    jobs = []
    spec_dir.mkdir(parents=True, exist_ok=True)
    for task in cfg.tasks:
        spec = spec_dir / f"{task}.json"
        spec.write_text(json.dumps(DEMO_SPECS[task], indent=1))
        if task == cfg.cheater_task:
            # cheap and open to anyone: below the green provider's price
            jobs.append(DemoJob(task, spec, 4 * TOKEN, TOKEN, 0, "cheater"))
        else:
            jobs.append(DemoJob(task, spec, 100 * TOKEN, 5 * TOKEN, 5_000, "green", green_premium=10 * TOKEN))
    return jobs


def _progress_table(snap: MarketSnapshot, jobs: list[DemoJob], labels: dict[str, str]) -> Table:
    t = Table(title="greenproof demo — live")
    for col in ("job", "task", "provider", "state", "opened", "committee", "votes", "decision"):
        t.add_column(col)
    for dj in jobs:
        j = snap.job(dj.job_id) if dj.job_id is not None else None
        if j is None:
            t.add_row(str(dj.job_id), dj.task, "—", "posting", "", "", "", "")
            continue
        committee = votes = decision = ""
        if j.rounds:
            last = j.rounds[-1]
            committee = f"{last.drawn_seats} seats" + (f", round {last.round}" if last.round else "")
            sealed = sum(s.seats for s in last.seats if s.committed)
            revealed = sum(s.seats for s in last.seats if s.revealed)
            votes = f"{sealed} sealed, {revealed} revealed"
        if j.case is not None and j.case.decided_round is not None:
            decision = j.case.outcome.value
        t.add_row(str(j.job_id), dj.task, labels.get((j.provider or "").lower(), "—"),
                  j.state.value, f"{len(j.opened)}/{len(set(j.audit_indices))}", committee, votes,
                  decision)
    return t


# --------------------------------------------------------------------------- summary


def _committee(job: JobView, labels: dict[str, str]) -> tuple[str, int | None, list[ReportSeat]]:
    """The court's decision, its round, and every seat of every round, for the report."""
    if job.case is None:
        return "—", None, []
    seats = [
        ReportSeat(round=rnd.round, verifier=labels.get(s.voter.lower(), s.voter), seats=s.seats,
                   vote=s.vote, result=s.result or "pending", reward=s.reward, penalty=s.penalty)
        for rnd in job.case.rounds for s in rnd.seats
    ]
    if job.case.decided_round is None:
        return "pending", None, seats
    return job.case.outcome.value, job.case.decided_round, seats


def _summarize(snap: MarketSnapshot, jobs: list[DemoJob], labels: dict[str, str],
               data_dirs: list[Path], wall_s: float, cfg: DemoConfig,
               intensity: dict[str, int], symbol: str, share_bps: dict[int, int] | None = None) -> Report:
    """The report's numbers. CO2 is energy x the provider's attested (or default) grid
    intensity in g/kWh, in grams with decimals (the chain rounds to whole grams)."""
    from greenproof.dashboard.rundata import RunDataStore

    runs = RunDataStore(data_dirs)
    report = Report(title="greenproof demo", token_symbol=symbol, wall_s=wall_s)
    for dj in jobs:
        j = snap.job(dj.job_id) if dj.job_id is not None else None
        if j is None:
            continue
        extra = runs.for_job(j.job_id)
        decision, decided_round, committee = _committee(j, labels)
        report.jobs.append(ReportJob(
            job_id=j.job_id, task=dj.task, provider=labels.get((j.provider or "").lower(), "—"),
            outcome=j.state.value + (" (unaudited)" if j.unaudited else ""), paid=j.paid,
            slashed=j.slashed, bonus=j.bonus,
            premium=j.premium, green_premium=j.green_premium, green_bps=j.green_bps,
            energy_wh=j.energy_wh,
            co2_g=j.energy_wh / 1000 * intensity.get((j.provider or "").lower(), 0),
            carbon_mg_onchain=j.carbon_mg,
            wall_s=j.wall_s if j.wall_s is not None else 0.0, decision=decision,
            decided_round=decided_round, committee=committee,
            losses=extra.losses, segment_energy_wh=[mj_to_wh(e) for e in extra.segment_energy_mj],
            segment_steps=_segment_steps(dj), failed_segments=_failed_segments(extra.evidence),
        ))
    ledger = build_ledger([j for dj in jobs if (j := snap.job(dj.job_id)) is not None] if jobs else [],
                          share_bps or {})
    report.money = ([MoneyFlow(label=k, amount=v, kind="in") for k, v in ledger.incoming.items()]
                    + [MoneyFlow(label=k, amount=v, kind="out") for k, v in ledger.outgoing.items()])
    report.notes.append(f"cheating provider ran with --cheat {cfg.cheat}")
    return report


def _segment_steps(job: DemoJob) -> int:
    from greenproof.spec import load_spec

    try:
        return int(load_spec(str(job.spec)).segment_steps)
    except Exception:  # a missing spec file only costs the mark on the curve
        return 0


def _failed_segments(evidence: list[dict[str, Any]]) -> list[int]:
    """Segments any verifier's evidence report judged fraudulent."""
    return sorted({int(s["index"]) for doc in evidence for s in doc.get("segments", [])
                   if isinstance(s, dict) and s.get("verdict") == "fraud" and "index" in s})


def _summary_table(report: Report) -> Table:
    t = Table(title=f"greenproof demo — {report.wall_s:.0f} s", box=box.SIMPLE_HEAD,
              collapse_padding=True, pad_edge=False)
    for col, just in (("job", "right"), ("task", "left"), ("provider", "left"),
                      ("outcome", "left"), ("paid", "right"), ("premium", "right"),
                      ("bonus", "right"),
                      ("Wh", "right"), ("CO2 mg", "right"), ("wall s", "right")):
        t.add_column(col, justify=just, min_width=len(col))  # type: ignore[arg-type]
    for j in report.jobs:
        money = (f"[green]+{report.tokens(j.paid):,.2f}[/]" if j.outcome.startswith("PAID")
                 else f"[red]-{report.tokens(j.slashed):,.2f}[/]")
        style = "green" if j.outcome == "PAID" else ("yellow" if j.outcome.startswith("PAID") else "red")
        t.add_row(str(j.job_id), j.task, j.provider, f"[{style}]{j.outcome}[/]", money,
                  f"{report.tokens(j.premium):,.2f}", f"{report.tokens(j.bonus):,.2f}",
                  f"{j.energy_wh:.4f}", f"{j.co2_g * 1000:.3f}",
                  f"{j.wall_s:.0f}")
    return t


def _committee_table(report: Report) -> Table:
    """Every job's committee: each seat holder's seats, vote and what the decision made of it."""
    t = Table(title="committees and votes", box=box.SIMPLE_HEAD, collapse_padding=True,
              pad_edge=False)
    for col, just in (("job", "right"), ("decision", "left"), ("round", "right"),
                      ("verifier", "left"), ("seats", "right"), ("vote", "left"),
                      ("result", "left"), ("reward", "right"), ("penalty", "right")):
        t.add_column(col, justify=just, min_width=len(col))  # type: ignore[arg-type]
    for j in report.jobs:
        if not j.committee:
            t.add_row(str(j.job_id), j.decision, "", "", "", "", "", "", "")
        for i, seat in enumerate(j.committee):
            style = {"won": "green", "lost": "red", "no-show": "red"}.get(seat.result, "default")
            t.add_row(str(j.job_id) if i == 0 else "", j.decision if i == 0 else "",
                      str(seat.round), seat.verifier, str(seat.seats), seat.vote,
                      f"[{style}]{seat.result}[/]", f"{report.tokens(seat.reward):,.4f}",
                      f"{report.tokens(seat.penalty):,.4f}")
    return t


# --------------------------------------------------------------------------- main


def run_demo(cfg: DemoConfig) -> Report:
    from greenproof.chain import Anvil, Gateway, connect

    started = time.monotonic()
    out = cfg.out
    data = out / "run"
    if data.exists():
        shutil.rmtree(data)  # fresh data dirs every run
    data.mkdir(parents=True)
    logs = out / "logs"
    if logs.exists():
        shutil.rmtree(logs)
    logs.mkdir(parents=True)

    sup = Supervisor()
    sup.install_handlers()
    anvil = Anvil(block_time=1, state_dir=data / "anvil")
    jobs = _plan(cfg, data / "specs")
    try:
        with console.status("starting anvil and deploying…"):
            anvil.start()
            rpc = anvil.rpc_url
            manifest = setup_market(rpc, cfg.actors, data)
            requester = Gateway(connect(rpc, cfg.actors["requester"].account, manifest))
        console.print(f"[bold]anvil[/] {rpc} · deployment {manifest}")
        labels = {a.address.lower(): a.label for a in cfg.actors.values()}
        a = cfg.actors
        env = {"OMP_NUM_THREADS": str(DEMO_THREADS)}  # torch's default intra-op threads
        children = [
            sup.spawn("worker-cheater", _worker_argv(
                rpc, manifest, a["cheater"], data / "worker-cheater", _free_port(),
                ["--cheat", cfg.cheat]), logs / "worker-cheater.log", env=env),
            sup.spawn("worker-green", _worker_argv(
                rpc, manifest, a["green"], data / "worker-green", _free_port(),
                ["--min-price-per-step", str(cfg.green_min_price_per_step)]),
                logs / "worker-green.log", env=env),
            sup.spawn("verifier-a", _verifier_argv(rpc, manifest, a["verifier_a"],
                                                   data / "verifier-a"), logs / "verifier-a.log",
                      env=env),
            sup.spawn("verifier-b", _verifier_argv(rpc, manifest, a["verifier_b"],
                                                   data / "verifier-b"), logs / "verifier-b.log",
                      env=env),
        ]
        for job in jobs:
            _post(requester, job)
            console.print(f"posted job {job.job_id} ({job.task}) for the {job.intended} provider")
        indexer = Indexer(requester)
        data_dirs = [data / d for d in ("worker-green", "worker-cheater", "verifier-a", "verifier-b")]
        _wait_for_jobs(indexer, jobs, labels, children, cfg, started)
        workers = {a[role].address.lower(): data / f"worker-{role}" for role in ("green", "cheater")}
        owed = _wait_for_settlement(indexer, jobs, workers, SETTLE_WAIT_S)
        snap = indexer.snapshot()
        symbol = requester.token_symbol()
        intensity = {p.address.lower(): requester.carbon_intensity(p.address) for p in snap.providers}
        share_bps = {j.job_id: requester.job(j.job_id).requester_share_bps for j in jobs if j.job_id is not None}
    finally:
        sup.stop_all()
        anvil.stop()
    report = _summarize(snap, jobs, labels, data_dirs, time.monotonic() - started, cfg, intensity,
                        symbol, share_bps)
    report.notes.extend(f"not done {SETTLE_WAIT_S:.0f} s after the last job ended: {what}"
                        for what in owed)
    index = render_report(report, out)
    console.print(_summary_table(report))
    console.print(_committee_table(report))
    console.print(f"report: [bold]{index}[/] · logs: {logs}")
    return report


def _wait_for_jobs(indexer: Indexer, jobs: list[DemoJob], labels: dict[str, str],
                   children: list[Any], cfg: DemoConfig, started: float) -> None:
    from rich.live import Live

    try:
        _follow_jobs(indexer, jobs, labels, children, cfg, started, Live)
    finally:
        if not console.is_terminal:  # redirected: end the last frame's line before the summary
            console.print()


def _follow_jobs(indexer: Indexer, jobs: list[DemoJob], labels: dict[str, str],
                 children: list[Any], cfg: DemoConfig, started: float, live_cls: Any) -> None:
    with live_cls(console=console, refresh_per_second=2) as live:
        while True:
            snap = indexer.snapshot(live=False)
            live.update(_progress_table(snap, jobs, labels))
            states = [snap.job(j.job_id) for j in jobs if j.job_id is not None]
            if states and all(s is not None and s.state.final for s in states):
                return
            dead = [c for c in children if not c.alive]
            if dead:
                c = dead[0]
                raise DemoError(f"demo: {c.name} exited with code {c.proc.returncode}; "
                                f"last lines of {c.log_path}:\n{c.tail()}")
            if time.monotonic() - started > cfg.timeout:
                raise DemoError(f"demo: jobs not finished after {cfg.timeout:.0f} s; see the logs "
                                f"in {cfg.out / 'logs'}")
            time.sleep(1.0)


def _still_owed(snap: MarketSnapshot, jobs: list[DemoJob], workers: dict[str, Path]) -> list[str]:
    """What the daemons still owe once every job is final: the settlement of every decided seat
    (the verifiers settle them) and the run record of every trained job (its worker publishes
    it once the job is final, :mod:`worker.records`)."""
    from worker.config import WorkerConfig
    from worker.records import RunRecords

    owed = []
    for dj in jobs:
        job = snap.job(dj.job_id) if dj.job_id is not None else None
        if job is None:
            continue
        owed.extend(f"job {job.job_id}: the seats of {seat.voter} in round {rnd.round} unsettled"
                    for rnd in job.rounds for seat in rnd.seats
                    if seat.result is not None and not seat.settled)
        trained = job.state is JobState.PAID or job.slash_reason == "fraud"
        data_dir = workers.get((job.provider or "").lower())
        if trained and data_dir is not None:
            record = RunRecords(WorkerConfig(data_dir=data_dir).runs_dir).published_path(job.job_id)
            if not record.is_file():
                owed.append(f"job {job.job_id}: run record {record} not published")
    return owed


def _wait_for_settlement(indexer: Indexer, jobs: list[DemoJob], workers: dict[str, Path],
                         timeout: float) -> list[str]:
    """Wait (at most ``timeout`` s) for the seats to be settled and the run records published;
    returns what is still owed then (empty when all is done)."""
    deadline = time.monotonic() + timeout
    with console.status("settling the committees' seats and publishing run records…"):
        while True:
            owed = _still_owed(indexer.snapshot(live=False), jobs, workers)
            if not owed or time.monotonic() >= deadline:
                return owed
            time.sleep(1.0)


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-out"),
              show_default=True, help="Report folder (also holds the logs and data dirs).")
@click.option("--timeout", type=click.FloatRange(min=30), default=540.0, show_default=True,
              help="Give up if the jobs are not final after this many seconds.")
@click.option("--cheat", default="noisy_weights", show_default=True,
              help="Cheating strategy of the dishonest provider (see greenproof/adversaries/cheats.py).")
def demo(out: Path, timeout: float, cheat: str) -> None:
    """Run the whole market on a local anvil and write a report."""
    from greenproof.chain.devnet import DevnetError

    try:
        run_demo(DemoConfig(out=out, timeout=timeout, cheat=cheat))
    except DevnetError as exc:
        raise DemoError(str(exc)) from None
