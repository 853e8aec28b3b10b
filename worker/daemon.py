"""The provider's worker daemon: find jobs, train, commit, open audits, get paid.

One process per provider account. Three kinds of threads:

* the **chain loop** (the caller's thread, :meth:`Worker.run`): follows
  JobMarket's ``JobPosted`` events from a persisted cursor, decides with the
  accept policy, and moves every job it holds through the on-chain state
  machine (accept -> commit -> draw_audit -> open -> finalize -> withdraw).
  Every transaction is sent from this thread through ``Chain.transact``;
* one **trainer** per device: trains the queued jobs one at a time, earliest
  deadline first, journaling each boundary after its checkpoint is durable;
* the **artifact server** (uvicorn, see :mod:`worker.server`).

Several jobs progress through their chain phases concurrently while training is
serialized on the device. Crash safety comes from the journal's write-ahead
rules (see :mod:`worker.journal`) plus reconciling with on-chain state on every
pass, so a restarted worker picks up where the dead one stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from web3.exceptions import Web3Exception

from greenproof.chain.client import Chain, ChainError, TxError
from greenproof.chain.market import JobState, Market, OnchainJob
from greenproof.merkle import commitment_tree
from worker.config import WorkerConfig
from worker.journal import JobRow, Journal, Phase
from worker.policy import Offer, Standing, evaluate

log = logging.getLogger("greenproof.worker")

#: Errors after which the chain loop backs off and retries the whole pass.
RPC_ERRORS: tuple[type[BaseException], ...] = (
    ChainError,
    requests.RequestException,
    ConnectionError,
    TimeoutError,
    OSError,
    Web3Exception,
)


class GiveUp(Exception):
    """Training stops: the job cannot be delivered in time (or was lost)."""


class ChainClock:
    """Chain time as seen by the worker: ``time.time()`` plus the largest
    (block timestamp - wall clock) offset observed. Chain time never runs
    backwards, and a dev chain's ``evm_increaseTime`` shows up as an offset."""

    def __init__(self) -> None:
        self._offset: float | None = None
        self._lock = threading.Lock()

    def observe(self, block_timestamp: int) -> None:
        offset = block_timestamp - time.time()
        with self._lock:
            if self._offset is None or offset > self._offset:
                self._offset = offset

    def now(self) -> int:
        with self._lock:
            offset = self._offset or 0.0
        return int(time.time() + offset)


@dataclass
class Throughput:
    """Measured steps per second per model family (an EMA), persisted in the journal."""

    journal: Journal

    def get(self, task: str) -> float | None:
        value = self.journal.get_meta(f"throughput:{task}")
        return None if value is None else float(value)

    def update(self, task: str, steps: int, seconds: float) -> None:
        if seconds <= 0 or steps <= 0:
            return
        rate = steps / seconds
        old = self.get(task)
        new = rate if old is None else 0.5 * old + 0.5 * rate
        self.journal.set_meta(f"throughput:{task}", f"{new:.6g}")


# ------------------------------------------------------------------ engine
def _engine() -> Any:
    """The training engine, imported on first use (keeps ``--help`` fast)."""
    from greenproof import engine, run, spec, store

    return spec, engine, store, run


class Trainer(threading.Thread):
    """Trains queued jobs on one device, one at a time, earliest deadline first."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(name=f"trainer-{worker.config.device}", daemon=True)
        self.worker = worker
        self.wake = threading.Event()
        self.busy_job: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        w = self.worker
        while not w.stopping.is_set():
            row = w.next_training_job()
            if row is None:
                self.wake.wait(w.config.poll_s)
                self.wake.clear()
                continue
            self.busy_job = row.job_id
            try:
                w.train(row)
            except Exception as exc:  # noqa: BLE001 - one bad job must not stop the device
                log.exception("job %d: training failed: %s", row.job_id, exc)
                w.journal.set_phase(row.job_id, Phase.ABANDONED, f"training failed: {exc}")
            finally:
                self.busy_job = None


# ------------------------------------------------------------------ worker
class Worker:
    """The daemon. Build it with a connected :class:`Chain` and a config."""

    def __init__(
        self,
        chain: Chain,
        config: WorkerConfig,
        *,
        journal: Journal | None = None,
        cheat: Any = None,
    ) -> None:
        spec_mod, engine, store_mod, _ = _engine()
        self.chain = chain
        self.config = config
        self.cheat = cheat
        self.address = chain.address
        self.market = Market(chain)
        self.journal = journal or Journal(config.journal_path)
        self.journal.bind(chain.chain_id, self.market.market.address, self.address)
        self.store = store_mod.ArtifactStore(config.store_dir)
        self.clock = ChainClock()
        self.throughput = Throughput(self.journal)
        self.stopping = threading.Event()
        self.trainer = Trainer(self)
        self.result_base = config.base_url()
        self._handled_any = False
        self._deploy_block = int(getattr(chain.deployment, "deployment_block", 0) or 0)

    # -------------------------------------------------------------- life cycle
    def run(self) -> int:
        """The chain loop. Returns the process exit code."""
        log.info(
            "worker %s on chain %d, market %s, device %s, artifacts at %s",
            self.address, self.chain.chain_id, self.market.market.address,
            self.config.device, self.result_base,
        )
        if self.config.stop != "once":
            self.trainer.start()
        backoff = self.config.poll_s
        try:
            while not self.stopping.is_set():
                try:
                    self.step()
                    backoff = self.config.poll_s
                except RPC_ERRORS as exc:
                    log.warning(
                        "chain loop: %s: %s; retrying in %.0fs (cursor %s)",
                        type(exc).__name__, str(exc)[:300], backoff, self.journal.cursor,
                    )
                    if self.stopping.wait(backoff):
                        break
                    backoff = min(self.config.max_backoff_s, backoff * 2)
                    continue
                if self.config.stop == "once":
                    if (row := self.next_training_job()) is not None:
                        self.train(row)
                        self.step()
                    break
                if self.config.stop == "idle" and self.idle():
                    log.info("worker: every job closed and nothing owed; exiting (--exit-when-idle)")
                    break
                self.stopping.wait(self.config.poll_s)
        except KeyboardInterrupt:
            log.info("worker: interrupted; progress is journaled, restart to resume")
        finally:
            self.stopping.set()
            self.trainer.wake.set()
        return 0

    def stop(self) -> None:
        self.stopping.set()
        self.trainer.wake.set()

    def idle(self) -> bool:
        if not self._handled_any or self.journal.active_jobs():
            return False
        return self.market.claimable(self.address) == 0

    # -------------------------------------------------------------- one pass
    def step(self) -> None:
        """One pass: new events, then every active job one action further, then withdraw."""
        head = self.chain.block_number()
        self.clock.observe(self.chain.timestamp(head))
        self.scan(head)
        for row in self.journal.active_jobs():
            self._handled_any = True
            self.advance(row)
        self.collect()

    def scan(self, head: int) -> None:
        """Process JobPosted events up to ``head - confirmations`` from the cursor."""
        target = head - self.config.confirmations
        cursor = self.journal.cursor
        start = (self._deploy_block if cursor is None else cursor + 1)
        if target < start:
            return
        chunk = 2000
        lo = start
        while lo <= target:
            hi = min(target, lo + chunk - 1)
            for ev in self.chain.logs("JobPosted", lo, hi):
                self.consider(
                    int(ev["args"]["job_id"]), int(ev["blockNumber"]), str(ev["args"]["spec_uri"])
                )
            self.journal.set_cursor(hi)
            lo = hi + 1

    # -------------------------------------------------------------- accepting
    def consider(self, job_id: int, posted_block: int, spec_uri: str) -> None:
        """Decide on a posted job; accept it if the policy says so."""
        if self.journal.job(job_id) is not None:
            return
        spec_mod = _engine()[0]
        job = self.market.job(job_id)
        if job.state is not JobState.OPEN:
            self._skip(job_id, f"job is {job.state}, not OPEN", posted_block)
            return
        try:
            spec = spec_mod.load_spec(spec_uri)
        except spec_mod.JobSpecError as exc:
            self._skip(job_id, f"spec unusable: {exc}", posted_block)
            return
        if spec.spec_hash() != job.spec_hash:
            self._skip(
                job_id,
                f"spec hash mismatch: {spec_uri[:80]} hashes to 0x{spec.spec_hash().hex()}, "
                f"job commits to 0x{job.spec_hash.hex()}",
                posted_block,
            )
            return
        if spec.num_segments != job.num_segments:
            self._skip(
                job_id,
                f"spec has {spec.num_segments} segments, job says {job.num_segments}",
                posted_block,
            )
            return
        try:
            memory = int(spec.estimate_memory_bytes())
        except spec_mod.JobSpecError as exc:
            self._skip(job_id, f"spec unusable: {exc}", posted_block)
            return
        offer = Offer(
            job_id=job_id,
            payment=job.payment,
            collateral=job.collateral,
            deadline=job.deadline,
            min_green_bps=job.min_green_bps,
            total_steps=spec.total_steps,
            memory_bytes=memory,
            steps_per_second=self.throughput.get(spec.task),
        )
        standing = Standing(
            now=self.clock.now(),
            green_bps=self.market.green_bps(self.address),
            free_stake=self.market.free_stake(self.address),
            queued_seconds=self._queued_seconds(),
        )
        decision = evaluate(offer, standing, self.config.policy)
        if not decision:
            self._skip(job_id, decision.reason, posted_block)
            return
        engine = _engine()[1]
        dclass = engine.determinism_class(spec, self.config.device)
        if not self.journal.begin_accept(
            job_id,
            spec_json=spec.canonical_json().decode(),
            spec_hash=job.spec_hash,
            determinism_class=dclass,
            deadline=job.deadline,
            num_segments=job.num_segments,
            posted_block=posted_block,
        ):
            return
        log.info("job %d: accepting (%s)", job_id, decision.reason)
        self._handled_any = True
        self._send_accept(job_id, dclass)

    def _send_accept(self, job_id: int, dclass: bytes) -> None:
        try:
            self.chain.transact(
                self.market.market.functions.accept_job(job_id, dclass),
                what="accept job",
                context={"job": job_id},
            )
        except TxError as exc:
            job = self.market.job(job_id)
            if self._ours(job) and job.state is not JobState.OPEN:
                log.info("job %d: accept already landed (%s)", job_id, exc.reason)
            else:
                self.journal.set_phase(job_id, Phase.SKIPPED, f"accept failed: {exc.reason}")
                log.warning("job %d: accept failed: %s", job_id, exc.reason)
                return
        self.journal.set_phase(job_id, Phase.QUEUED)
        self.trainer.wake.set()
        log.info("job %d: accepted, queued for %s", job_id, self.config.device)

    def _skip(self, job_id: int, reason: str, posted_block: int) -> None:
        if self.journal.record_skip(job_id, reason, posted_block):
            log.info("job %d: skipped: %s", job_id, reason)

    def _ours(self, job: OnchainJob) -> bool:
        return job.provider.lower() == self.address.lower()

    def _queued_seconds(self) -> float:
        total = 0.0
        spec_mod = _engine()[0]
        for row in self.journal.jobs([Phase.QUEUED, Phase.TRAINING]):
            spec = spec_mod.parse_spec(__import__("json").loads(row.spec_json))
            done = len(self.journal.boundaries(row.job_id))
            left = max(0, spec.num_segments + 1 - done) * spec.segment_steps
            offer_rate = self.throughput.get(spec.task) or self.config.policy.steps_per_second
            total += left / offer_rate * self.config.policy.safety_factor
        return total

    # -------------------------------------------------------------- state machine
    def advance(self, row: JobRow) -> None:
        """Move one job one action further, reconciling with its on-chain state."""
        job = self.market.job(row.job_id)
        if row.phase is Phase.ACCEPTING:
            if self._ours(job) and job.state is not JobState.OPEN:
                log.info("job %d: accept landed before the restart", row.job_id)
                self.journal.set_phase(row.job_id, Phase.QUEUED)
                self.trainer.wake.set()
            elif job.state is JobState.OPEN and self.clock.now() < job.deadline:
                log.info("job %d: accept did not land before the restart; sending it again", row.job_id)
                self._send_accept(row.job_id, row.determinism_class or b"\0" * 32)
            else:
                self.journal.set_phase(row.job_id, Phase.SKIPPED, f"taken or gone ({job.state})")
            return
        if not self._ours(job):
            self.journal.set_phase(row.job_id, Phase.ABANDONED, f"job is not ours on chain ({job.state})")
            return
        if job.state in (JobState.EXPIRED, JobState.CANCELLED):
            self.journal.set_phase(row.job_id, Phase.ABANDONED, f"job {job.state} on chain")
            log.warning("job %d: %s on chain; dropping it", row.job_id, job.state)
            return
        if row.phase in (Phase.QUEUED, Phase.TRAINING):
            if self.clock.now() >= job.deadline:
                self.journal.set_phase(row.job_id, Phase.ABANDONED, "deadline passed before training finished")
                log.warning("job %d: deadline passed during training; giving up", row.job_id)
            return
        if row.phase in (Phase.TRAINED, Phase.COMMITTING):
            self._commit(row, job)
            return
        if job.state in (JobState.PAID, JobState.SLASHED):
            self.journal.set_phase(row.job_id, Phase.CLOSED, f"finalized: {job.state}")
            log.info("job %d: finalized on chain: %s", row.job_id, job.state)
            return
        if job.state is JobState.COMMITTED:
            self._draw_audit(row, job)
        elif job.state is JobState.AUDITING:
            self._open(row, job)
        elif job.state is JobState.VOTING:
            if row.phase is not Phase.VOTING:
                self.journal.set_phase(row.job_id, Phase.VOTING)
            self._finalize(row, job)

    def _commit(self, row: JobRow, job: OnchainJob) -> None:
        if job.state is not JobState.ACCEPTED:
            log.info("job %d: commit already on chain (%s)", row.job_id, job.state)
            self.journal.set_phase(row.job_id, Phase.COMMITTED)
            return
        if self.clock.now() >= job.deadline:
            self.journal.set_phase(row.job_id, Phase.ABANDONED, "deadline passed before commit")
            log.warning("job %d: missed the deadline; it will expire", row.job_id)
            return
        if row.phase is Phase.TRAINED or row.root is None:
            bounds = self.journal.boundaries(row.job_id)
            tree = commitment_tree(
                row.job_id, [b.state_hash for b in bounds], [b.energy_mj for b in bounds]
            )
            self.journal.begin_commit(
                row.job_id,
                root=tree.root,
                final_state_hash=bounds[-1].state_hash,
                energy_mj=bounds[-1].energy_mj,
                result_uri=f"{self.result_base}/artifacts/{row.job_id}",
            )
            row = self.journal.job(row.job_id)
        assert row is not None and row.root is not None and row.final_state_hash is not None
        log.info(
            "job %d: committing root 0x%s (energy %d mJ)", row.job_id, row.root.hex(), row.energy_mj
        )
        try:
            self.chain.transact(
                self.market.market.functions.commit_result(
                    row.job_id, row.root, row.final_state_hash, int(row.energy_mj or 0), row.result_uri
                ),
                what="commit result",
                context={"job": row.job_id},
            )
        except TxError:
            if self.market.job(row.job_id).state is JobState.ACCEPTED:
                raise
        self.journal.set_phase(row.job_id, Phase.COMMITTED)

    def _draw_audit(self, row: JobRow, job: OnchainJob) -> None:
        if row.phase is not Phase.COMMITTED:
            self.journal.set_phase(row.job_id, Phase.COMMITTED)
        if self.chain.block_number() <= job.seed_block:
            return
        log.info("job %d: drawing the audit (seed block %d)", row.job_id, job.seed_block)
        try:
            self.chain.transact(
                self.market.market.functions.draw_audit(row.job_id),
                what="draw audit",
                context={"job": row.job_id},
            )
        except TxError as exc:
            log.info("job %d: draw_audit: %s (someone else may have drawn it)", row.job_id, exc.reason)

    def _open(self, row: JobRow, job: OnchainJob) -> None:
        if row.phase is not Phase.AUDITING:
            self.journal.set_phase(row.job_id, Phase.AUDITING)
        if job.open_deadline and self.clock.now() > job.open_deadline:
            log.error("job %d: open window passed; the collateral will be slashed", row.job_id)
        wanted = sorted(set(self.market.audit_indices(row.job_id)))
        done = self.journal.opened(row.job_id)
        todo = []
        for i in wanted:
            if i in done:
                continue
            on_chain = self.market.is_opened(row.job_id, i)
            if on_chain:
                self.journal.record_opened(row.job_id, [i])
            else:
                todo.append(i)
        if not todo:
            return
        bounds = self.journal.boundaries(row.job_id)
        hashes = [b.state_hash for b in bounds]
        energies = [b.energy_mj for b in bounds]
        tree = commitment_tree(row.job_id, hashes, energies)
        if tree.root != row.root:
            raise RuntimeError(
                f"worker: job {row.job_id}: journaled boundaries give root 0x{tree.root.hex()}, "
                f"committed 0x{(row.root or b'').hex()}; refusing to open"
            )

        def args(i: int) -> tuple[Any, ...]:
            return (i, hashes[i], energies[i], hashes[i + 1], energies[i + 1], *tree.segment_proofs(i))

        log.info("job %d: opening audited segments %s", row.job_id, todo)
        if self.market.has("open_segments"):
            batch = self._max_batch()
            for lo in range(0, len(todo), batch):
                part = todo[lo : lo + batch]
                self.chain.transact(
                    self.market.market.functions.open_segments(row.job_id, [args(i) for i in part]),
                    what="open segments",
                    context={"job": row.job_id, "segments": part},
                )
                self.journal.record_opened(row.job_id, part)
        else:
            for i in todo:
                self.chain.transact(
                    self.market.market.functions.open_segment(row.job_id, *args(i)),
                    what="open segment",
                    context={"job": row.job_id, "segment": i},
                )
                self.journal.record_opened(row.job_id, [i])

    def _max_batch(self) -> int:
        try:
            return max(1, self.market.param("max_audit_samples"))
        except (TxError, ValueError, AttributeError):
            return 8

    def _finalize(self, row: JobRow, job: OnchainJob) -> None:
        ends = self.market.voting_ends(job)
        if self.clock.now() < ends:
            return
        log.info("job %d: reveal window over; finalizing", row.job_id)
        try:
            self.chain.transact(
                self.market.market.functions.finalize(row.job_id),
                what="finalize",
                context={"job": row.job_id},
            )
        except TxError as exc:
            log.info("job %d: finalize: %s", row.job_id, exc.reason)

    def collect(self) -> None:
        """Withdraw whatever the market owes this provider."""
        owed = self.market.claimable(self.address)
        if owed > 0:
            log.info("withdrawing %d owed by the market", owed)
            self.chain.transact(self.market.market.functions.withdraw(), what="withdraw")

    # -------------------------------------------------------------- training
    def next_training_job(self) -> JobRow | None:
        rows = self.journal.jobs([Phase.TRAINING, Phase.QUEUED])
        # a job that was on the device when the worker died goes first
        rows.sort(key=lambda r: (r.phase is not Phase.TRAINING, r.deadline, r.job_id))
        return rows[0] if rows else None

    def train(self, row: JobRow) -> None:
        """Train one job with the engine, journaling every durable boundary."""
        import json
        import sys

        spec_mod, engine, _, run_mod = _engine()
        from greenproof.energy import make_meter

        spec = spec_mod.parse_spec(json.loads(row.spec_json or "{}"))
        job_id = row.job_id
        self.journal.set_phase(job_id, Phase.TRAINING)
        prior = self.journal.boundaries(job_id)
        log.info(
            "job %d: training %d segments x %d steps on %s%s",
            job_id, spec.num_segments, spec.segment_steps, self.config.device,
            f" (resuming at boundary {prior[-1].k})" if prior else "",
        )
        rate = self.throughput.get(spec.task) or self.config.policy.steps_per_second
        started = time.monotonic()
        trained_steps = 0

        def on_boundary(k: int, state_hash: bytes, energy_mj: int) -> None:
            # a resumed run reports its start boundary again, already journaled as is
            if self.cheat is not None and not (prior and k == start_k):
                energy_mj = int(self.cheat.energy(k, energy_mj))
            self.journal.record_boundary(job_id, k, state_hash, energy_mj)
            log.info("job %d: boundary %d/%d state 0x%s energy %d mJ",
                     job_id, k, spec.num_segments, state_hash.hex()[:16], energy_mj)

        def segment_hook(spec_: Any, state: Any, k: int, run_segment: Callable[..., Any]) -> Any:
            nonlocal rate, trained_steps
            if self.stopping.is_set():
                raise GiveUp("worker stopping")
            row_now = self.journal.job(job_id)
            if row_now is None or row_now.phase is not Phase.TRAINING:
                raise GiveUp(f"job left the training phase ({row_now.phase if row_now else 'gone'})")
            left = (spec.num_segments - k) * spec.segment_steps / rate * self.config.policy.safety_factor
            margin = self.config.policy.commit_margin_s
            now = self.clock.now()
            if now + left + margin > row.deadline:
                raise GiveUp(
                    f"deadline unreachable: {spec.num_segments - k} segments need ~{left:.0f}s "
                    f"+ {margin}s commit margin, {row.deadline - now}s left"
                )
            t0 = time.monotonic()
            if self.cheat is not None:
                result = self.cheat.train_segment(spec_, state, k, run_segment)
            else:
                result = run_segment(spec_, state, k)
            dt = time.monotonic() - t0
            trained_steps += spec.segment_steps
            self.throughput.update(spec.task, spec.segment_steps, dt)
            rate = self.throughput.get(spec.task) or rate
            return result

        resume: dict[str, Any] = {}
        if prior:
            last = prior[-1]
            resume = {
                "start_k": last.k,
                "start_state": self.store.get(last.state_hash),
                "start_energy_mj": last.energy_mj,
                "history": [(b.state_hash, b.energy_mj) for b in prior[:-1]],
            }
        start_k = resume.get("start_k", 0)

        meter = make_meter(self.config.device, prefer=self.config.energy_source)
        try:
            record = run_mod.train_run(
                spec,
                self.store,
                meter,
                device=self.config.device,
                on_boundary=on_boundary,
                segment_hook=segment_hook,
                progress=sys.stderr.isatty(),
                **resume,
            )
        except GiveUp as exc:
            if self.stopping.is_set():
                log.info("job %d: training paused at shutdown; it resumes on restart", job_id)
                return
            self.journal.set_phase(job_id, Phase.ABANDONED, str(exc))
            log.warning("job %d: giving up: %s", job_id, exc)
            return
        bounds = self.journal.boundaries(job_id)
        if len(bounds) != spec.num_segments + 1 or bounds[-1].state_hash != record.final_state_hash:
            raise RuntimeError(
                f"worker: job {job_id}: run ended with {len(bounds)} journaled boundaries, "
                f"expected {spec.num_segments + 1}"
            )
        # The run record (losses, energy source, device) feeds the dashboard and the report;
        # after a resume it covers the segments trained since the restart.
        run_dir = self.config.runs_dir / str(job_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        record.save(run_dir / "record.json")
        self.journal.set_phase(job_id, Phase.TRAINED)
        log.info(
            "job %d: trained in %.1fs (%d steps this session), final state 0x%s",
            job_id, time.monotonic() - started, trained_steps, record.final_state_hash.hex(),
        )


__all__ = ["ChainClock", "GiveUp", "Trainer", "Worker"]
