"""The demo report: an index page that links plots which exist and are real PNGs."""

from __future__ import annotations

import re
from pathlib import Path

from greenproof.report import (
    MoneyFlow,
    Report,
    ReportJob,
    ReportSeat,
    render_report,
)


def test_report_folder_has_page_plots_and_numbers(tmp_path: Path) -> None:
    report = Report(
        token_symbol="MOCK", wall_s=123.4,
        jobs=[
            ReportJob(job_id=1, task="mlp", provider="green", outcome="PAID", paid=100 * 10**18,
                      bonus=20 * 10**18, energy_wh=0.5, co2_g=0.01, wall_s=90,
                      decision="OK", decided_round=0,
                      committee=[ReportSeat(round=0, verifier="verifier A", seats=2, vote="ok",
                                            result="won", reward=10**18),
                                 ReportSeat(round=0, verifier="verifier B", seats=1,
                                            vote="no vote", result="no-show", penalty=2 * 10**16)],
                      losses=[2.3, 1.5, 0.9], segment_energy_wh=[0.2, 0.3]),
            ReportJob(job_id=2, task="cnn", provider="cheater <b>", outcome="SLASHED",
                      slashed=4 * 10**18, energy_wh=0.1, segment_energy_wh=[0.05, 0.05]),
        ],
        money=[MoneyFlow(label="paid to providers", amount=100 * 10**18),
               MoneyFlow(label="collateral slashed", amount=4 * 10**18)],
    )
    index = render_report(report, tmp_path / "out")
    page = index.read_text()
    linked = set(re.findall(r'src="([^"]+)"', page))
    assert linked == {"loss_1.png", "energy.png", "money.png"}  # no loss curve for job 2
    for name in linked:
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "cheater &lt;b&gt;" in page and "<b>" not in page.split("<body>")[1].split("<h2>")[0]
    assert "100.00" in page and "SLASHED" in page and "123 s" in page
    assert "<th>CO₂ (mg)</th>" in page and "<td>10.000 (on chain 0)</td>" in page  # 0.01 g, shown in milligrams
    assert "OK in round 0" in page and "<td>2 ok</td><td class='won'>won</td>" in page
    assert "<td class='no-show'>no-show</td><td>0.0000</td><td>0.0200</td>" in page
    assert Report.model_validate_json((tmp_path / "out" / "summary.json").read_text()) == report


def test_a_slashed_jobs_failed_segment_and_the_green_share_are_drawn(tmp_path) -> None:
    from greenproof.demo import _failed_segments
    from greenproof.report import Report, ReportJob, render_report

    evidence = [{"verdict": "fraud", "segments": [{"index": 1, "verdict": "fraud"}, {"index": 0, "verdict": "ok"}]},
                {"verdict": "ok", "segments": [{"index": 2, "verdict": "ok"}]}]
    assert _failed_segments(evidence) == [1]
    report = Report(jobs=[ReportJob(job_id=7, task="cnn", provider="cheater", outcome="SLASHED",
                                    losses=[2.0, 1.8, 1.7, 1.5, 1.4, 1.2], segment_steps=2,
                                    failed_segments=[1], green_bps=8_000,
                                    segment_energy_wh=[0.1, 0.1, 0.1])])
    render_report(report, tmp_path)
    assert (tmp_path / "loss_7.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "energy.png").read_bytes()[:4] == b"\x89PNG"
