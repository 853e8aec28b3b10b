"""A person opens the dashboard in a real browser (Debian's chromium, driven by Playwright).

On a small anvil deployment two verifiers join the court's pool of one class,
a requester posts two jobs and a provider of that class accepts one;
``greenproof dashboard`` runs as its own process; the browser loads the job
list, clicks into the accepted job, looks at the verifiers' pool, and a
screenshot is saved to ``tests/e2e/artifacts/``. The assertions read what a
person would see.

Chromium comes from Debian (``scripts/install-browser.sh`` installs it when
``/usr/bin/chromium`` is missing); ``playwright install`` is never run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from greenproof.chain import Anvil, Gateway, connect
from greenproof.chain.devnet import free_port
from greenproof.procs import Supervisor

pytestmark = pytest.mark.anvil

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SPEC_YAML = """\
task: mlp
dataset: {uri: "builtin://digits"}
batch_size: 16
total_steps: 4
segment_steps: 2
"""
CLASS = b"\x01" * 32


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        subprocess.run(["bash", str(ROOT / "scripts" / "install-browser.sh")], check=True)
    assert CHROMIUM.exists(), "scripts/install-browser.sh did not install /usr/bin/chromium"
    return CHROMIUM


@pytest.fixture(scope="module")
def dashboard_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict]]:
    from click.testing import CliRunner

    from greenproof.cli import cli
    from greenproof.demo import DEMO_SEATS, default_actors, setup_market

    data = tmp_path_factory.mktemp("dashboard-market")
    with Anvil(state_dir=data / "anvil") as node:
        actors = default_actors()
        manifest = setup_market(node.rpc_url, actors, data, pool_classes=[CLASS])
        spec = data / "job.yaml"
        spec.write_text(SPEC_YAML)
        job_ids = []
        for payment in ("12", "3"):
            result = CliRunner().invoke(cli, [
                "requester", "post", str(spec), "--payment", payment, "--network", node.rpc_url,
                "--deployment", str(manifest), "--account", actors["requester"].account,
                "--json"], catch_exceptions=False)
            assert result.exit_code == 0, result.output
            job_ids.append(int(result.output.split('"job_id": ')[1].split(",")[0]))
        Gateway(connect(node.rpc_url, actors["green"].account, manifest)).accept_job(
            job_ids[0], CLASS)
        port = free_port()
        sup = Supervisor(grace=5)
        child = sup.spawn("dashboard", [
            sys.executable, "-c", "from greenproof.cli import main; main()", "dashboard",
            "--network", node.rpc_url, "--deployment", str(manifest), "--port", str(port),
            "--refresh", "0.2"], data / "dashboard.log")
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(150):
                try:
                    if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert child.alive, child.tail()
                time.sleep(0.2)
            else:
                pytest.fail(f"dashboard did not come up:\n{child.tail()}")
            yield url, {"jobs": job_ids, "provider": actors["green"].address,
                        "verifiers": [actors[r].address for r in ("verifier_a", "verifier_b")],
                        "seats": DEMO_SEATS}
        finally:
            sup.stop_all()


def test_a_person_browses_to_a_job_and_sees_it(chromium: Path, dashboard_url: tuple[str, dict],
                                               tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url, facts = dashboard_url
    accepted, open_job = facts["jobs"]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard-job.png"
    shot.unlink(missing_ok=True)
    with sync_playwright() as pw:
        # a fresh profile every run (Playwright passes it as --user-data-dir)
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(chromium), headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 900},
        )
        try:
            page = browser.new_page()
            page.goto(url + "/", wait_until="domcontentloaded")
            assert page.locator("h2", has_text="Accepted").count() == 1
            assert page.locator("h2", has_text="Open").count() == 1
            assert page.locator("#stat-jobs").inner_text() == "2"
            page.locator(f"a.job-link[href='/jobs/{accepted}']").click()
            page.wait_for_selector("#job-title")
            title = page.locator("#job-title").inner_text()
            assert f"Job #{accepted}" in title and "ACCEPTED" in title
            body = page.locator("main").inner_text()
            assert facts["provider"] in body
            assert "12" in body  # the payment
            assert "JobAccepted" in body  # the timeline
            page.screenshot(path=str(shot), full_page=True)

            page.goto(f"{url}/providers")
            assert facts["provider"][:6] in page.locator("table").inner_text()
            page.goto(f"{url}/verifiers")
            pool = page.locator("h3.pool").inner_text()
            assert "0x0101" in pool and f"{2 * facts['seats']} seats (0 busy) · 2 members" in pool
            members = page.locator("table.pool").inner_text()
            assert all(v[:6] in members for v in facts["verifiers"])
            assert str(facts["seats"]) in members
            missing = page.goto(f"{url}/jobs/{open_job + 100}")
            assert missing is not None and missing.status == 404
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
