"""The demo's report folder: an ``index.html`` with PNG plots.

``render_report(report, out_dir)`` writes

* ``loss_<job>.png`` — the training loss curve of every job that has one,
* ``energy.png`` — energy per segment for every job (Wh),
* ``money.png`` — where the money went (paid, bonus, refunds, slashes, fees),
* a table of every job's committee: seats per round, votes, the decision, rewards and penalties,
* ``summary.json`` — the :class:`Report` itself, so other tools can read it,
* ``index.html`` — a self-contained page (no scripts, no network) linking them.

The report only renders; the numbers come from the caller (the demo builds them
from the chain indexer and the workers' run records).
"""

from __future__ import annotations

import html
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import matplotlib

matplotlib.use("Agg")  # headless: never open a window, never need a display

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from pydantic import BaseModel, Field  # noqa: E402

log = logging.getLogger(__name__)


class ReportSeat(BaseModel):
    """The seats one verifier held in one round of a job's case, and what came of them."""

    round: int
    verifier: str = Field(description="verifier label or address")
    seats: int
    vote: str = Field(description="ok, fraud, ok without proof, sealed, no vote")
    result: str = Field(description="won, lost, no-show, neutral, dropped, or pending")
    reward: int = 0
    penalty: int = 0


class ReportJob(BaseModel):
    """One row of the demo summary, plus the series its plots need."""

    job_id: int
    task: str = Field(description="model family: mlp, cnn, gpt, …")
    provider: str = Field(description="provider label or address")
    outcome: str = Field(description="final job state: PAID, SLASHED, EXPIRED, …")
    paid: int = Field(0, description="payment to the provider (token base units)")
    slashed: int = Field(0, description="collateral slashed from the provider")
    bonus: int = Field(0, description="green bonus paid (from the pool, against the requester's allowance)")
    premium: int = Field(0, description="green premium paid to the provider (its attested share)")
    green_premium: int = Field(0, description="green premium the requester escrowed")
    green_bps: int = Field(0, description="the provider's attested green share at commit (bps)")
    energy_wh: float = 0.0
    co2_g: float = Field(0.0, description="CO2 in grams: energy x the provider's grid intensity, unrounded")
    carbon_mg_onchain: int = Field(0, description="JobFinalized.carbon_mg: the same in whole mg (floor), 0 if slashed")
    wall_s: float = Field(0.0, description="post to final state, seconds")
    decision: str = Field("—", description="the court's outcome: OK, FRAUD, NO_DECISION, DROPPED, "
                                           "pending, or — without a case")
    decided_round: int | None = Field(None, description="the round that decided the case")
    committee: list[ReportSeat] = Field(default_factory=list, description="every round's seats")
    losses: list[float] = Field(default_factory=list)
    segment_energy_wh: list[float] = Field(default_factory=list)
    segment_steps: int = Field(0, description="training steps per segment (to place segments on the loss curve)")
    failed_segments: list[int] = Field(default_factory=list,
                                       description="segments a verifier's evidence found fraudulent")


class MoneyFlow(BaseModel):
    """An amount of tokens that came in (``kind="in"``) or went somewhere (``"out"``),
    by ``label``; the two sides of a report add up (``greenproof.ledger``)."""

    label: str
    amount: int
    kind: Literal["in", "out"] = "out"


class Report(BaseModel):
    title: str = "greenproof demo"
    token_symbol: str = "GPT"
    token_decimals: int = 18
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    wall_s: float = 0.0
    jobs: list[ReportJob] = Field(default_factory=list)
    money: list[MoneyFlow] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    def tokens(self, amount: int) -> float:
        """Base units -> whole tokens."""
        return amount / 10**self.token_decimals


def _plot_loss(job: ReportJob, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.plot(range(1, len(job.losses) + 1), job.losses, color="#2e7d32", linewidth=1.4)
    for k in job.failed_segments if job.segment_steps else []:
        lo, hi = k * job.segment_steps + 0.5, (k + 1) * job.segment_steps + 0.5
        ax.axvspan(lo, hi, color="#c62828", alpha=0.18, label=f"segment {k}: fraud")
    if job.failed_segments and job.segment_steps:
        ax.legend(fontsize=8)
    ax.set_title(f"job {job.job_id} ({job.task}) — {job.outcome}")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_energy(jobs: list[ReportJob], path: Path) -> None:
    """Energy per segment of each job; the shaded part under a line is the green share
    (the provider's attested ``green_bps``), the rest grid power."""
    fig, ax = plt.subplots(figsize=(6, 3.4), dpi=100)
    for job in jobs:
        if job.segment_energy_wh:
            xs = range(len(job.segment_energy_wh))
            (line,) = ax.plot(xs, job.segment_energy_wh, marker="o",
                              label=f"job {job.job_id} ({job.task}), {job.green_bps / 100:g} % green")
            if job.green_bps:
                ax.fill_between(xs, [e * job.green_bps / 10_000 for e in job.segment_energy_wh],
                                color=line.get_color(), alpha=0.25)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("energy per segment (shaded: green)")
    ax.set_xlabel("segment")
    ax.set_ylabel("Wh")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_money(report: Report, path: Path) -> None:
    flows = [f for f in report.money if f.amount > 0 and f.kind == "out"]
    fig, ax = plt.subplots(figsize=(9, 0.8 + 0.45 * max(len(flows), 1)), dpi=100)
    labels = [f.label for f in flows]
    values = [report.tokens(f.amount) for f in flows]
    ax.barh(labels, values, color="#1565c0")
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:,.2f}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(report.token_symbol)
    ax.set_title("where the money went")
    if values:
        ax.set_xlim(0, max(values) * 1.25)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:70rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}td,th{padding:.3rem .7rem;border-bottom:1px solid #ddd;text-align:right}
td:nth-child(-n+4),th:nth-child(-n+4){text-align:left}.PAID,.won{color:#2e7d32}.SLASHED,.lost,.no-show{color:#c62828}
table.committee td:nth-child(-n+6),table.committee th:nth-child(-n+6){text-align:left}
.plots{display:flex;flex-wrap:wrap;gap:1rem}img{border:1px solid #eee}
"""


def render_report(report: Report, out_dir: Path) -> Path:
    """Write the report folder; returns the path of ``index.html``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    e = html.escape
    loss_imgs: list[str] = []
    for job in report.jobs:
        if job.losses:
            name = f"loss_{job.job_id}.png"
            _plot_loss(job, out_dir / name)
            loss_imgs.append(name)
    _plot_energy(report.jobs, out_dir / "energy.png")
    _plot_money(report, out_dir / "money.png")
    (out_dir / "summary.json").write_text(report.model_dump_json(indent=2))

    rows = "\n".join(
        f"<tr><td>{j.job_id}</td><td>{e(j.task)}</td><td>{e(j.provider)}</td>"
        f"<td class='{e(j.outcome.split()[0])}'>{e(j.outcome)}</td>"
        f"<td>{report.tokens(j.paid):,.2f}</td><td>{report.tokens(j.slashed):,.2f}</td>"
        f"<td>{report.tokens(j.premium):,.2f} of {report.tokens(j.green_premium):,.2f}"
        f" ({j.green_bps / 100:g} % green)</td>"
        f"<td>{report.tokens(j.bonus):,.2f}</td><td>{j.energy_wh:.4f}</td>"
        f"<td>{j.co2_g * 1000:.3f}{f' (on chain {j.carbon_mg_onchain})' if j.outcome.startswith('PAID') else ''}</td>"
        f"<td>{j.wall_s:.0f}</td></tr>"
        for j in report.jobs
    )
    committee_rows = "\n".join(
        f"<tr><td>{j.job_id}</td><td>{e(j.task)}</td><td>{c.round}</td><td>{e(c.verifier)}</td>"
        f"<td>{c.seats} {e(c.vote)}</td><td class='{e(c.result)}'>{e(c.result)}</td>"
        f"<td>{report.tokens(c.reward):,.4f}</td><td>{report.tokens(c.penalty):,.4f}</td></tr>"
        for j in report.jobs for c in j.committee
    )
    decisions = "".join(
        f"<li>job {j.job_id} ({e(j.task)}): {e(j.decision)}"
        f"{f' in round {j.decided_round}' if j.decided_round is not None else ''}</li>"
        for j in report.jobs
    )
    money_rows = "\n".join(
        f"<tr><td>{'in' if f.kind == 'in' else 'out'}</td><td>{e(f.label)}</td>"
        f"<td class='num'>{report.tokens(f.amount):,.4f}</td></tr>"
        for f in sorted(report.money, key=lambda f: f.kind != "in")
    ) + "".join(
        f"<tr class='total'><td>{kind}</td><td>total {'in' if kind == 'in' else 'out'}</td>"
        f"<td class='num'><b>{report.tokens(sum(f.amount for f in report.money if f.kind == kind)):,.4f}</b></td></tr>"
        for kind in ("in", "out")
    )
    notes = "".join(f"<li>{e(n)}</li>" for n in report.notes)
    imgs = "".join(f'<img src="{e(n)}" alt="{e(n)}">' for n in loss_imgs)
    sym = e(report.token_symbol)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(report.title)}</title>
<style>{_CSS}</style></head><body>
<h1>{e(report.title)}</h1>
<p>{report.created:%Y-%m-%d %H:%M:%S} UTC · wall time {report.wall_s:.0f} s · {len(report.jobs)} jobs</p>
<h2>Jobs</h2>
<table><thead><tr><th>job</th><th>task</th><th>provider</th><th>outcome</th>
<th>paid ({sym})</th><th>slashed ({sym})</th><th>green premium ({sym})</th><th>bonus ({sym})</th>
<th>energy (Wh)</th>
<th>CO₂ (mg)</th><th>wall (s)</th></tr></thead><tbody>
{rows}
</tbody></table>
<h2>Committees and votes</h2>
<p>Each job's case in the court: the seats drawn by stake from the pool of the provider's class,
each holder's vote (an ok vote counts only with the work digests that prove the replay) and what
the decision made of it.</p>
<ul>{decisions}</ul>
<table class="committee"><thead><tr><th>job</th><th>task</th><th>round</th><th>verifier</th>
<th>seats and vote</th><th>result</th><th>reward ({sym})</th><th>penalty ({sym})</th></tr></thead><tbody>
{committee_rows or "<tr><td colspan='8'>no committee was drawn</td></tr>"}
</tbody></table>
<h2>Loss curves</h2><div class="plots">{imgs or "<p>no run records found</p>"}</div>
<h2>Energy per segment</h2><div class="plots"><img src="energy.png" alt="energy per segment"></div>
<h2>Where the money went</h2>
<div class="plots"><img src="money.png" alt="where the money went">
<table><tbody>{money_rows}</tbody></table></div>
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
</body></html>
"""
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    log.info("report written to %s", index)
    return index
