"""The provider's worker as a real process against anvil: the paid path, kill -9, RPC outages,
an audit larger than one ``open_segments`` call, sparse checkpoints under a disk budget.

Each test runs ``greenproof worker run … --exit-when-idle`` as a subprocess (so
SIGKILL is real), posts a job as the requester through the chain bindings and
plays the rest of the world: a verifier joins the court's pool of the worker's
class (else no job can be accepted in it), the test mines the blocks the audit
seed needs and warps time past each round's vote windows (nobody votes: every
round lacks a majority, the last one pays the provider). The sparse checkpoint story runs
a verifier daemon as well (``daemons``, ``drive_court``): its committee replays what the
worker regenerated and votes ok.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from greenproof.attestation import sign_attestation
from greenproof.chain.accounts import dev_account
from greenproof.chain.client import Chain, RetryPolicy
from greenproof.chain.connection import make_web3
from greenproof.chain.gateway import Gateway
from greenproof.chain.models import (
    CaseOutcome,
    JobAccepted,
    JobFinalized,
    JobState,
    ResultCommitted,
    SegmentOpened,
    VoteRevealed,
)
from greenproof.spec import parse_spec
from greenproof.statehash import state_hash
from greenproof.store import fetch_state, state_size_cap
from verifier.classes import replayable_classes
from worker.checkpoints import keep_every, kept_boundaries, needed_boundaries, states_on_disk
from worker.policy import GIB

log = logging.getLogger(__name__)

pytestmark = pytest.mark.anvil

TOKEN = 10**18
PROVIDER, REQUESTER, VERIFIER = 2, 1, 4  # TEST::N indices, as in conftest.ROLES
PAYMENT = 100 * TOKEN
PREMIUM = 10 * TOKEN
STAKE = 1_000 * TOKEN
GREEN_BPS = 8_000


def tiny_spec(segments: int) -> tuple[Any, str]:
    """A few-second mlp job and its spec URI (compact JSON: the market caps URIs at 256 bytes)."""
    raw = {
        "task": "mlp",
        "model": {"hidden": 16, "depth": 1},
        "dataset": {"uri": "builtin://digits"},
        "batch_size": 32,
        "total_steps": 2 * segments,
        "segment_steps": 2,
    }
    compact = json.dumps(raw, sort_keys=True, separators=(",", ":"))
    return parse_spec(raw), "data:application/json;base64," + base64.b64encode(compact.encode()).decode()


# ------------------------------------------------------------------ the world around the worker
def attest_green(owner: Gateway, attestor: Any, provider_address: str, green_bps: int = GREEN_BPS, *,
                 allowance_for: str | None = None) -> None:
    """Register the attestor, sign and submit an attestation, fund the bonus pool; with
    ``allowance_for``, the owner (as allocator) grants that requester an allowance on it."""
    owner.add_attestor(attestor.address)
    now = owner.chain.timestamp()
    signed = sign_attestation(
        attestor, owner.registry_address, owner.chain.chain_id, provider=provider_address,
        green_bps=green_bps, carbon_g_per_kwh=50, region="eu-north", valid_from=now - 60,
        valid_until=now + 30 * 86_400, nonce=1,
    )
    owner.submit_attestation(signed)
    owner.fund_pool(1_000 * TOKEN)
    if allowance_for is not None:
        owner.add_allocator(owner.address)
        owner.grant_allowance(allowance_for, 1_000 * TOKEN)


def post_job(requester: Gateway, spec_and_uri: tuple[Any, str], *, audit_samples: int = 2,
             duration: int = 3_600, green_premium: int = 0) -> int:
    spec, uri = spec_and_uri
    job_id, _ = requester.post_job(
        spec_hash=spec.spec_hash(), spec_uri=uri, num_segments=spec.num_segments,
        audit_samples=audit_samples, payment=PAYMENT, verifier_fee=TOKEN, collateral=PAYMENT,
        deadline=requester.chain.timestamp() + duration, min_green_bps=0, green_premium=green_premium,
    )
    return job_id


class WorkerProcess:
    """``greenproof worker run`` as a child process with its log in a file."""

    def __init__(self, rpc_url: str, manifest: Path, data_dir: Path, log_path: Path) -> None:
        exe = shutil.which("greenproof", path=str(Path(sys.executable).parent)) or "greenproof"
        self.cmd = [
            exe, "worker", "run", "--network", rpc_url, "--account", f"TEST::{PROVIDER}",
            "--deployment", str(manifest), "--data-dir", str(data_dir), "--port", "0",
            "--poll", "0.2", "--exit-when-idle",
        ]
        self.env = {**os.environ, "GREENPROOF_LOG": "INFO", "PYTHONUNBUFFERED": "1",
                    "GREENPROOF_ENERGY_SOURCE": "fake"}
        self.data_dir = data_dir
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        if not self.alive():
            raise AssertionError(f"worker exited early ({self.proc.returncode}):\n{self.log()[-4000:]}")

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker did not exit:\n{self.log()[-4000:]}") from None

    def journal(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        path = self.data_dir / "journal.sqlite"
        if not path.exists():
            return []
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()

    def boundaries(self, job_id: int) -> int:
        rows = self.journal("SELECT count(*) FROM boundaries WHERE job_id = ?", str(job_id))
        return int(rows[0][0]) if rows else 0

    def stop(self) -> None:
        if self.alive():
            self.kill9()


@contextmanager
def worker_process(rpc_url: str, manifest: Path, tmp_path: Path) -> Iterator[WorkerProcess]:
    w = WorkerProcess(rpc_url, manifest, tmp_path / "worker-data", tmp_path / "worker.log")
    try:
        yield w
    finally:
        w.stop()


def wait_for(what: str, pred: Callable[[], bool], worker: WorkerProcess | None, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if worker is not None:
            worker.check_alive()
        if time.monotonic() > end:
            tail = worker.log()[-4000:] if worker is not None else ""
            raise AssertionError(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.2)


def drive_to_paid(node: Any, market: Gateway, job_id: int, worker: WorkerProcess, timeout: float = 150,
                  on_voting: Callable[[], None] | None = None) -> None:
    """Play the world until the job is PAID: mine for the audit seed, warp past each round's
    vote windows (the worker finalizes; a round without votes draws the next)."""
    end = time.monotonic() + timeout
    while (state := market.job(job_id).state) is not JobState.PAID:
        assert not state.final, f"job {job_id} ended {state}\n{worker.log()[-4000:]}"
        worker.check_alive()
        if state is JobState.COMMITTED:
            node.mine(2)  # the seed block must be in the past; automine only mines on transactions
        elif state is JobState.VOTING:
            if on_voting is not None:
                on_voting()
                on_voting = None
            ends = market.voting_ends(job_id)
            if market.chain.timestamp() <= ends:
                node.evm_increase_time(ends - market.chain.timestamp() + 1)
        if time.monotonic() > end:
            raise AssertionError(f"job {job_id} still {state}\n{worker.log()[-4000:]}")
        time.sleep(0.2)


def accepted_count(market: Gateway, job_id: int) -> int:
    return len(market.events(JobAccepted, 0, job_id=job_id))


# ------------------------------------------------------------------ stories
def test_worker_trains_commits_opens_and_is_paid_with_its_green_premium_share(
    anvil: Any, deployment: Any, deployment_path: Path, gateway_for: Callable[[str], Gateway],
    seat_verifiers: Callable[..., bytes],
    attestor: Any, tmp_path: Path,
) -> None:
    provider, requester, owner = gateway_for("provider"), gateway_for("requester"), gateway_for("owner")
    provider.stake(STAKE)
    seat_verifiers("verifier")
    attest_green(owner, attestor, provider.address, allowance_for=requester.address)
    before = provider.token_balance()
    spec = tiny_spec(segments=4)

    with worker_process(anvil.rpc_url, deployment_path, tmp_path) as worker:
        worker.start()
        t0 = time.monotonic()
        job_id = post_job(requester, spec, audit_samples=3, green_premium=PREMIUM)
        served: dict[str, Any] = {}

        def fetch_artifacts() -> None:
            """What a verifier and the requester do while the job is in VOTING."""
            [committed] = requester.events(ResultCommitted, 0, job_id=job_id)
            uri, final = committed.result_uri, committed.final_state_hash
            served["final"] = state_hash(fetch_state(uri, final))
            served["model"] = httpx.get(f"{uri}/final").status_code
            served["post"] = httpx.post(f"{uri}/{final.hex()}", content=b"x").status_code
            served["unknown"] = httpx.get(f"{uri}/{'ab' * 32}").status_code
            served["expected"] = final
            # the job is not final: its losses (the digests' preimages) are not published yet
            served["record_while_voting"] = (tmp_path / "worker-data" / "runs" / str(job_id) / "record.json").exists()

        drive_to_paid(anvil, requester, job_id, worker, on_voting=fetch_artifacts)
        paid_after = time.monotonic() - t0
        assert worker.wait(timeout=60) == 0  # --exit-when-idle, after withdrawing
    log.warning("full paid job wall time (post -> PAID): %.1f s", paid_after)
    print(f"\nfull paid job wall time (post -> PAID): {paid_after:.1f} s")

    assert served["final"] == served["expected"]  # the checkpoint behind the commitment
    assert served["record_while_voting"] is False
    assert (served["model"], served["post"], served["unknown"]) == (200, 405, 404)
    [finalized] = requester.events(JobFinalized, 0, job_id=job_id)
    # nobody voted (no verifier daemon runs here): the court paid after its last round found no
    # majority, so the provider gets its attested share of the premium but no pool bonus, which
    # pays only on jobs a committee judged ok (docs/protocol.md §7), despite the allowance
    assert finalized.premium == PREMIUM * GREEN_BPS // 10_000 > 0
    assert finalized.bonus == 0 and requester.allowance_of(requester.address) == 1_000 * TOKEN
    assert provider.token_balance() - before == PAYMENT + finalized.premium
    assert provider.locked_stake() == 0
    assert provider.claimable() == 0
    [committed] = requester.events(ResultCommitted, 0, job_id=job_id)
    assert committed.result_uri.endswith(f"/artifacts/{job_id}")
    assert committed.final_state_hash == provider.job(job_id).final_state_hash
    # every audited segment was opened with proofs against the committed root
    opened = {e.index for e in requester.events(SegmentOpened, 0, job_id=job_id)}
    assert opened == audited_segments(requester, job_id)
    assert committed.move_total == provider.job(job_id).move_total > 0
    assert accepted_count(requester, job_id) == 1
    # the run record behind the dashboard's loss curve: every step's loss, the root's final hash
    record = json.loads((tmp_path / "worker-data" / "runs" / str(job_id) / "record.json").read_text())
    assert len(record["losses"]) == spec[0].total_steps
    assert record["state_hashes"][-1] == served["expected"].hex()


def audited_segments(gw: Gateway, job_id: int) -> set[int]:
    """The drawn uniform indices and, per movement target, the opened segment whose committed
    bracket ``start_move <= u < end_move`` holds it (exactly one does)."""
    indices, targets = gw.audit_indices(job_id), gw.movement_draws(job_id)
    opened = gw.events(SegmentOpened, 0, job_id=job_id)
    brackets = set()
    for u in targets:
        [k] = [e.index for e in opened if e.start_move <= u < e.end_move]
        brackets.add(k)
    return set(indices) | brackets


def test_worker_killed_mid_training_and_mid_audit_still_gets_paid(
    anvil: Any, deployment: Any, deployment_path: Path, gateway_for: Callable[[str], Gateway],
    seat_verifiers: Callable[..., bytes],
    tmp_path: Path,
) -> None:
    provider, requester = gateway_for("provider"), gateway_for("requester")
    provider.stake(STAKE)
    seat_verifiers("verifier")
    before = provider.token_balance()
    spec = tiny_spec(segments=6)

    with worker_process(anvil.rpc_url, deployment_path, tmp_path) as worker:
        worker.start()
        job_id = post_job(requester, spec, audit_samples=4)
        # 1. kill -9 in the middle of training
        wait_for("two journaled boundaries", lambda: worker.boundaries(job_id) >= 2, worker)
        worker.kill9()
        done = worker.boundaries(job_id)
        assert 2 <= done <= spec[0].num_segments + 1
        assert requester.job(job_id).state in (JobState.ACCEPTED, JobState.COMMITTED)

        worker.start()
        wait_for("the commitment", lambda: requester.job(job_id).state is JobState.COMMITTED, worker)
        assert "resuming at boundary" in worker.log() or done == spec[0].num_segments + 1
        # 2. kill -9 between commit and open; the requester draws the audit meanwhile
        worker.kill9()
        anvil.mine(2)
        requester.draw_audit(job_id)
        assert requester.job(job_id).state is JobState.AUDITING

        worker.start()
        drive_to_paid(anvil, requester, job_id, worker)
        assert worker.wait(timeout=60) == 0
    assert accepted_count(requester, job_id) == 1  # never accepted twice
    assert worker.log().count(f"job {job_id}: accepting") == 1
    assert provider.token_balance() - before == PAYMENT  # not green: no bonus


def test_worker_opens_an_audit_larger_than_one_open_segments_call_and_is_paid(
    anvil: Any, deployment: Any, deployment_path: Path, gateway_for: Callable[[str], Gateway],
    seat_verifiers: Callable[..., bytes],
    tmp_path: Path,
) -> None:
    """64 segments, 32 audit samples: some 25 distinct segments to open, MAX_OPENINGS (16) per call."""
    provider, requester = gateway_for("provider"), gateway_for("requester")
    provider.stake(STAKE)
    seat_verifiers("verifier")
    before = provider.token_balance()
    spec = tiny_spec(segments=64)

    with worker_process(anvil.rpc_url, deployment_path, tmp_path) as worker:
        worker.start()
        job_id = post_job(requester, spec, audit_samples=32)
        drive_to_paid(anvil, requester, job_id, worker, timeout=420)  # liveness bound, not a speed test
        assert worker.wait(timeout=60) == 0

    audited = audited_segments(requester, job_id)
    # 16 uniform draws over 64 segments and 16 over the committed movement: more than 16 distinct
    assert len(audited) > requester.max_openings
    opened = requester.events(SegmentOpened, 0, job_id=job_id)
    assert {e.index for e in opened} == audited
    batches = {e.tx_hash for e in opened}
    assert len(batches) == -(-len(audited) // requester.max_openings)  # full batches, none reverted
    assert "open segments failed" not in worker.log()
    assert provider.token_balance() - before == PAYMENT


def test_worker_rides_out_an_rpc_outage(private_anvil: Any, tmp_path: Path) -> None:
    node, deployment, manifest = private_anvil

    def gateway(role: str) -> Gateway:
        account = dev_account({"provider": PROVIDER, "requester": REQUESTER, "verifier": VERIFIER}[role])
        return Gateway(Chain(make_web3(node.rpc_url), account, deployment, poll=0.05,
                             retry=RetryPolicy(attempts=30, base_delay=0.2, max_delay=1.0)))

    provider, requester, verifier = gateway("provider"), gateway("requester"), gateway("verifier")
    provider.stake(STAKE)
    verifier.stake(3 * verifier.seat_stake())
    verifier.join_pool(replayable_classes()["fp32"], 3)  # the court the worker's class needs
    before = provider.token_balance()
    spec = tiny_spec(segments=4)

    with worker_process(node.rpc_url, manifest, tmp_path) as worker:
        worker.start()
        job_id = post_job(requester, spec)
        wait_for("the job accepted", lambda: worker.boundaries(job_id) >= 1, worker)
        node.restart(down_for=6.0)  # the node is gone for a while; its state comes back
        requester = gateway("requester")
        drive_to_paid(node, requester, job_id, worker)
        assert worker.wait(timeout=60) == 0
    text = worker.log()
    assert "retry" in text.lower() or "retrying" in text.lower(), text[-3000:]
    assert gateway("provider").token_balance() - before == PAYMENT


def store_files(data_dir: Path) -> set[str]:
    """The checkpoints in a worker's content-addressed store (no temporary files)."""
    store = data_dir / "store"
    return {p.name for p in store.iterdir() if p.is_file() and not p.name.startswith(".")} if store.is_dir() else set()


def test_a_worker_under_a_disk_budget_keeps_every_mth_state_regenerates_the_audited_ones_and_is_paid(
    anvil: Any, deployment: Any, deployment_path: Path, gateway_for: Callable[[str], Gateway],
    seat_verifiers: Callable[..., bytes], daemons: Any, drive_court: Callable[..., JobState],
    tmp_path: Path,
) -> None:
    """6 segments, a budget of 4.5 states: m = 3, boundaries 3 and 6 on disk. Every segment has a
    boundary that is not kept, so whatever the audit draws is regenerated by replay, served, and
    replayed by the verifier's committee (one member with all three seats), which votes ok.
    Once PAID, the worker frees the job's checkpoints but the final model."""
    provider, requester = gateway_for("provider"), gateway_for("requester")
    provider.stake(STAKE)
    seat_verifiers("verifier")  # 3 seats: the whole committee
    before = provider.token_balance()
    spec = tiny_spec(segments=6)
    n, state_bytes = spec[0].num_segments, state_size_cap(spec[0])
    budget_gb = 4.5 * state_bytes / GIB  # 4 states fit (m = 3), 5 do not (m = 2)
    assert keep_every(n, state_bytes, budget_gb * GIB) == 3
    data_dir = tmp_path / "worker-data"
    worker = WorkerProcess(anvil.rpc_url, deployment_path, data_dir, tmp_path / "unused.log")
    daemons.start([*worker.cmd[1:], "--disk-budget-gb", repr(budget_gb)], "worker")

    job_id = post_job(requester, spec, audit_samples=3)
    # nobody mines until the commitment is seen: the audit (and any regeneration) needs blocks
    # past the seed block, so what the store holds now is what training left
    end = time.monotonic() + 300  # a liveness bound for a hung worker, not a speed test
    while (state := requester.job(job_id).state) is not JobState.COMMITTED:  # one read per pass
        daemons.check()
        assert state in (JobState.OPEN, JobState.ACCEPTED), daemons.log("worker")
        assert not worker.journal("SELECT reason FROM jobs WHERE phase = 'skipped'"), daemons.log("worker")
        assert time.monotonic() < end, daemons.log("worker")
        time.sleep(0.2)
    [m] = [int(v) for (v,) in worker.journal("SELECT value FROM meta WHERE key = ?", f"keep_every:{job_id}")]
    assert m == 3
    hashes = [bytes.fromhex(h) for (h,) in worker.journal(
        "SELECT state_hash FROM boundaries WHERE job_id = ? ORDER BY k", str(job_id))]
    assert len(hashes) == n + 1
    kept = kept_boundaries(n, m)  # [3, 6]
    trained = store_files(data_dir)
    assert trained == {hashes[k].hex() for k in kept}
    assert len(trained) <= states_on_disk(n, m)  # ceil(N/m) + 2

    daemons.start(["verifier", "run", "--network", anvil.rpc_url, "--deployment", str(deployment_path),
                   "--account", f"TEST::{VERIFIER}", "--data-dir", str(tmp_path / "verifier"), "--poll", "0.3",
                   "--exit-when-idle", "--fetch-attempts", "2", "--fetch-backoff", "0.2"], "verifier")
    seen: dict[str, Any] = {}

    def while_voting(case: Any) -> None:
        """Every audited segment is open: both its boundaries are served, with their committed hashes."""
        [committed] = requester.events(ResultCommitted, 0, job_id=job_id)
        needed = needed_boundaries(audited_segments(requester, job_id))
        seen["needed"] = needed
        seen["served"] = {k: state_hash(fetch_state(committed.result_uri, hashes[k], spec=spec[0])) == hashes[k]
                          for k in needed}
        seen["voting_files"] = store_files(data_dir)

    final = drive_court(requester, job_id, daemons, {gateway_for("verifier").address}, on_voting=while_voting)
    daemons.wait_all()

    assert final is JobState.PAID, daemons.log("worker")
    case = requester.case_of(job_id)
    assert (case.outcome, case.drawn_seats, case.ok_seats) == (CaseOutcome.OK, 3, 3)
    revealed = requester.events(VoteRevealed, requester.deployment.deployment_block, job_id=job_id)
    assert revealed and all(e.counted and not e.fraud for e in revealed)
    needed = seen["needed"]
    assert set(needed) - set(kept), needed  # some audited boundary was not kept: it was regenerated
    assert seen["served"] == dict.fromkeys(needed, True)
    assert seen["voting_files"] == {hashes[k].hex() for k in {*kept, *needed}}
    opened = {e.index for e in requester.events(SegmentOpened, 0, job_id=job_id)}
    assert opened == audited_segments(requester, job_id)
    text = daemons.log("worker", tail=200_000)
    assert "regenerating boundary" in text and "REGENERATION MISMATCH" not in text
    # final: the job's checkpoints are freed, the requester's model stays
    assert store_files(data_dir) == {hashes[n].hex()}
    assert f"job {job_id}: final; freed {len(seen['voting_files']) - 1} checkpoint(s)" in text
    assert provider.token_balance() - before == PAYMENT
